"""Redis Sentinel: where the channel layer and the cache find the current Redis primary.

One spelling for both, a URL:

    redis+sentinel://[[user]:password@]host:port[,host:port...]/<primary name>[/<db>][?sentinel_password=...]

The password (if any) is the Redis servers' own (`requirepass`); `sentinel_password` is the sentinels' when they
have one. `REDIS_SENTINELS=host:port,host:port` with `REDIS_SENTINEL_MASTER` is a shorthand for the same URL with
database 0 and no passwords.

channels-redis takes Sentinel hosts natively (`master_name`, `sentinels`: see `channels_redis.utils.create_pool`).
Django's RedisCache builds its pool with `pool_class.from_url(url, **options)`, so the cache only needs the pool
class below, which reads the same URL; no client class of our own.
"""

import hashlib
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.sentinel
from django.core.exceptions import ImproperlyConfigured

SCHEME = "redis+sentinel"
# Sentinels answer one small command per (re)connection: fail over to the next one fast.
SENTINEL_SOCKET_TIMEOUT = 2.0


@dataclass(frozen=True)
class SentinelTarget:
    service: str
    sentinels: list[tuple[str, int]] = field(default_factory=list)
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None

    def sentinel_kwargs(self) -> dict:
        kwargs = {"socket_timeout": SENTINEL_SOCKET_TIMEOUT, "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT}
        if self.sentinel_password:
            kwargs["password"] = self.sentinel_password
        return kwargs

    def server_kwargs(self) -> dict:
        """Connection arguments for the primary, as redis-py's pools take them."""
        kwargs: dict = {"db": self.db}
        if self.username:
            kwargs["username"] = self.username
        if self.password:
            kwargs["password"] = self.password
        return kwargs

    @property
    def identity(self) -> str:
        """What makes two processes use the same Redis: the primary's name and database (no secrets)."""
        return f"sentinel:{self.service}/{self.db}"


def _host_port(item: str, url: str) -> tuple[str, int]:
    host, sep, port = item.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ImproperlyConfigured(f"Redis Sentinel: expected host:port, got {item!r} in {url!r}")
    return host.strip("[]"), int(port)


def parse_sentinel_url(url: str) -> SentinelTarget:
    parts = urlsplit(url)
    if parts.scheme != SCHEME:
        raise ImproperlyConfigured(f"Redis Sentinel: expected a {SCHEME}:// URL, got {url!r}")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    sentinels = [_host_port(item, url) for item in hosts.split(",") if item.strip()]
    path = [segment for segment in parts.path.split("/") if segment]
    if not sentinels or not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ImproperlyConfigured(
            f"Redis Sentinel: expected {SCHEME}://host:port[,host:port...]/<primary name>[/<db>], got {url!r}"
        )
    query = parse_qs(parts.query)
    return SentinelTarget(
        service=unquote(path[0]),
        sentinels=sentinels,
        db=int(path[1]) if len(path) == 2 else 0,
        username=unquote(username) or None,
        password=unquote(password) or None,
        sentinel_password=(query.get("sentinel_password") or [None])[0],
    )


def sentinel_url(sentinels: list[str], service: str) -> str:
    """The URL that `REDIS_SENTINELS` and `REDIS_SENTINEL_MASTER` stand for."""
    for item in sentinels:
        _host_port(item, ",".join(sentinels))
    return f"{SCHEME}://{','.join(item.strip() for item in sentinels)}/{service}/0"


def redis_identity(url: str) -> str:
    """Which Redis server and database a plain redis:// (or rediss://, unix://) URL means, without secrets."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        db = parse_qs(parts.query).get("db", ["0"])[0]
        return f"unix:{parts.path}/{db}"
    db = parts.path.strip("/") or parse_qs(parts.query).get("db", ["0"])[0]
    return f"{(parts.hostname or 'localhost').lower()}:{parts.port or 6379}/{db or 0}"


def layer_fingerprint(identity: str, prefix: str) -> str:
    """A short, secret-free name for "this Redis and this channel prefix", compared across processes."""
    return hashlib.sha256(f"{identity}|{prefix}".encode()).hexdigest()[:12]


class SentinelConnectionPool(redis.sentinel.SentinelConnectionPool):
    """The cache's pool (`OPTIONS["pool_class"]`): connections go to whichever server the sentinels call primary.

    After a failover the next command reconnects through the sentinels (redis-py asks them on every connect and
    drops idle connections to a primary that changed).
    """

    @classmethod
    def from_url(cls, url: str, **options):
        target = parse_sentinel_url(url)
        manager = redis.sentinel.Sentinel(target.sentinels, sentinel_kwargs=target.sentinel_kwargs())
        return cls(target.service, manager, **target.server_kwargs(), **options)
