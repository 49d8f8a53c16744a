"""Parley settings: one module, driven by environment variables.

With no environment at all it runs for development: DEBUG on, SQLite in the project folder and the
in-memory channel layer. Production sets DJANGO_DEBUG=false, DJANGO_SECRET_KEY, DJANGO_ALLOWED_HOSTS,
DATABASE_URL (PostgreSQL) and REDIS_URL (channel layer and cache). README.md lists every variable.
"""

import ipaddress
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from config.deploy import unsafe_deployment

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}: expected a boolean, got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected an integer, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected a number, got {raw!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off. "
            "Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105 - DEBUG only

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
# With debug off, an unsafe host or origin stops every server (and manage.py) from starting, not only the checks.
_unsafe = unsafe_deployment(debug=DEBUG, allowed_hosts=ALLOWED_HOSTS, trusted_origins=CSRF_TRUSTED_ORIGINS)
if _unsafe:
    raise ImproperlyConfigured("Refusing to start with debug off: " + " ".join(f"{i}: {p}" for i, p in _unsafe))

INSTALLED_APPS = [
    "daphne",  # first, so that `runserver` is daphne's ASGI server
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc assets served from here, not from a CDN
    "csp",
    "axes",  # log-in lockout (docs/security.md)
    "accounts",
    "calls",
    "people",  # presence, contacts and rings (issue 12); builds on calls, which never imports it
    "webhooks",
    "sfu",  # the SFU mode through Janus (docs/sfu.md); unused while PARLEY_JANUS_URL is unset
]

MIDDLEWARE = [
    "calls.metrics.APIRequestsMiddleware",  # first: counts every /api/ answer, 429s and 403s of the others too
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "config.middleware.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into its 429 answer
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "people.context_processors.missed_calls",
            ],
        },
    },
]

# --- Data stores -------------------------------------------------------------------------------

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Signaling writes from several threads at once: wait for the lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not memory, so that the real server processes started by the tests share it.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test_db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer and cache (docs/deploy.md) ----------------------------------------------
# REDIS_URL is redis://host:port/db, or redis+sentinel://host:port,host:port/<primary>/<db> for Sentinel;
# REDIS_SENTINELS=host:port,... with REDIS_SENTINEL_MASTER is a shorthand for the latter (config/sentinel.py).
import secrets  # noqa: E402

from config.sentinel import SCHEME as SENTINEL_SCHEME  # noqa: E402
from config.sentinel import layer_fingerprint, parse_sentinel_url, redis_identity, sentinel_url  # noqa: E402

REDIS_URL = os.environ.get("REDIS_URL", "").strip() or None
REDIS_SENTINELS = env_list("REDIS_SENTINELS", [])
if REDIS_SENTINELS:
    if REDIS_URL:
        raise ImproperlyConfigured("Set REDIS_URL or REDIS_SENTINELS, not both (a redis+sentinel:// URL may carry "
                                   "the sentinels, the primary's name, its database and passwords).")
    REDIS_URL = sentinel_url(REDIS_SENTINELS, os.environ.get("REDIS_SENTINEL_MASTER", "").strip() or "parley")
PARLEY_CHANNEL_PREFIX = os.environ.get("PARLEY_CHANNEL_PREFIX", "").strip() or "parley"


def redis_host_for(redis_url: str) -> dict:
    """channels-redis's host entry for `redis_url`: one Redis server, or a primary found through Sentinel."""
    # redis-py's default 5 s socket timeout would break the layer's blocking reads on idle sockets
    # (channels_redis issue #422): no read timeout, keepalive instead, a bounded connect.
    common = {"socket_timeout": None, "socket_connect_timeout": 5, "socket_keepalive": True, "max_connections": 1000}
    if redis_url.startswith(f"{SENTINEL_SCHEME}://"):
        target = parse_sentinel_url(redis_url)
        return {"master_name": target.service, "sentinels": target.sentinels,
                "sentinel_kwargs": target.sentinel_kwargs(), **target.server_kwargs(), **common}
    return {"address": redis_url, **common}


