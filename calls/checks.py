from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from config.deploy import unsafe_deployment


@register(Tags.security, deploy=True)
@register(Tags.security)
def check_allowed_hosts_not_wildcard(app_configs, **kwargs):
    """A wildcard host would also switch off the WebSocket origin check."""
    if settings.DEBUG or "*" not in settings.ALLOWED_HOSTS:
        return []
    return [
        Error(
            "DJANGO_ALLOWED_HOSTS contains '*' while DEBUG is off.",
            hint="List the host names the site is served under; a wildcard also disables the WebSocket origin check.",
            id="parley.E001",
        )
    ]


@register(Tags.security, deploy=True)
@register(Tags.security)
def check_hosts_and_trusted_origins(app_configs, **kwargs):
    """Leading-dot hosts, and plain-http or wildcard trusted origins, with debug off (settings refuse to load with
    them; this catches settings changed after loading). The wildcard host is check_allowed_hosts_not_wildcard."""
    problems = unsafe_deployment(debug=settings.DEBUG, allowed_hosts=settings.ALLOWED_HOSTS,
                                 trusted_origins=settings.CSRF_TRUSTED_ORIGINS)
    return [Error(problem, id=check_id) for check_id, problem in problems if check_id != "parley.E001"]


def _layer_is_in_memory() -> bool:
    return settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"


def _database_is_shared() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


@register(Tags.compatibility, deploy=True)
@register(Tags.compatibility)
def check_shared_database_has_shared_layer(app_configs, **kwargs):
    """A database other processes can use, with a channel layer no other process can reach."""
    if settings.DEBUG or not _database_is_shared() or not _layer_is_in_memory():
        return []
    return [
        Error(
            "DATABASE_URL is a PostgreSQL database but REDIS_URL is not set: this process's channel layer is in "
            "memory, so nothing sent by another process sharing the database (the reaper's peer-left, a kick "
            "from the API or the admin) reaches its peers.",
            hint="Set REDIS_URL (or REDIS_SENTINELS) to the Redis that every process of the deployment uses.",
            id="parley.E010",
        )
    ]


@register(Tags.database, deploy=True)
def check_processes_sharing_the_database_share_the_layer(app_configs, databases=None, **kwargs):
    """Every Parley process connected to this database must use the same Redis and channel prefix.

    Each process names its layer in its connections' application_name (config/settings.py); this compares ours
    with those of the processes connected now. Run by `check --deploy --database default`, as the systemd units
    do before starting a process (deploy/systemd/).
    """
    if not databases or "default" not in databases or not _database_is_shared():
        return []
    from django.db import DatabaseError, connection

    ours = settings.DATABASES["default"]["OPTIONS"]["application_name"]
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT application_name, pid, client_addr, client_port FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND application_name LIKE 'parley %%' AND application_name <> %s"
                " ORDER BY application_name, pid",
                [ours],
            )
            others = cursor.fetchall()
    except DatabaseError as error:
        return [Warning(f"Could not compare channel layers with the other processes: {error}", id="parley.W011")]
    if not others:
        return []
    seen: dict[str, list[str]] = {}
    for name, pid, address, port in others:
        client = f"{address}:{port}" if address else "a local socket"
        seen.setdefault(name.removeprefix("parley "), []).append(f"backend pid {pid} (client {client})")
    listing = "; ".join(f"layer {layer}: {', '.join(pids)}" for layer, pids in seen.items())
    return [
        Error(
            f"Processes sharing this database use another channel layer than this one (layer "
            f"{settings.PARLEY_LAYER_FINGERPRINT}, prefix {settings.PARLEY_CHANNEL_PREFIX!r}): {listing}. "
            "Frames, kicks and the reaper's announcements between the two sides would go nowhere.",
            hint="Give every process of the deployment the same REDIS_URL (or REDIS_SENTINELS) and "
                 "PARLEY_CHANNEL_PREFIX, from one environment file; to move to another Redis, stop them all, then "
                 "start them all (docs/deploy.md).",
            id="parley.E011",
        )
    ]
