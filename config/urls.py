from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from accounts.api import MeDeleteView, MeExportView, MeView, ObtainTokenView
from calls import api_urls as calls_api
from calls.metrics import metrics_view
from people import api_urls as people_api
from webhooks.api import EndpointViewSet

webhooks_router = SimpleRouter()
webhooks_router.register("webhooks", EndpointViewSet, basename="webhook")

api_patterns = [
    path("auth/token/", ObtainTokenView.as_view(), name="api-token"),
    path("me/", MeView.as_view(), name="api-me"),
    path("me/export/", MeExportView.as_view(), name="api-me-export"),
    path("me/delete/", MeDeleteView.as_view(), name="api-me-delete"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's init script from a URL of its own: no inline script (CSP).
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    # ReDoc (styled-components) writes <style> elements and starts a worker from a blob: URL at run time; its
    # page alone allows those. Scripts stay 'self' only.
    path("redoc/", csp_update({"style-src": [UNSAFE_INLINE], "worker-src": [SELF, "blob:"]})(
        SpectacularRedocView.as_view(url_name="api-schema")), name="api-redoc"),
    *webhooks_router.urls,
    *calls_api.urlpatterns,
    *people_api.urlpatterns,
    calls_api.fallback,
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="metrics"),  # Prometheus (docs/operations.md "Metrics")
    path("accounts/", include("accounts.urls")),
    path("api/", include(api_patterns)),
    path("people/", include("people.urls")),
    path("", include("calls.urls")),
]

# Error pages in the site's layout (templates/404.html, 403.html, 500.html).
handler404 = "calls.views.page_not_found"
handler403 = "calls.views.permission_denied"
handler500 = "calls.views.server_error"