def redis_identity_of(redis_url: str) -> str:
    if redis_url.startswith(f"{SENTINEL_SCHEME}://"):
        return parse_sentinel_url(redis_url).identity
    return redis_identity(redis_url)


def channel_layer_for(redis_url: str | None, prefix: str = "parley") -> dict:
    """channels-redis on `redis_url`, or the in-memory layer (one process only) without it."""
    if not redis_url:
        return {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [redis_host_for(redis_url)],
            "prefix": prefix,
            # One relay channel per server process carries batches of frames: room for bursts.
            "capacity": env_int("PARLEY_CHANNEL_CAPACITY", 1000),
            "expiry": 60,
        },
    }


CHANNEL_LAYERS = {"default": channel_layer_for(REDIS_URL, PARLEY_CHANNEL_PREFIX)}
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            # A list: Django splits a string LOCATION at commas, which a Sentinel URL has.
            "LOCATION": [REDIS_URL],
            "KEY_PREFIX": "parley",
            "OPTIONS": (
                {"pool_class": "config.sentinel.SentinelConnectionPool"}
                if REDIS_URL.startswith(f"{SENTINEL_SCHEME}://") else {}
            ),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Processes that share the database must share the channel layer, or what one process sends to another's peers
# (the reaper's peer-left, a kick) goes nowhere. Each process names its layer in its PostgreSQL connections'
# application_name, and the check parley.E011 (`check --deploy --database default`) compares them.
PARLEY_LAYER_FINGERPRINT = (
    layer_fingerprint(redis_identity_of(REDIS_URL), PARLEY_CHANNEL_PREFIX) if REDIS_URL
    else f"memory-{secrets.token_hex(4)}"  # each process is a layer of its own
)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = f"parley {PARLEY_LAYER_FINGERPRINT}"

# --- Accounts ----------------------------------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses locked-out log-ins before any password is checked
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if os.environ.get("EMAIL_HOST")
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Parley <noreply@localhost>")

# --- HTTP security -----------------------------------------------------------------------------

# Behind one reverse proxy that terminates TLS, sets X-Forwarded-Proto and appends the client's address to
# X-Forwarded-For. Without it, X-Forwarded-* headers are the client's own and never trusted.
PARLEY_BEHIND_PROXY = env_bool("DJANGO_BEHIND_PROXY", False)
if PARLEY_BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# Content-Security-Policy on every response (django-csp): scripts, styles, sockets and everything else from this
# site only; no inline script anywhere (pages load static/js modules; json_script blocks are data), no framing.
# img-src allows data: for the SVG icons that the admin's and Swagger UI's stylesheets inline. The only exception
# is the ReDoc page (config/urls.py), whose library injects its styles at run time.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],  # 'self' covers ws: and wss: to this host and port (CSP level 3)
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
PARLEY_PERMISSIONS_POLICY = "camera=(self), microphone=(self), display-capture=(self)"

