from django.conf import settings
from django.core.checks import Error, Tags, register


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
