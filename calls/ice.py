"""ICE servers handed to RTCPeerConnection, in its own format."""

import base64
import hashlib
import hmac
import time

from django.conf import settings


def turn_credentials(*, user_id, secret: str, ttl: int, now: float | None = None) -> tuple[str, str]:
    """The TURN REST API credential pair that coturn's `use-auth-secret` checks.

    username = "<unix expiry>:<user id>", credential = base64(HMAC-SHA1(secret, username)). coturn recomputes the
    HMAC with its `static-auth-secret` and refuses the username once the expiry has passed.
    """
    expires = int(now if now is not None else time.time()) + ttl
    username = f"{expires}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers_for(user) -> list[dict]:
    """STUN servers from settings, then the TURN servers with credentials for this user valid for PARLEY_TURN_TTL."""
    servers: list[dict] = [{"urls": url} for url in settings.PARLEY_STUN_URLS]
    if settings.PARLEY_TURN_URLS and settings.PARLEY_TURN_SECRET:
        username, credential = turn_credentials(
            user_id=user.pk, secret=settings.PARLEY_TURN_SECRET, ttl=settings.PARLEY_TURN_TTL
        )
        servers.append({"urls": list(settings.PARLEY_TURN_URLS), "username": username, "credential": credential})
    return servers
