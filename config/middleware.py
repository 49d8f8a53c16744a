from django.conf import settings


class PermissionsPolicyMiddleware:
    """Sets Permissions-Policy (Django has no setting for it): camera, microphone and screen capture for this
    site's own pages only, never for a frame from elsewhere."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = settings.PARLEY_PERMISSIONS_POLICY

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Permissions-Policy", self.policy)
        return response
