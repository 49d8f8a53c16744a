"""Receivers that hand credential changes to the services; they decide nothing themselves.

Django has no "password changed" or "deactivated" signal: the user's password and is_active are read before a save
and compared after it, which catches every path (the password change and reset pages, the admin, `changepassword`,
code calling `set_password()`). A page that changes a password says where it came from by setting
`_parley_address` and `_parley_via` on the user before it saves (accounts/views.py, accounts/admin.py).

Log-ins, their failures and lockouts exist only as signals (Django's and django-axes'): they are handed to the
services here too, which audit them.
"""

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_save, pre_delete, pre_save
from django.dispatch import receiver

from accounts import services
from calls import services as calls

User = get_user_model()
WATCHED = {"password", "is_active"}


@receiver(user_logged_out, dispatch_uid="parley-sign-out-at-logout")
def signed_out(sender, request, user, **kwargs):
    if user is not None:
        services.sign_out_everywhere(user=user, revoke_tokens=False)


@receiver(pre_save, sender=User, dispatch_uid="parley-credentials-before-save")
def remember_credentials(sender, instance, raw=False, update_fields=None, **kwargs):
    watched = update_fields is None or WATCHED & set(update_fields)
    before = None
    if instance.pk is not None and watched and not raw:
        before = User.objects.filter(pk=instance.pk).values("password", "is_active").first()
    # AbstractBaseUser keeps the raw password from set_password() in _password until save() has run.
    instance._parley_before = (before, getattr(instance, "_password", None) is not None)


@receiver(post_save, sender=User, dispatch_uid="parley-credentials-after-save")
def credentials_saved(sender, instance, created, **kwargs):
    before, password_set = getattr(instance, "_parley_before", (None, False))
    instance._parley_before = (None, False)
    address, via = getattr(instance, "_parley_address", None), getattr(instance, "_parley_via", "")
    instance._parley_address, instance._parley_via = None, ""
    if not created:
        services.user_saved(user=instance, before=before, password_set=password_set, address=address, via=via)


@receiver(user_logged_in, dispatch_uid="parley-audit-logged-in")
def logged_in(sender, request, user, **kwargs):
    if request is not None and user is not None:
        services.logged_in(user=user, request=request)


@receiver(user_login_failed, dispatch_uid="parley-audit-login-failed")
def login_failed(sender, credentials, request=None, **kwargs):
    username = credentials.get(User.USERNAME_FIELD) or credentials.get("username") or ""
    services.log_in_failed(username=str(username), request=request)


@receiver(user_locked_out, dispatch_uid="parley-audit-locked-out")
def locked_out(sender, request=None, username=None, ip_address=None, **kwargs):
    services.locked_out(username=str(username or ""), request=request, address=ip_address)


@receiver(pre_delete, sender=User, dispatch_uid="parley-user-deleted")
def user_deleted(sender, instance, **kwargs):
    calls.prepare_user_deletion(user=instance)
