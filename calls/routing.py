from urllib.parse import urlparse

from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.urls import path

from calls.consumers import SignalingConsumer

websocket_urlpatterns = [
    path("ws/rooms/<slug:slug>/", SignalingConsumer.as_asgi()),
]


def origin_allowed(origin: str) -> bool:
    """Same rule as for HTTP: the origin's host is an allowed host, or the origin is a trusted one."""
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    parsed = urlparse(origin)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return False
    domain, _port = split_domain_port(parsed.netloc)
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


class OriginCheckMiddleware:
    """Refuse WebSocket connections from foreign origins (cross-site WebSocket hijacking).

    Browsers always send Origin on WebSockets; programs without one (aiortc, scripts) authenticate with a
    single-use ticket, which a foreign page cannot obtain. The consumer accepts, then closes with 4403, so that
    the refusal is visible to the client instead of a bare failed handshake.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        origin = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"origin"), None)
        allowed = origin is None or origin_allowed(origin)
        return await self.app({**scope, "origin_allowed": allowed}, receive, send)
