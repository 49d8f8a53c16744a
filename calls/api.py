"""The room-management REST API: rooms, members, invites, live participants, call history, ICE servers.

Permissions are object-level and start from the room: a room the caller cannot see (a private room they do not
belong to) does not exist for them on any endpoint (404). docs/api.md has the full matrix.
"""

from django.conf import settings
from django.db import IntegrityError
from django.db.models import Case, Count, IntegerField, OuterRef, Prefetch, Q, Subquery, Value, When
from django.db.models.functions import Coalesce, Lower
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import filters, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, PermissionDenied
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import audit
from accounts.api import AuditEventSerializer, UserSerializer
from accounts.models import AuditEvent, User
from accounts.security import client_ip
from calls import services
from calls.api_filters import CallFilterSerializer, RoomFilterSerializer
from calls.ice import ice_servers_for
from calls.models import Call, CallParticipant, Invite, Room, RoomMembership
from calls.serializers import (
    CallSerializer,
    IceServersSerializer,
    InviteSerializer,
    MembershipSerializer,
    MembershipUpdateSerializer,
    ParticipantSerializer,
    RoomCreateSerializer,
    RoomSerializer,
    TicketSerializer,
)
from calls.tickets import issue_ticket

Role = RoomMembership.Role
CANDIDATES_MIN_QUERY = 2
CANDIDATES_LIMIT = 10


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "This conflicts with existing data."
    default_code = "conflict"


class RoomRolePermission(BasePermission):
    """The caller's role in the room allows the view's action: `room_rules` on the view maps a view action to an
    action of `services.RULES` (the table the services enforce too). Views without a rule for an action leave it
    to visibility (a room the caller cannot see is a 404 before any 403)."""

    def has_permission(self, request, view):
        rule = view.room_rules.get(view.action)
        if rule is None or not isinstance(view, RoomScoped):
            return True
        return self.allow(rule, view.get_room())

    def has_object_permission(self, request, view, obj):
        rule = view.room_rules.get(view.action)
        if rule is None or isinstance(view, RoomScoped):
            return True
        return self.allow(rule, obj)

    def allow(self, rule: str, room: Room) -> bool:
        if room.is_direct and rule in services.DIRECT_ROOM_FIXED:
            raise PermissionDenied(services.DIRECT_ROOM_REFUSAL)
        if room.role not in services.RULES[rule]:
            raise PermissionDenied(services.REFUSALS[rule])
        return True


class ServiceRules:
    """Views whose services refuse with `services.Refused`: answered 403, or 409 for a conflict."""

    permission_classes = [IsAuthenticated, RoomRolePermission]
    room_rules: dict[str, str] = {}

    def handle_exception(self, exc):
        if isinstance(exc, services.Refused) and exc.code == services.Refused.QUOTA_EXCEEDED:
            return Response(exc.quota.as_dict(), status=status.HTTP_403_FORBIDDEN)
        if isinstance(exc, services.Refused):
            exc = Conflict(exc.detail) if exc.code == services.Refused.CONFLICT else PermissionDenied(exc.detail)
        return super().handle_exception(exc)


def rooms_for(user):
    """The rooms the user can see, each with `role` (theirs, or None) and `participant_count` (live) annotated."""
    live = (
        CallParticipant.objects.filter(call__room=OuterRef("pk"), left_at__isnull=True)
        .order_by().values("call__room").annotate(n=Count("pk")).values("n")
    )
    role = RoomMembership.objects.filter(room=OuterRef("pk"), user=user if user.is_authenticated else None)
    role = role.values("role")[:1]
    return (
        Room.objects.visible_to(user).select_related("owner")
        .annotate(role=Subquery(role),
                  participant_count=Coalesce(Subquery(live, output_field=IntegerField()), Value(0)))
    )


SLUG = OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="The room's slug.")


class RoomScoped:
    """For the endpoints under /api/rooms/<slug>/: the room, 404 unless the caller can see it."""

    def get_room(self) -> Room:
        if not hasattr(self, "_room"):
            self._room = get_object_or_404(rooms_for(self.request.user), slug=self.kwargs["slug"])
        return self._room



