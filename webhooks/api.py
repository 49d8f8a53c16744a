"""REST API of webhook endpoints: /api/webhooks/ and each endpoint's recent deliveries (docs/api.md).

Room owners register endpoints for their rooms; staff register global ones (every room). Everyone sees and changes
only the endpoints they registered. The secret is in the answer to the creation, and never again.
"""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated

from accounts import audit
from calls import events
from calls.models import Room, RoomMembership
from webhooks import delivery
from webhooks.models import Delivery, Endpoint


class EndpointSerializer(serializers.ModelSerializer):
    room = serializers.SlugRelatedField(slug_field="slug", queryset=Room.objects.all(), required=False,
                                        allow_null=True, help_text="The room's slug; null for every room (staff).")
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=events.TYPES), allow_empty=False)

    class Meta:
        model = Endpoint
        fields = ("id", "url", "room", "scope", "event_types", "description", "enabled", "disabled_reason",
                  "failing_since", "created_at")
        read_only_fields = ("id", "scope", "disabled_reason", "failing_since", "created_at")

    def validate_url(self, url: str) -> str:
        try:
            delivery.check_url(url)
        except delivery.UnsafeURL as error:
            raise serializers.ValidationError(str(error)) from None
        return url

    def validate(self, attrs: dict) -> dict:
        user = self.context["request"].user
        if self.instance is not None:
            if "room" in attrs and attrs["room"] != self.instance.room:
                raise serializers.ValidationError({"room": "An endpoint's room does not change: register another."})
            return attrs
        room = attrs.get("room")
        if room is None and not user.is_staff:
            raise PermissionDenied("Only staff register endpoints for every room.")
        if room is not None and room.role_of(user) != RoomMembership.Role.OWNER:
            if not room.is_public and room.role_of(user) is None:  # a room they cannot see does not exist
                raise serializers.ValidationError({"room": f"No room {room.slug!r}."})
            raise PermissionDenied("Only the room's owner registers its webhooks.")
        return attrs


class CreatedEndpointSerializer(EndpointSerializer):
    class Meta(EndpointSerializer.Meta):
        fields = (*EndpointSerializer.Meta.fields, "secret")
        read_only_fields = (*EndpointSerializer.Meta.read_only_fields, "secret")


class DeliverySerializer(serializers.ModelSerializer):
    event_id = serializers.CharField(source="event.event_id")
    type = serializers.CharField(source="event.type")

    class Meta:
        model = Delivery
        fields = ("id", "event_id", "type", "status", "attempts", "last_attempt_at", "last_response_code",
                  "last_error", "next_attempt_at", "delivered_at")
        read_only_fields = fields


@extend_schema_view(
    list=extend_schema(summary="List the webhook endpoints you registered"),
    create=extend_schema(summary="Register a webhook endpoint (its secret is shown in this answer only)",
                         responses={201: CreatedEndpointSerializer}),
    retrieve=extend_schema(summary="A webhook endpoint"),
    partial_update=extend_schema(summary="Change an endpoint (URL, event types, enabled)"),
    update=extend_schema(summary="Replace an endpoint's settings"),
    destroy=extend_schema(summary="Delete a webhook endpoint and its deliveries"),
)
class EndpointViewSet(viewsets.ModelViewSet):
    serializer_class = EndpointSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no user
            return Endpoint.objects.none()
        return Endpoint.objects.filter(owner=self.request.user).select_related("room")

    def get_serializer_class(self):
        return CreatedEndpointSerializer if self.action == "create" else EndpointSerializer

    def address(self) -> str | None:
        return self.request.META.get("REMOTE_ADDR")

    def perform_create(self, serializer):
        room = serializer.validated_data.get("room")
        endpoint = serializer.save(owner=self.request.user,
                                   scope=Endpoint.Scope.ROOM if room else Endpoint.Scope.GLOBAL)
        audit.record("webhook.created", actor=self.request.user, target=f"webhook:{endpoint.pk}",
                     address=self.address(), url=endpoint.url, room=room.slug if room else None)

    def perform_update(self, serializer):
        enabled = serializer.validated_data.get("enabled")
        extra = {"disabled_reason": "" if enabled else Endpoint.DisabledReason.BY_OWNER} if enabled is not None else {}
        if enabled:
            extra["failing_since"] = None
        endpoint = serializer.save(**extra)
        audit.record("webhook.changed", actor=self.request.user, target=f"webhook:{endpoint.pk}",
                     address=self.address(), url=endpoint.url, fields=sorted(serializer.validated_data))

    def perform_destroy(self, endpoint):
        audit.record("webhook.deleted", actor=self.request.user, target=f"webhook:{endpoint.pk}",
                     address=self.address(), url=endpoint.url)
        endpoint.delete()

    @extend_schema(summary="The endpoint's recent deliveries, newest first", responses={200: DeliverySerializer})
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        endpoint = self.get_object()
        page = self.paginate_queryset(endpoint.deliveries.select_related("event").order_by("-id"))
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)