# Log-in lockout (django-axes): the site and admin log-ins and the API token endpoint. After 5 failures for one
# username from one address, every attempt (the right password too) gets 429 until 15 minutes have passed since
# the last failure. Attempts are kept in the database, which every server process shares.
AXES_FAILURE_LIMIT = env_int("PARLEY_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("PARLEY_LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "accounts.security.client_ip"
AXES_LOCKOUT_CALLABLE = "accounts.security.locked_out"
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # a lock ends when it says, however often it is knocked on
AXES_HTTP_RESPONSE_CODE = 429
AXES_SENSITIVE_PARAMETERS = []  # failures are logged with the username and address tried (never the password)

# --- REST API ----------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.TokenAuthentication",  # says so when the "Token " prefix is missing
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "calls.schema.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "calls.pagination.Pagination",
    "PAGE_SIZE": env_int("PARLEY_API_PAGE_SIZE", 20),
    # The client address of throttles: REMOTE_ADDR, or behind the proxy the last X-Forwarded-For entry.
    "NUM_PROXIES": 1 if PARLEY_BEHIND_PROXY else 0,
    "DEFAULT_THROTTLE_CLASSES": [
        "calls.throttling.AnonRateThrottle",
        "calls.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": os.environ.get("PARLEY_THROTTLE_ANON", "60/minute"),
        "user": os.environ.get("PARLEY_THROTTLE_USER", "1200/minute"),
        # Failed log-ins only: see accounts.api.ObtainTokenView.
        "login-failures": os.environ.get("PARLEY_THROTTLE_LOGIN_FAILURES", "10/minute"),
    },
}
PARLEY_API_MAX_PAGE_SIZE = env_int("PARLEY_API_MAX_PAGE_SIZE", 100)
SPECTACULAR_SETTINGS = {
    "TITLE": "Parley API",
    "DESCRIPTION": "Rooms, members, invites, live participants, call history and ICE servers. See docs/api.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "calls.models.RoomMembership.Role",
        "AssignableRoleEnum": "calls.serializers.ASSIGNABLE_ROLES",
        "VisibilityEnum": "calls.models.Room.Visibility",
        "LeaveReasonEnum": "calls.models.CallParticipant.LeaveReason",
        "InviteStateEnum": "calls.models.Invite.State",
    },
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

# --- Signaling ---------------------------------------------------------------------------------

# STUN servers for RTCPeerConnection; none by default (host candidates suffice on one machine or LAN).
# TURN servers with time-limited credentials are configured with the PARLEY_TURN_* variables.
PARLEY_STUN_URLS = env_list("PARLEY_STUN_URLS", [])
# TURN with the TURN REST API's time-limited credentials (coturn's `use-auth-secret` + `static-auth-secret`).
PARLEY_TURN_URLS = env_list("PARLEY_TURN_URLS", [])
PARLEY_TURN_SECRET = os.environ.get("PARLEY_TURN_SECRET", "")
PARLEY_TURN_TTL = env_int("PARLEY_TURN_TTL", 3600)
if PARLEY_TURN_URLS and not PARLEY_TURN_SECRET:
    raise ImproperlyConfigured("PARLEY_TURN_URLS is set but PARLEY_TURN_SECRET is not: TURN needs credentials.")
if PARLEY_TURN_TTL <= 0:
    raise ImproperlyConfigured(f"PARLEY_TURN_TTL: expected a positive number of seconds, got {PARLEY_TURN_TTL}")
# Ringing a person (people.services): how long a ring rings before it is missed, and how many rings a user may
# start per minute.
PARLEY_RING_SECONDS = env_int("PARLEY_RING_SECONDS", 30)
if PARLEY_RING_SECONDS <= 0:
    raise ImproperlyConfigured(f"PARLEY_RING_SECONDS: expected a positive number of seconds, got {PARLEY_RING_SECONDS}")