# --- Rooms ----------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="List the rooms the caller can see", parameters=[RoomFilterSerializer]),
    create=extend_schema(summary="Create a room (the caller becomes its owner)", request=RoomCreateSerializer,
                         responses={201: RoomSerializer}),
    retrieve=extend_schema(summary="A room, with its live participant count and the caller's role"),
    update=extend_schema(summary="Replace a room's settings (owner, moderators)"),
    partial_update=extend_schema(summary="Change a room's settings (owner, moderators)",
                                 description="Locking a room closes the sockets of everyone in its live call but "
                                             "the owner and moderators (close code 4403, reason `room-locked`)."),
    destroy=extend_schema(summary="Delete a room (owner)",
                          description="Closes every socket of its live call (close code 4404, reason `room-closed`) "
                                      "and deletes the room; its calls stay in the call log (`room` null)."),
)
class RoomViewSet(ServiceRules, viewsets.ModelViewSet):
    serializer_class = RoomSerializer
    room_rules = {"update": "change-room", "partial_update": "change-room", "destroy": "delete-room"}
    lookup_field = "slug"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    filter_backends = [filters.SearchFilter, filters.OrderingFilter]
    search_fields = ["name", "slug"]
    ordering_fields = ["name", "slug", "created_at", "updated_at"]
    ordering = ["name", "slug"]
    extra_error_codes = {"create": ["409"]}

    def get_queryset(self):
        rooms = rooms_for(self.request.user)
        if self.action == "list":  # direct rooms (people.services) are reached through their rings, not listed
            rooms = RoomFilterSerializer(data=self.request.query_params).filter(rooms.ordinary(),
                                                                                user=self.request.user)
        return rooms

    def get_serializer_class(self):
        return RoomCreateSerializer if self.action == "create" else RoomSerializer

    def perform_create(self, serializer):
        fields = dict(serializer.validated_data)
        slug = fields.pop("slug", "")
        if slug and Room.objects.filter(slug=slug).exists():
            raise Conflict(f"A room with the slug {slug!r} exists already.")
        try:  # create_room is atomic: a refusal's audit event outlives it, a lost race rolls it back whole
            room = services.create_room(owner=self.request.user, slug=slug, address=client_ip(self.request),
                                        **fields)
        except IntegrityError:  # lost a race for the same slug
            raise Conflict(f"A room with the slug {slug!r} exists already.") from None
        serializer.instance = rooms_for(self.request.user).get(pk=room.pk)

    def perform_update(self, serializer):
        room = services.update_room(by=self.request.user, room=serializer.instance, address=client_ip(self.request),
                                    **serializer.validated_data)
        serializer.instance = rooms_for(self.request.user).get(pk=room.pk)

    def perform_destroy(self, room):
        services.delete_room(by=self.request.user, room=room, address=client_ip(self.request))

    @extend_schema(summary="A ticket to open the room's signaling socket", request=None,
                   responses={200: TicketSerializer},
                   description="For programs that cannot send the session cookie on the WebSocket: open "
                               "`ws/rooms/<slug>/?ticket=<ticket>` within `expires_in` seconds. 403 when the caller "
                               "may not join (a locked room).")
    @action(detail=True, methods=["post"])
    def ticket(self, request, slug=None):
        room = self.get_object()
        try:
            services.check_may_join(room=room, user=request.user)
        except services.JoinRefused as refusal:
            raise PermissionDenied(str(refusal)) from None
        ticket = issue_ticket(user=request.user, room=room, address=client_ip(request))
        return Response({"ticket": ticket, "expires_in": settings.PARLEY_SIGNALING["TICKET_TTL"]})


# --- Members --------------------------------------------------------------------------------------


USERNAME = OpenApiParameter("username", OpenApiTypes.STR, OpenApiParameter.PATH, description="The member's username.")


