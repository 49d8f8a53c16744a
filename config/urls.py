from django.contrib import admin
from django.urls import include, path

from accounts.api import MeView, ObtainTokenView

api_patterns = [
    path("auth/token/", ObtainTokenView.as_view(), name="api-token"),
    path("me/", MeView.as_view(), name="api-me"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("api/", include(api_patterns)),
    path("", include("calls.urls")),
]
