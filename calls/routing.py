import logging
from importlib import import_module
from urllib.parse import urlparse

from django.conf import settings
from django.contrib import auth
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.http.cookie import parse_cookie
from django.http.request import split_domain_port, validate_host
from django.urls import path

from accounts import audit
from calls.consumers import SignalingConsumer
from calls.db_threads import in_db_thread
from calls.protocol import CloseCode

logger = logging.getLogger(__name__)

websocket_urlpatterns = [
    path("ws/rooms/<slug:slug>/", SignalingConsumer.as_asgi()),
]

DEFAULT_PORTS = {"http": 80, "https": 443}


def parsed_origin(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) origin, the default port filled in; None if it is not one."""
    parsed = urlparse(origin)
    if parsed.scheme not in DEFAULT_PORTS or not parsed.hostname or parsed.path not in ("", "/") or parsed.query:
        return None
    try:
        port = parsed.port
    except ValueError:
        return None
    return parsed.scheme, parsed.hostname.lower(), port or DEFAULT_PORTS[parsed.scheme]


def origin_allowed(origin: str, *, host: str | None = None, secure: bool = False) -> bool:
    """Scheme, host and port of the page that opened the socket must be those of this site: a trusted origin, or
    the origin the request itself was made to (its Host, an allowed host, under https when the connection is
    secure) as Django's CSRF check does for forms.

    `host` is the request's Host header. Clients that send none (in-process test communicators; browsers always
    send one) are judged by the origin's own host, with its scheme still checked.
    """
    seen = parsed_origin(origin)
    if seen is None:
        return False
    if seen in {parsed_origin(trusted) for trusted in settings.CSRF_TRUSTED_ORIGINS}:
        return True
    host = host or urlparse(origin).netloc
    domain, _port = split_domain_port(host)
    expected = parsed_origin(f"{'https' if secure else 'http'}://{host}")
    return bool(domain) and seen == expected and validate_host(domain, settings.ALLOWED_HOSTS)


def header(scope, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == name), None)


def is_secure(scope) -> bool:
    """wss, or behind the trusted proxy (DJANGO_BEHIND_PROXY) a connection it received over https."""
    if scope.get("scheme") == "wss":
        return True
    return settings.PARLEY_BEHIND_PROXY and (header(scope, b"x-forwarded-proto") or "").lower() == "https"


class OriginCheckMiddleware:
    """Refuse WebSocket connections from foreign origins (cross-site WebSocket hijacking).

    Browsers always send Origin on WebSockets; programs without one (aiortc, scripts) authenticate with a
    single-use ticket, which a foreign page cannot obtain. A refused socket is accepted, then closed with 4403,
    so that the refusal is visible to the client instead of a bare failed handshake; it never reaches the
    session, authentication or the consumer.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        origin = header(scope, b"origin")
        if origin is None or origin_allowed(origin, host=header(scope, b"host"), secure=is_secure(scope)):
            return await self.app({**scope, "origin_allowed": True}, receive, send)
        logger.info("signaling refused for %s: origin %r not allowed (4403)", scope.get("path"), origin)
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        await audit_refusal(scope, origin)
        # A plain int: daphne's WebSocket library refuses an IntEnum as a close code.
        await send({"type": "websocket.close", "code": int(CloseCode.FORBIDDEN)})


async def audit_refusal(scope, origin: str) -> None:
    """`join.refused` for a foreign origin (in a signaling database thread); a failure is logged only."""
    try:
        await in_db_thread(audit.record_socket)(audit.Action.JOIN_REFUSED, scope=scope, code=CloseCode.FORBIDDEN,
                                                reason="origin not allowed")
    except Exception:
        logger.exception("signaling: could not audit the refusal of origin %r", origin)


def user_of_session(session_key: str):
    """The user a session cookie stands for, as Django's own request handling finds it (the session hash checked,
    so a password change signs the session out)."""
    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return auth.get_user(request)


class SessionUserMiddleware:
    """`scope["user"]` from the session cookie, looked up once at the handshake.

    Instead of Channels' AuthMiddlewareStack, which looks the user up through its one thread-sensitive executor
    (so concurrent joins wait on each other) and wraps every frame the consumer sends to save a session that
    WebSockets never change (docs/performance.md). The lookup runs in the signaling database threads.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        cookies = parse_cookie(header(scope, b"cookie") or "")
        session_key = cookies.get(settings.SESSION_COOKIE_NAME)
        user = await in_db_thread(user_of_session)(session_key) if session_key else AnonymousUser()
        return await self.app({**scope, "cookies": cookies, "user": user}, receive, send)
