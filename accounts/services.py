"""Ending a user's access: what happens when their credentials stop being valid; and the audit trail of log-ins,
tokens and passwords (accounts/signals.py hands Django's and django-axes' signals to these)."""

import logging

from django.contrib.auth import get_user_model
from django.db import transaction
from django.dispatch import Signal
from rest_framework.authtoken.models import Token

from accounts import audit
from accounts.security import client_ip
from calls import services as calls
from calls.models import Room
from calls.protocol import CloseCode

logger = logging.getLogger(__name__)


# Sent by sign_out_everywhere: apps above accounts (people's /ws/me/ sockets) end what they hold of the user.
signed_out = Signal()


@transaction.atomic
def sign_out_everywhere(*, user, revoke_tokens: bool, why: str = "") -> int:
    """Close the user's signaling sockets on every server process with 4401, and with `revoke_tokens` delete their
    API tokens (a new password, or a deactivated account, must not leave an old token working).

    Returns how many sockets were closed.
    """
    if revoke_tokens:
        revoke_token(user=user, reason=why or "signed-out")
    closed = calls.end_user_connections(user=user, close_code=CloseCode.NOT_AUTHENTICATED,
                                        reason=calls.Reason.SIGNED_OUT)
    signed_out.send(sender=None, user=user)
    if closed:
        logger.info("user %s signed out: closed %d signaling connection(s)", user, closed)
    return closed


def user_saved(*, user, before: dict | None, password_set: bool, address: str | None = None, via: str = "") -> None:
    """After a save of `user`: a new password or a deactivation signs them out everywhere and revokes their tokens.

    `before` holds the row's password and is_active from before the save (None: not read, nothing watched
    changed). `password_set` says whether set_password() was called: Django also rewrites the hash of an unchanged
    password when it upgrades hashers at login, which is not a change of credentials. `address` and `via` are where
    the change came from, when a page said so (accounts/views.py, the admin); a new password is audited.
    """
    if before is None:
        return
    new_password = before["password"] != user.password and (password_set or not user.has_usable_password())
    deactivated = before["is_active"] and not user.is_active
    if new_password:
        audit.record(audit.Action.PASSWORD_CHANGED, actor=user, target=f"user:{user.pk}", address=address,
                     via=via or "other")
    if new_password or deactivated:
        sign_out_everywhere(user=user, revoke_tokens=True, why="password-changed" if new_password else "deactivated")


def create_token(*, user, address: str | None = None) -> Token:
    """The user's API token, made (and audited) unless they have one."""
    token, created = Token.objects.get_or_create(user=user)
    if created:
        audit.record(audit.Action.TOKEN_CREATED, actor=user, target=f"user:{user.pk}", address=address)
    return token


def revoke_token(*, user, address: str | None = None, reason: str = "by-user") -> bool:
    """Delete the user's API token; audited if there was one. Returns whether there was."""
    deleted, _ = Token.objects.filter(user=user).delete()
    if deleted:
        audit.record(audit.Action.TOKEN_REVOKED, actor=user, target=f"user:{user.pk}", address=address,
                     reason=reason)
    return bool(deleted)


def via_of(request) -> str:
    """Which door a request came through: "api", "admin" or "site"."""
    path = getattr(request, "path", "") or ""
    return "api" if path.startswith("/api/") else "admin" if path.startswith("/admin/") else "site"


def logged_in(*, user, request) -> None:
    audit.record(audit.Action.LOGIN_SUCCEEDED, actor=user, target=f"user:{user.pk}", address=client_ip(request),
                 via=via_of(request))


def log_in_failed(*, username: str, request) -> None:
    """A failed log-in: the username tried (never the password), the address, and whether a lockout held."""
    user = get_user_model().objects.filter(username=username).first() if username else None
    audit.record(audit.Action.LOGIN_FAILED, actor=None, target=f"user:{user.pk}" if user else "",
                 address=client_ip(request) if request is not None else None, username=username[:150],
                 via=via_of(request), locked_out=bool(getattr(request, "axes_locked_out", False)))


def locked_out(*, username: str, request, address: str | None) -> None:
    """django-axes refused a log-in (PARLEY_LOGIN_FAILURE_LIMIT reached): at the failure that locks, and at each
    attempt while the lock holds."""
    user = get_user_model().objects.filter(username=username).first() if username else None
    audit.record(audit.Action.LOGIN_LOCKED_OUT, actor=None, target=f"user:{user.pk}" if user else "",
                 address=address or (client_ip(request) if request is not None else None),
                 username=(username or "")[:150], via=via_of(request))


@transaction.atomic
def delete_account(*, user, address: str | None = None) -> int:
    """Delete the user's account (they confirmed with their password): their rooms are deleted through the
    services (live calls closed with 4404, `room.deleted` sent), their connections end with 4401, and their rows
    in other people's call logs stay, anonymised (accounts/signals.py -> calls.services.prepare_user_deletion).

    Returns how many rooms were deleted.
    """
    rooms = list(Room.objects.filter(owner=user))
    for room in rooms:
        calls.delete_room(by=user, room=room)
    target = f"user:{user.pk}"
    audit.record("account.deleted", actor=None, target=target, address=address, rooms_deleted=len(rooms))
    user.delete()
    logger.info("account %s deleted, with %d room(s)", target, len(rooms))
    return len(rooms)
