"""What `people` hears from `calls` (calls.signals): calls do not import people."""

from django.contrib.auth import get_user_model
from django.db.models.signals import pre_delete
from django.dispatch import receiver

from accounts.services import signed_out
from calls.signals import call_changed, my_calls_opened
from people import presence, services


@receiver(call_changed, dispatch_uid="people.call_changed")
def on_call_changed(*, changes, **_):
    presence.calls_changed(changes)


@receiver(my_calls_opened, dispatch_uid="people.my_calls_opened")
def on_my_calls_opened(*, user, since=None, until=None, person=None, room="", **_) -> list[dict]:
    """Opening My calls shows the rings too, and the missed ones count as seen."""
    services.mark_missed_seen(user)
    return services.history_for(user, since=since, until=until, person=person, room=room)


@receiver(signed_out, dispatch_uid="people.signed_out")
def on_signed_out(*, user, **_):
    """Logout, a new password or a deactivation (accounts.services.sign_out_everywhere)."""
    presence.close_sockets_of(user_id=user.pk)


@receiver(pre_delete, sender=get_user_model(), dispatch_uid="people.user_deleted")
def on_user_deleted(sender, instance, **_):
    presence.close_sockets_of(user_id=instance.pk)
