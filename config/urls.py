from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from accounts.api import MeView, ObtainTokenView
from calls import api_urls as calls_api

api_patterns = [
    path("auth/token/", ObtainTokenView.as_view(), name="api-token"),
    path("me/", MeView.as_view(), name="api-me"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's init script from a URL of its own: no inline script (CSP).
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    # ReDoc (styled-components) writes <style> elements and starts a worker from a blob: URL at run time; its
    # page alone allows those. Scripts stay 'self' only.
    path("redoc/", csp_update({"style-src": [UNSAFE_INLINE], "worker-src": [SELF, "blob:"]})(
        SpectacularRedocView.as_view(url_name="api-schema")), name="api-redoc"),
    *calls_api.urlpatterns,
    calls_api.fallback,
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("api/", include(api_patterns)),
    path("", include("calls.urls")),
]

# Error pages in the site's layout (templates/404.html, 403.html, 500.html).
handler404 = "calls.views.page_not_found"
handler403 = "calls.views.permission_denied"
handler500 = "calls.views.server_error"
