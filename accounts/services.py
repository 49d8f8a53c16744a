"""Ending a user's access: what happens when their credentials stop being valid."""

import logging

from django.db import transaction
from django.dispatch import Signal
from rest_framework.authtoken.models import Token

from accounts import audit
from calls import services as calls
from calls.models import Room
from calls.protocol import CloseCode

logger = logging.getLogger(__name__)


# Sent by sign_out_everywhere: apps above accounts (people's /ws/me/ sockets) end what they hold of the user.
signed_out = Signal()


@transaction.atomic
def sign_out_everywhere(*, user, revoke_tokens: bool) -> int:
    """Close the user's signaling sockets on every server process with 4401, and with `revoke_tokens` delete their
    API tokens (a new password, or a deactivated account, must not leave an old token working).

    Returns how many sockets were closed.
    """
    if revoke_tokens:
        Token.objects.filter(user=user).delete()
    closed = calls.end_user_connections(user=user, close_code=CloseCode.NOT_AUTHENTICATED,
                                        reason=calls.Reason.SIGNED_OUT)
    signed_out.send(sender=None, user=user)
    if closed:
        logger.info("user %s signed out: closed %d signaling connection(s)", user, closed)
    return closed


def user_saved(*, user, before: dict | None, password_set: bool) -> None:
    """After a save of `user`: a new password or a deactivation signs them out everywhere and revokes their tokens.

    `before` holds the row's password and is_active from before the save (None: not read, nothing watched
    changed). `password_set` says whether set_password() was called: Django also rewrites the hash of an unchanged
    password when it upgrades hashers at login, which is not a change of credentials.
    """
    if before is None:
        return
    new_password = before["password"] != user.password and (password_set or not user.has_usable_password())
    deactivated = before["is_active"] and not user.is_active
    if new_password or deactivated:
        sign_out_everywhere(user=user, revoke_tokens=True)


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
