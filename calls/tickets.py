"""Single-use signaling tickets: how programs without a browser session authenticate a WebSocket.

A ticket is signed (Django's signing with SECRET_KEY), bound to one user and one room, and expires after
PARLEY_TICKET_TTL seconds. Its nonce is recorded in the cache when used (atomic `add`), so a ticket works
once, across every server process that shares the cache (Redis in production).
"""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing

from accounts import audit
from calls.shared_cache import shared_cache

SALT = "parley.signaling-ticket"


def ticket_ttl() -> int:
    return settings.PARLEY_SIGNALING["TICKET_TTL"]


# What a ticket for the per-user socket (/ws/me/) is bound to instead of a room: no slug has a colon.
ME = ":me"


def issue_ticket(*, user, room=None, target: str = "", address: str | None = None) -> str:
    """A ticket for the room's socket, or for `target` (ME). Audited (`ticket.issued`, with the client's `address`
    when a request asked for it); the ticket itself is never recorded."""
    bound = target or room.slug
    ticket = sign_ticket(user=user, bound=bound)
    audit.record(audit.Action.TICKET_ISSUED, actor=user, target=f"user:{user.pk}" if target == ME else f"room:{bound}",
                 address=address, socket="me" if target == ME else "room", expires_in=ticket_ttl())
    return ticket


def sign_ticket(*, user, bound: str) -> str:
    """The ticket itself, unaudited: `issue_ticket` is the door for requests; the bench loaders mint theirs here."""
    return signing.dumps({"u": user.pk, "r": bound, "n": secrets.token_urlsafe(12)}, salt=SALT)


def redeem_ticket(*, ticket: str, room_slug: str):
    """The ticket's user if it is genuine, fresh, for this room (or target) and unused; otherwise None. Uses it
    up."""
    try:
        data = signing.loads(ticket, salt=SALT, max_age=ticket_ttl())
    except signing.BadSignature:  # also SignatureExpired
        return None
    if not isinstance(data, dict) or data.get("r") != room_slug:
        return None
    if not shared_cache().add(f"ticket-used:{data.get('n')}", 1, timeout=ticket_ttl() + 5):
        return None
    return get_user_model().objects.filter(pk=data.get("u"), is_active=True).first()
