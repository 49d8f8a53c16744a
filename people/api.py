"""The people REST API: contacts with presence, rings (list, create, accept, decline, cancel), the /ws/me/ ticket.

A person the caller may not ring, and a ring that is not theirs, do not exist for them (404). docs/api.md has the
details.
"""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ParseError, PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from accounts.security import client_ip
from calls.api import Conflict
from calls.serializers import TicketSerializer
from calls.tickets import ME, issue_ticket
from people import presence, services
from people.models import Ring

MAX_ID = 2**63 - 1


class PersonSerializer(serializers.Serializer):
    id = serializers.IntegerField(allow_null=True, help_text="null once the account is deleted.")
    username = serializers.CharField()
    display_name = serializers.CharField()


class ContactSerializer(PersonSerializer):
    presence = serializers.ChoiceField(choices=["online", "in-call", "offline"])

    def to_representation(self, instance):
        user, presence = instance
        return {"id": user.pk, "username": user.username, "display_name": user.name_shown, "presence": presence}


class RingRoomSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()


class RingSerializer(serializers.Serializer):
    """A ring as the API and the /ws/me/ frames show it (people.services.ring_object)."""

    id = serializers.IntegerField()
    caller = PersonSerializer()
    callee = PersonSerializer()
    room = RingRoomSerializer(allow_null=True, help_text="Where the call happens; null once the room is deleted.")
    state = serializers.ChoiceField(choices=Ring.State.choices)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    answered_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    call_id = serializers.IntegerField(allow_null=True, help_text="The call it led to (once someone joined).")

    def to_representation(self, instance):
        return services.ring_object(instance)


class RingCreateSerializer(serializers.Serializer):
    callee = serializers.CharField(max_length=150, help_text="The username of the person to ring.")
    room = serializers.SlugField(max_length=64, required=False, allow_blank=True,
                                 help_text="Ring them into this room (they must belong to it); default: your direct "
                                           "room with them.")


class DeclineSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(choices=["busy"], required=False,
                                     help_text='"busy": in another call (the ring ends as `busy`).')


class RingFilterSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=Ring.State.choices, required=False, help_text="Only rings in this state.")

    def get_fields(self):
        fields = super().get_fields()  # `with` is a Python keyword: it cannot be declared as an attribute
        fields["with"] = serializers.CharField(required=False, max_length=150,
                                               help_text="Only rings with this person (username).")
        return fields


class RingThrottle(UserRateThrottle):
    """Rings a user may start (PARLEY_RING_RATE, read on every request)."""

    scope = "rings"

    def get_rate(self):
        return settings.PARLEY_RING_RATE


class RingRefusals:
    def handle_exception(self, exc):
        if isinstance(exc, services.RingRefused):
            exc = {services.RingRefused.NOT_FOUND: NotFound, services.RingRefused.NOT_ALLOWED: PermissionDenied,
                   services.RingRefused.INVALID: ParseError, services.RingRefused.CONFLICT: Conflict}[exc.code](
                       exc.detail)
        return super().handle_exception(exc)


RING_ID = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The ring's id.")


@extend_schema_view(
    list=extend_schema(summary="The caller's rings, made and received, newest first",
                       parameters=[RingFilterSerializer]),
    create=extend_schema(summary="Ring a person (a contact, or a member of the given room)",
                         request=RingCreateSerializer, responses={201: RingSerializer},
                         description="Without `room` the call happens in the pair's direct room. 404 for an "
                                     "unknown person or one the caller may not ring; 409 while the caller is "
                                     "ringing someone; 400 for ringing oneself; 429 over PARLEY_RING_RATE."),
)
class RingViewSet(RingRefusals, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = RingSerializer
    lookup_value_regex = r"[0-9]+"
    extra_error_codes = {"create": ["404", "409"], "accept": ["409"], "decline": ["409"], "cancel": ["409"]}

    def get_queryset(self):
        if not self.request.user.is_authenticated:  # only while generating the schema
            return Ring.objects.none()
        filters = RingFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return services.rings_for(user=self.request.user, outcome=filters.validated_data.get("outcome", ""),
                                  with_username=filters.validated_data.get("with", ""))

    def get_throttles(self):
        return [*super().get_throttles(), RingThrottle()] if self.action == "create" else super().get_throttles()

    def create(self, request):
        data = RingCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ring = services.start_ring(caller=request.user, callee_username=data.validated_data["callee"],
                                   room_slug=data.validated_data.get("room", ""), address=client_ip(request))
        return Response(services.ring_object(ring), status=status.HTTP_201_CREATED)

    def ring_id(self, pk) -> int:
        if int(pk) > MAX_ID:
            raise NotFound("No such ring.")
        return int(pk)

    @extend_schema(summary="Answer a ring (the person called)", request=None, parameters=[RING_ID],
                   responses={200: RingSerializer},
                   description="The ring becomes `answered`; both people get `ring-answered` and open the room.")
    @action(detail=True, methods=["post"])
    def accept(self, request, pk=None):
        return Response(services.ring_object(services.accept_ring(by=request.user, ring_id=self.ring_id(pk),
                                                                  address=client_ip(request))))

    @extend_schema(summary="Decline a ring (the person called)", request=DeclineSerializer, parameters=[RING_ID],
                   responses={200: RingSerializer},
                   description='The ring becomes `declined` (`busy` with `{"reason": "busy"}`); both people get '
                               '`ring-declined`.')
    @action(detail=True, methods=["post"])
    def decline(self, request, pk=None):
        data = DeclineSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        busy = data.validated_data.get("reason") == "busy"
        return Response(services.ring_object(services.decline_ring(by=request.user, ring_id=self.ring_id(pk),
                                                                   busy=busy, address=client_ip(request))))

    @extend_schema(summary="Hang up before the ring is answered (the caller)", request=None, parameters=[RING_ID],
                   responses={200: RingSerializer},
                   description="The ring becomes `cancelled`; both people get `ring-ended`.")
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return Response(services.ring_object(services.cancel_ring(by=request.user, ring_id=self.ring_id(pk),
                                                                  address=client_ip(request))))


class ContactsView(APIView):
    @extend_schema(summary="The caller's contacts, with their presence",
                   parameters=[OpenApiParameter("search", OpenApiTypes.STR, description="Part of a username or name.")],
                   responses={200: ContactSerializer(many=True)},
                   description="The people the caller shares a room with, and anyone they have called or been called "
                               "by. Presence changes arrive on /ws/me/ as `presence` frames.")
    def get(self, request):
        search = request.query_params.get("search", "")[:150]
        if "\x00" in search:
            raise ValidationError({"search": ["Null characters are not allowed."]})
        contacts = presence.contacts_with_presence(user=request.user, search=search)
        return Response(ContactSerializer(contacts, many=True).data)


class MeTicketView(APIView):
    @extend_schema(summary="A ticket to open the per-user socket /ws/me/", request=None,
                   responses={200: TicketSerializer},
                   description="For programs that cannot send the session cookie on the WebSocket: open "
                               "`ws/me/?ticket=<ticket>` within `expires_in` seconds. Single use.")
    def post(self, request):
        return Response({"ticket": issue_ticket(user=request.user, target=ME, address=client_ip(request)),
                         "expires_in": settings.PARLEY_SIGNALING["TICKET_TTL"]})