@extend_schema_view(
    list=extend_schema(summary="The room's members (members only)", parameters=[SLUG]),
    create=extend_schema(summary="Add a member (owner; moderators add plain members)", parameters=[SLUG]),
    partial_update=extend_schema(summary="Change a member's role (owner)", parameters=[SLUG, USERNAME]),
    destroy=extend_schema(summary="Remove a member, or leave the room", parameters=[SLUG, USERNAME],
                          description="The owner removes anyone but themselves; moderators remove plain members; "
                                      "anyone but the owner may remove themselves (leave)."),
)
class MemberViewSet(ServiceRules, RoomScoped, mixins.ListModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin,
                    mixins.DestroyModelMixin, viewsets.GenericViewSet):
    lookup_field = "user__username"
    lookup_url_kwarg = "username"
    extra_error_codes = {"create": ["409"]}
    room_rules = {"list": "see-members", "create": "add-member", "partial_update": "change-role",
                  "candidates": "add-member"}

    def get_queryset(self):
        return RoomMembership.objects.filter(room=self.get_room()).select_related("user").order_by("user__username")

    def get_serializer_class(self):
        return MembershipUpdateSerializer if self.action == "partial_update" else MembershipSerializer

    def perform_create(self, serializer):
        serializer.instance = services.add_member(by=self.request.user, room=self.get_room(),
                                                  user=serializer.validated_data["username"],
                                                  role=serializer.validated_data["role"],
                                                  address=client_ip(self.request))

    def perform_update(self, serializer):
        serializer.instance = services.change_role(by=self.request.user, membership=serializer.instance,
                                                   role=serializer.validated_data["role"],
                                                   address=client_ip(self.request))

    def perform_destroy(self, membership):
        services.remove_member(by=self.request.user, membership=membership, address=client_ip(self.request))

    @extend_schema(
        summary="People to add: usernames and display names that match (owner, moderators)",
        parameters=[SLUG, OpenApiParameter("q", OpenApiTypes.STR, description=(
            f"At least {CANDIDATES_MIN_QUERY} characters: usernames starting with it, display names containing "
            "it, case-insensitively."))],
        responses={200: UserSerializer(many=True)},
        description=f"At most {CANDIDATES_LIMIT} active users who are not members yet, usernames first. Only "
                    "those who may add members may search: to anyone else it is a 403 (a 404 for a private room "
                    "they do not belong to), so nobody lists users through a room they cannot manage.",
    )
    @action(detail=False, methods=["get"], pagination_class=None)
    def candidates(self, request, slug=None):
        query = request.query_params.get("q", "").strip()[:150]
        if len(query) < CANDIDATES_MIN_QUERY:
            return Response([])
        members = RoomMembership.objects.filter(room=self.get_room()).values("user_id")
        users = (
            User.objects.filter(is_active=True)
            .filter(Q(username__istartswith=query) | Q(display_name__icontains=query))
            .exclude(pk__in=members)
            .annotate(by_username=Case(When(username__istartswith=query, then=Value(0)), default=Value(1)))
            .order_by("by_username", Lower("username"))[:CANDIDATES_LIMIT]
        )
        return Response(UserSerializer(users, many=True).data)


