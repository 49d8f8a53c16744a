"""What `people` hears from `calls` (calls.signals): calls do not import people."""

from django.dispatch import receiver

from calls.signals import call_changed, my_calls_opened
from people import services


@receiver(call_changed, dispatch_uid="people.call_changed")
def on_call_changed(*, room_id, call_id, user_id, joined, **_):
    services.call_changed(room_id=room_id, call_id=call_id, user_id=user_id, joined=joined)


@receiver(my_calls_opened, dispatch_uid="people.my_calls_opened")
def on_my_calls_opened(*, user, **_) -> list[dict]:
    """Opening My calls shows the rings too, and the missed ones count as seen."""
    services.mark_missed_seen(user)
    return services.history_for(user)