PARLEY_RING_RATE = os.environ.get("PARLEY_RING_RATE", "10/minute")
PARLEY_SIGNALING = {
    "TICKET_TTL": env_int("PARLEY_TICKET_TTL", 60),
    # A peer not heard from for this long is suspended (the page pings every 10 s).
    "PEER_TIMEOUT": env_float("PARLEY_PEER_TIMEOUT", 30.0),
    # Resuming (docs/signaling.md): how long a lost connection's participation waits for its resume, and how
    # many frames (and bytes) are kept for its replay.
    "RESUME_SECONDS": env_int("PARLEY_RESUME_SECONDS", 30),
    "RESUME_BUFFER": env_int("PARLEY_RESUME_BUFFER", 256),
    "RESUME_BUFFER_BYTES": env_int("PARLEY_RESUME_BUFFER_BYTES", 256 * 1024),
    # How often each process beats, and after how long without a beat it is presumed dead.
    "NODE_BEAT_SECONDS": env_float("PARLEY_NODE_BEAT_SECONDS", 2.0),
    "NODE_TIMEOUT": env_float("PARLEY_NODE_TIMEOUT", 6.0),
    # How long a resume waits for the process holding the old socket to hand it over (a dead one never does).
    "HANDOVER_SECONDS": env_float("PARLEY_HANDOVER_SECONDS", 2.0),
    # A user's live peers per call (a laptop and a phone); a further join replaces the oldest (4410).
    "MAX_PEERS_PER_USER": env_int("PARLEY_MAX_PEERS_PER_USER", 2),
    "MAX_FRAME_BYTES": 64 * 1024,
    # The server's own message limit (the edge): a bigger message is refused with 1009 before it is read whole.
    # The documented daphne and uvicorn commands pass it (--websocket-max-message-size, --ws-max-size).
    "WS_MAX_BYTES": env_int("PARLEY_WS_MAX_BYTES", 1024 * 1024),
    "RATE_PER_SECOND": env_float("PARLEY_RATE_PER_SECOND", 20.0),
    "RATE_BURST": env_int("PARLEY_RATE_BURST", 100),
    "FLOOD_GRACE_SECONDS": env_float("PARLEY_FLOOD_GRACE_SECONDS", 5.0),
    # A client that does not read is closed (4413) once its unread output passes this many bytes (queued, or
    # sent and not acknowledged by its pings) or stays unread this long.
    "SLOW_BYTES": env_int("PARLEY_SLOW_BYTES", 1024 * 1024),
    "SLOW_SECONDS": env_float("PARLEY_SLOW_SECONDS", 30.0),
    "DB_THREADS": env_int("PARLEY_DB_THREADS", 8),
    # Sockets of one process that may wait for their welcome at once; more are refused with 4503 and retry with
    # backoff, instead of timing out after the server did their work (a reconnect storm, docs/performance.md).
    "MAX_JOINING": env_int("PARLEY_MAX_JOINING", 100),
    # Liveness (calls/liveness.py): how often a process refreshes its peers' rows and looks for silent peers,
    # how many heartbeats between two reaper runs, and how long a stopping process may take to record leaves.
    "HEARTBEAT_SECONDS": env_float("PARLEY_HEARTBEAT_SECONDS", 20.0),
    "REAP_EVERY": env_int("PARLEY_REAP_EVERY", 3),
    "SHUTDOWN_SECONDS": env_float("PARLEY_SHUTDOWN_SECONDS", 30.0),
}


