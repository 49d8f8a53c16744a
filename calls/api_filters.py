"""Query parameters of the REST API's list endpoints, validated like any other input."""

from rest_framework import serializers

from calls.models import Room


class RoomFilterSerializer(serializers.Serializer):
    visibility = serializers.ChoiceField(choices=Room.Visibility.choices, required=False,
                                         help_text="Only public or only private rooms.")
    mine = serializers.BooleanField(required=False, default=False,
                                    help_text="Only the rooms the caller belongs to (with any role).")

    def filter(self, rooms, *, user):
        self.is_valid(raise_exception=True)
        if self.validated_data.get("visibility"):
            rooms = rooms.filter(visibility=self.validated_data["visibility"])
        if self.validated_data["mine"]:
            rooms = rooms.filter(memberships__user=user)
        return rooms


class CallFilterSerializer(serializers.Serializer):
    room = serializers.SlugField(required=False, help_text="Only calls of the room with this slug.")
    started_after = serializers.DateTimeField(required=False, help_text="Only calls started at or after this.")
    started_before = serializers.DateTimeField(required=False, help_text="Only calls started before this.")

    def filter(self, calls):
        self.is_valid(raise_exception=True)
        query = self.validated_data
        if "room" in query:
            calls = calls.filter(room__slug=query["room"])
        if "started_after" in query:
            calls = calls.filter(started_at__gte=query["started_after"])
        if "started_before" in query:
            calls = calls.filter(started_at__lt=query["started_before"])
        return calls
