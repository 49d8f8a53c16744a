"""What a production configuration must not contain. Pure functions of the settings' values, used twice: by
config/settings.py, which refuses to load (so no server starts), and by the system checks in calls/checks.py
(`manage.py check`, and settings changed after loading)."""

from urllib.parse import urlparse


def unsafe_deployment(*, debug: bool, allowed_hosts: list[str], trusted_origins: list[str]) -> list[tuple[str, str]]:
    """(check id, problem) for each setting that would be unsafe with debug off; none in debug."""
    if debug:
        return []
    problems = []
    if "*" in allowed_hosts:
        problems.append(("parley.E001", "DJANGO_ALLOWED_HOSTS contains '*': any Host header would be accepted, and "
                                        "the WebSocket origin check would accept any site."))
    for host in allowed_hosts:
        if host.startswith("."):
            problems.append(("parley.E002", f"DJANGO_ALLOWED_HOSTS entry {host!r} starts with a dot: it accepts "
                                            f"every subdomain. List the host names themselves."))
    for origin in trusted_origins:
        if "*" in origin:
            problems.append(("parley.E003", f"DJANGO_CSRF_TRUSTED_ORIGINS entry {origin!r} is a wildcard: list "
                                            f"each origin."))
        elif urlparse(origin).scheme != "https":
            problems.append(("parley.E004", f"DJANGO_CSRF_TRUSTED_ORIGINS entry {origin!r} is not https: a "
                                            f"plain-http page could post forms and open sockets as the user."))
    return problems
