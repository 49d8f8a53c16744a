from django.conf import settings
from django.core.checks import Error, Tags, register

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