# --- Invites --------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="The room's invites (owner, moderators)", parameters=[SLUG]),
    create=extend_schema(summary="Create an invite link (owner, moderators)", parameters=[SLUG]),
    destroy=extend_schema(summary="Revoke an invite (owner, moderators)",
                          parameters=[SLUG, OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)]),
)
class InviteViewSet(ServiceRules, RoomScoped, mixins.ListModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin,
                    viewsets.GenericViewSet):
    serializer_class = InviteSerializer
    lookup_value_regex = r"[0-9]+"
    room_rules = {"list": "manage-invites", "create": "manage-invites", "destroy": "manage-invites"}

    def get_queryset(self):
        return Invite.objects.filter(room=self.get_room()).select_related("room", "created_by")

    def perform_create(self, serializer):
        invite = serializer.save(room=self.get_room(), created_by=self.request.user)
        audit.record(audit.Action.INVITE_CREATED, actor=self.request.user, target=services.room_target(invite.room),
                     address=client_ip(self.request), invite=invite.pk, expires_at=invite.expires_at.isoformat(),
                     max_uses=invite.max_uses)

    def perform_destroy(self, invite):
        if Invite.objects.filter(pk=invite.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
            audit.record(audit.Action.INVITE_REVOKED, actor=self.request.user, target=services.room_target(invite.room),
                         address=client_ip(self.request), invite=invite.pk, uses=invite.use_count)


# --- Live participants ----------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="Who is in the room's live call now", parameters=[SLUG]),
)
class ParticipantViewSet(ServiceRules, RoomScoped, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = ParticipantSerializer
    room_rules = {"kick": "kick"}
    lookup_field = "peer_id"
    pagination_class = None  # at most MAX_PARTICIPANTS

    def get_queryset(self):
        return CallParticipant.objects.live().filter(call__room=self.get_room()).select_related("user", "call__room")

    @extend_schema(
        summary="Remove a peer from the live call (owner, moderators)", request=None,
        parameters=[SLUG, OpenApiParameter("peer_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses={204: OpenApiResponse(description="Kicked: its socket closes with 4403.")},
        description="The peer's socket closes with code 4403; the others get `peer-left` with reason `kicked`; "
                    "the participant row records `kicked`. Moderators cannot kick the owner or other moderators.",
    )
    @action(detail=True, methods=["post"])
    def kick(self, request, slug=None, peer_id=None):
        services.kick_participant(by=request.user, participant=self.get_object(), address=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Audit trail ---------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="The room's audit trail, newest first (owner)", parameters=[SLUG],
        description="The audit events whose target is the room (docs/operations.md, \"Audit trail\"): settings "
                    "changed, locks, members and roles, invites, kicks, tickets, refused joins and rate-limit "
                    "closes of its signaling socket, rings into it. Only those since the room was created (a "
                    "former room of the same slug is not shown). Client addresses are left out: operators see "
                    "them in the admin. A member who is not the owner gets 403; a private room the caller does "
                    "not belong to is a 404."),
)
class RoomAuditViewSet(RoomScoped, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = AuditEventSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular generating the schema
            return AuditEvent.objects.none()
        room = self.get_room()
        if room.role != Role.OWNER:
            raise PermissionDenied("Only the room's owner sees its audit trail.")
        return (AuditEvent.objects.filter(target=services.room_target(room), created_at__gte=room.created_at)
                .select_related("actor").order_by("-created_at", "-id"))


# --- Call history ---------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="Call history: calls the caller took part in, and all calls of rooms they own",
                       parameters=[CallFilterSerializer]),
    retrieve=extend_schema(summary="One call, with its participants and durations"),
)
class CallViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = CallSerializer
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self):
        if not self.request.user.is_authenticated:  # only while generating the schema: the API needs a user
            return Call.objects.none()
        calls = (
            Call.objects.for_user(self.request.user).select_related("room")
            .prefetch_related(Prefetch("participants", CallParticipant.objects.select_related("user")),
                              "participants__quality")
        )
        if self.action == "list":
            calls = CallFilterSerializer(data=self.request.query_params).filter(calls)
        return calls


# --- ICE servers ----------------------------------------------------------------------------------


class IceServersView(APIView):
    @extend_schema(summary="STUN and TURN servers for RTCPeerConnection", responses={200: IceServersSerializer},
                   description="TURN entries carry credentials for the caller valid for `ttl` seconds "
                               "(TURN REST API: username `<expiry>:<user id>`, credential "
                               "base64(HMAC-SHA1(secret, username))). Fetch them right before connecting.")
    def get(self, request):
        servers = ice_servers_for(request.user)
        has_turn = any("credential" in server for server in servers)
        response = Response({"ice_servers": servers, "ttl": settings.PARLEY_TURN_TTL if has_turn else None})
        response["Cache-Control"] = "no-store, private"
        return response


@csrf_exempt  # it changes nothing; a CSRF failure would answer HTML
def not_found(request, *args, **kwargs):
    """Any other /api/ address: a JSON 404 like the API's own, not the HTML page."""
    return JsonResponse({"detail": "Not found."}, status=404)
