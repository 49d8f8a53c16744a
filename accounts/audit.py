"""The audit trail's one door: `record()`. Events are only ever added (the admin shows them read-only).

`Action` lists every action name (the admin's filter and docs/operations.md "Audit trail" use it). The service
functions record what they did; the signaling consumer records its refusals and closes through `record_socket()`
in its database threads. A failed write is logged and never fails the action it describes.
"""

import ipaddress
import logging

from django.db import models, transaction

from accounts.models import AuditEvent

logger = logging.getLogger(__name__)


class Action(models.TextChoices):
    LOGIN_SUCCEEDED = "login.succeeded", "Log-in succeeded"
    LOGIN_FAILED = "login.failed", "Log-in failed"
    LOGIN_LOCKED_OUT = "login.locked-out", "Log-in locked out"
    TOKEN_CREATED = "token.created", "API token created"
    TOKEN_REVOKED = "token.revoked", "API token revoked"
    PASSWORD_CHANGED = "password.changed", "Password changed"
    TICKET_ISSUED = "ticket.issued", "Signaling ticket issued"
    ROOM_CREATED = "room.created", "Room created"
    ROOM_CHANGED = "room.changed", "Room changed"
    ROOM_DELETED = "room.deleted", "Room deleted"
    ROOM_LOCKED = "room.locked", "Room locked"
    ROOM_UNLOCKED = "room.unlocked", "Room unlocked"
    MEMBER_ADDED = "member.added", "Member added"
    MEMBER_REMOVED = "member.removed", "Member removed"
    MEMBER_ROLE_CHANGED = "member.role-changed", "Member's role changed"
    INVITE_CREATED = "invite.created", "Invite created"
    INVITE_USED = "invite.used", "Invite used"
    INVITE_REVOKED = "invite.revoked", "Invite revoked"
    PARTICIPANT_KICKED = "participant.kicked", "Participant removed from a call"
    CALL_ENDED = "call.ended", "Call ended for everyone"
    JOIN_REFUSED = "join.refused", "Join refused (signaling socket)"
    SOCKET_RATE_LIMITED = "socket.rate-limited", "Socket closed for flooding (4429)"
    SOCKET_TOO_SLOW = "socket.too-slow", "Socket closed for not reading (4413)"
    SOCKET_PROTOCOL_BROKEN = "socket.protocol-broken", "Socket closed for breaking the WebSocket protocol"
    RING_STARTED = "ring.started", "Ring started"
    RING_ENDED = "ring.ended", "Ring ended"
    QUOTA_REFUSED = "quota.refused", "Refused over a quota"
    ACCOUNT_EXPORTED = "account.exported", "Account data exported"
    ACCOUNT_DELETED = "account.deleted", "Account deleted"
    WEBHOOK_CREATED = "webhook.created", "Webhook endpoint created"
    WEBHOOK_CHANGED = "webhook.changed", "Webhook endpoint changed"
    WEBHOOK_DELETED = "webhook.deleted", "Webhook endpoint deleted"
    WEBHOOK_REPLAYED = "webhook.replayed", "Webhook delivery replayed"
    WEBHOOK_DISABLED = "webhook.disabled", "Webhook endpoint disabled"


def address_or_none(value) -> str | None:
    """`value` if it is an IP address (what the address column holds), else None."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(str(value).strip("[]")))
    except ValueError:
        return None


def record(action: str, *, actor, target: str = "", address: str | None = None, **detail) -> AuditEvent | None:
    """Write one audit event. `actor` is the user who acted (None: the system); `target` names what it was done
    to, e.g. "room:board-room" or "webhook:12"; `detail` is anything JSON-ready.

    In a savepoint of its own: a failed write is logged and returns None, and the transaction of the action it
    describes goes on.
    """
    if action not in Action.values:
        logger.warning("audit: action %r is not in accounts.audit.Action", action)
    try:
        with transaction.atomic():
            return AuditEvent.objects.create(actor=actor if actor is not None and actor.pk else None,
                                             action=str(action), target=target[:200],
                                             address=address_or_none(address), detail=detail)
    except Exception:
        logger.exception("audit: could not record %s on %s", action, target)
        return None


def socket_address(scope) -> str | None:
    """The client address of a WebSocket's ASGI scope (daphne puts the proxy's X-Forwarded-For there when it is
    told to trust it)."""
    client = scope.get("client") or ()
    return address_or_none(client[0]) if client else None


def socket_header(scope, name: bytes) -> str:
    return next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == name), "")


def socket_target(scope) -> str:
    """What a socket's events are about, from its path: "room:<slug>" for /ws/rooms/<slug>/, else the path."""
    path = scope.get("path", "")
    parts = [part for part in path.split("/") if part]
    if len(parts) == 3 and parts[:2] == ["ws", "rooms"]:
        return f"room:{parts[2]}"
    return f"socket:{path}"


def record_socket(action: str, *, scope, user=None, code: int, reason: str, **detail) -> None:
    """An audit event of a WebSocket (a refusal or a close): its close code and reason, the page's origin and the
    client's address; the target comes from its path (`socket_target`). Run in a database thread; never raises."""
    try:
        if user is None:
            user = scope.get("user")
        actor = user if user is not None and getattr(user, "is_authenticated", False) else None
        record(action, actor=actor, target=socket_target(scope), address=socket_address(scope), code=int(code),
               reason=reason[:200], origin=socket_header(scope, b"origin")[:200], **detail)
    except Exception:
        logger.exception("audit: could not record %s of a socket of %s", action, scope.get("path"))