def env_gc_thresholds(name: str, default: str) -> tuple[int, int, int] | None:
    """Three positive integers for gc.set_threshold, or "python" (None: Python's own, nothing frozen)."""
    raw = os.environ.get(name, "").strip() or default
    if raw.lower() == "python":
        return None
    try:
        values = tuple(int(part) for part in raw.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise ImproperlyConfigured(f"{name}: expected three positive integers or 'python', got {raw!r}")
    return values


# The server processes' garbage collector (config/collector.py, docs/performance.md): the generations' thresholds.
PARLEY_GC_THRESHOLDS = env_gc_thresholds("PARLEY_GC_THRESHOLDS", "10000,10,100")
# Call quality (calls/quality.py, docs/operations.md "Call quality"): a participation's pair of peers is poor
# when its mean MOS is under PARLEY_POOR_MOS, or its loss, mean RTT or mean jitter is over these, or its video
# froze longer than this share of its time. A pair's reports closer together than PARLEY_STATS_MIN_SECONDS are
# refused (rate-limited): the page sends one every 10 s.
# GET /metrics (docs/operations.md "Metrics"): a bearer token, or client addresses (networks) allowed without one;
# neither set: 404.
PARLEY_METRICS_TOKEN = os.environ.get("PARLEY_METRICS_TOKEN", "")
try:
    PARLEY_METRICS_ALLOW = [ipaddress.ip_network(net, strict=False) for net in env_list("PARLEY_METRICS_ALLOW", [])]
except ValueError as error:
    raise ImproperlyConfigured(f"PARLEY_METRICS_ALLOW: {error}") from None
PARLEY_QUALITY = {
    "POOR_MOS": env_float("PARLEY_POOR_MOS", 3.5),
    "POOR_LOSS_PERCENT": env_float("PARLEY_POOR_LOSS_PERCENT", 3.0),
    "POOR_RTT_MS": env_float("PARLEY_POOR_RTT_MS", 400.0),
    "POOR_JITTER_MS": env_float("PARLEY_POOR_JITTER_MS", 30.0),
    "POOR_FREEZE_PERCENT": env_float("PARLEY_POOR_FREEZE_PERCENT", 5.0),
    "STATS_SECONDS": 10,
    "STATS_MIN_SECONDS": env_float("PARLEY_STATS_MIN_SECONDS", 5.0),
}
# daphne's runserver (make run) reads its limit from here.
DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = PARLEY_SIGNALING["WS_MAX_BYTES"]

# --- Webhooks, retention, quotas (docs/webhooks.md, docs/operations.md) -----------------------------

PARLEY_WEBHOOKS = {
    # Loopback, link-local and private addresses are refused (SSRF) unless this is on; plain http unless DEBUG.
    "ALLOW_PRIVATE": env_bool("PARLEY_WEBHOOK_ALLOW_PRIVATE", False),
    "ALLOW_HTTP": env_bool("PARLEY_WEBHOOK_ALLOW_HTTP", DEBUG),
    "TIMEOUT": env_float("PARLEY_WEBHOOK_TIMEOUT", 10.0),
    # The Standard Webhooks retry schedule is multiplied by this (tests shrink it).
    "RETRY_SCALE": env_float("PARLEY_WEBHOOK_RETRY_SCALE", 1.0),
    "DISABLE_AFTER_SECONDS": env_int("PARLEY_WEBHOOK_DISABLE_AFTER_SECONDS", 3 * 24 * 3600),
    "POLL_SECONDS": env_float("PARLEY_WEBHOOK_POLL_SECONDS", 1.0),
}
# Calls (with their participants) and delivered webhook events older than this are purged by
# `manage.py purge_call_history`; unset or 0: kept forever.
PARLEY_CALL_RETENTION_DAYS = env_int("PARLEY_CALL_RETENTION_DAYS", 0)
# Per-account limits (0: unlimited); the admin overrides them per user (accounts.Quota).
PARLEY_QUOTAS = {
    "rooms": env_int("PARLEY_QUOTA_ROOMS", 0),
    "concurrent_calls": env_int("PARLEY_QUOTA_CONCURRENT_CALLS", 0),
    "call_minutes": env_int("PARLEY_QUOTA_CALL_MINUTES", 0),  # per calendar month (UTC)
}
# Someone removed from a call (kicked) may not join the same call again for this long (0: at once).
PARLEY_KICK_BAN_SECONDS = env_int("PARLEY_KICK_BAN_SECONDS", 300)
# The SFU (docs/sfu.md): Janus's WebSocket API (ws://host:8188), its API secret and its VideoRoom admin key, known to
# Parley only (browsers talk to Janus's media ports, never to its API). Unset URL: every call is a mesh, as before.
PARLEY_JANUS_URL = os.environ.get("PARLEY_JANUS_URL", "").strip()
PARLEY_JANUS_API_SECRET = os.environ.get("PARLEY_JANUS_API_SECRET", "")
PARLEY_JANUS_ADMIN_KEY = os.environ.get("PARLEY_JANUS_ADMIN_KEY", "")
# A room whose media is `auto` stays a mesh while at most this many people are in the call.
PARLEY_MESH_MAX = env_int("PARLEY_MESH_MAX", 4)
if PARLEY_JANUS_URL and not PARLEY_JANUS_URL.startswith(("ws://", "wss://")):
    raise ImproperlyConfigured(f"PARLEY_JANUS_URL: expected a ws:// or wss:// URL, got {PARLEY_JANUS_URL!r}")
if PARLEY_MESH_MAX < 2:
    raise ImproperlyConfigured(f"PARLEY_MESH_MAX: expected at least 2, got {PARLEY_MESH_MAX}")

# --- Internationalisation, static files ---------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Logging: errors on the socket path must reach the log --------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},  # one line per request is noise at load
    },
}
