"""URL wiring of the people API (mounted under /api/ by config/urls.py)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from people import api

router = SimpleRouter()
router.register("rings", api.RingViewSet, basename="ring")

urlpatterns = [
    *router.urls,
    path("contacts/", api.ContactsView.as_view(), name="contacts"),
    path("me/ticket/", api.MeTicketView.as_view(), name="api-me-ticket"),
]
