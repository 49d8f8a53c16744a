"""URL wiring of the room API (mounted under /api/ by config/urls.py)."""

from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from calls import api

router = SimpleRouter()
router.register("rooms", api.RoomViewSet, basename="room")
router.register("calls", api.CallViewSet, basename="call")

urlpatterns = [
    *router.urls,
    path("rooms/<slug:slug>/members/", api.MemberViewSet.as_view({"get": "list", "post": "create"}),
         name="room-members"),
    path("rooms/<slug:slug>/member-candidates/", api.MemberViewSet.as_view({"get": "candidates"}),
         name="room-member-candidates"),
    path("rooms/<slug:slug>/members/<str:username>/",
         api.MemberViewSet.as_view({"patch": "partial_update", "delete": "destroy"}), name="room-member"),
    path("rooms/<slug:slug>/invites/", api.InviteViewSet.as_view({"get": "list", "post": "create"}),
         name="room-invites"),
    path("rooms/<slug:slug>/invites/<int:pk>/", api.InviteViewSet.as_view({"delete": "destroy"}),
         name="room-invite"),
    path("rooms/<slug:slug>/participants/", api.ParticipantViewSet.as_view({"get": "list"}),
         name="room-participants"),
    path("rooms/<slug:slug>/participants/<uuid:peer_id>/kick/", api.ParticipantViewSet.as_view({"post": "kick"}),
         name="room-participant-kick"),
    path("rooms/<slug:slug>/audit/", api.RoomAuditViewSet.as_view({"get": "list"}), name="room-audit"),
    path("ice-servers/", api.IceServersView.as_view(), name="ice-servers"),
]
# Last in /api/: addresses that match nothing, e.g. a slug with characters slugs cannot have. [\s\S] matches
# newlines too (%0A in a path).
fallback = re_path(r"^[\s\S]*$", api.not_found)
