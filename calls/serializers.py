"""Request and response shapes of the REST API (calls/api.py)."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.api import UserSerializer
from calls import quality
from calls.models import Call, CallParticipant, CallQuality, Invite, Room, RoomMembership

User = get_user_model()

INVITE_TTL_DEFAULT = 7 * 24 * 3600
INVITE_TTL_MAX = 90 * 24 * 3600
# Roles given through the API: a room has exactly one owner, its creator.
ASSIGNABLE_ROLES = [(RoomMembership.Role.MEMBER.value, "Member"), (RoomMembership.Role.MODERATOR.value, "Moderator")]


@extend_schema_field(OpenApiTypes.URI)
class PageURLField(serializers.ReadOnlyField):
    """The object's page in the browser (`get_absolute_url`), absolute when there is a request."""

    def __init__(self, **kwargs):
        super().__init__(source="get_absolute_url", **kwargs)

    def to_representation(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


@extend_schema_field(OpenApiTypes.DOUBLE)
class SecondsField(serializers.ReadOnlyField):
    """A duration (timedelta) in seconds, to the millisecond."""

    def to_representation(self, duration: timedelta) -> float:
        return round(duration.total_seconds(), 3)


class RoomSerializer(serializers.ModelSerializer):
    """A room as the caller sees it. On update only name, visibility, max_participants, locked and media change."""

    owner = UserSerializer(read_only=True)
    participant_count = serializers.IntegerField(read_only=True, help_text="People in the live call now.")
    role = serializers.ChoiceField(
        choices=RoomMembership.Role.choices, read_only=True, allow_null=True,
        help_text="The caller's role in the room; null when they are not a member (of a public room).",
    )
    url = PageURLField(help_text="The room's page in the browser.")

    class Meta:
        model = Room
        fields = ("slug", "name", "visibility", "max_participants", "locked", "media", "owner", "role",
                  "participant_count", "url", "created_at", "updated_at")
        read_only_fields = ("slug", "owner", "created_at", "updated_at")


class RoomCreateSerializer(RoomSerializer):
    slug = serializers.SlugField(
        max_length=64, required=False, allow_blank=True,
        help_text="The room's address; made from the name when left out. Must be unique (409 otherwise).",
    )

    class Meta(RoomSerializer.Meta):
        read_only_fields = ("owner", "created_at", "updated_at")


class UsernameField(serializers.SlugRelatedField):
    """A user by username, whatever its case ("Ben" finds ben); an exact match wins if two differ only by case."""

    default_error_messages = {
        "does_not_exist": 'Nobody has the username "{value}". Check the spelling, or pick someone from the '
                          "suggestions (GET /api/rooms/<slug>/member-candidates/?q=...).",
        "invalid": "Give a username.",
    }

    def to_internal_value(self, data):
        if not isinstance(data, str) or not data.strip():
            self.fail("invalid")
        value = data.strip()
        matches = list(self.get_queryset().filter(username__iexact=value)[:5])
        exact = [user for user in matches if user.username == value]
        if exact or len(matches) == 1:
            return (exact or matches)[0]
        self.fail("does_not_exist", value=value[:150])


class MembershipSerializer(serializers.ModelSerializer):
    user = UserSerializer(read_only=True)
    username = UsernameField(
        slug_field="username", queryset=User.objects.filter(is_active=True), write_only=True,
        help_text="Who to add: a username, in any case (`Ben` finds `ben`).",
    )
    role = serializers.ChoiceField(
        choices=ASSIGNABLE_ROLES, default=RoomMembership.Role.MEMBER,
        help_text="`member` or `moderator` (only the owner makes moderators). A room has exactly one owner.",
    )

    class Meta:
        model = RoomMembership
        fields = ("user", "username", "role", "created_at")
        read_only_fields = ("created_at",)


class MembershipUpdateSerializer(serializers.ModelSerializer):
    role = serializers.ChoiceField(choices=ASSIGNABLE_ROLES)

    class Meta:
        model = RoomMembership
        fields = ("role",)


class InviteSerializer(serializers.ModelSerializer):
    created_by = UserSerializer(read_only=True)
    url = PageURLField(help_text="The link to send: opening it while logged in asks to join the room.")
    state = serializers.ChoiceField(choices=Invite.State.choices, read_only=True)
    expires_in = serializers.IntegerField(
        write_only=True, required=False, min_value=60, max_value=INVITE_TTL_MAX, default=INVITE_TTL_DEFAULT,
        help_text=f"Seconds until the link expires (default {INVITE_TTL_DEFAULT}, one week).",
    )
    max_uses = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=100000, default=None,
        help_text="How many people may join with it; null for no limit.",
    )

    class Meta:
        model = Invite
        fields = ("id", "token", "url", "state", "expires_in", "expires_at", "max_uses", "use_count", "revoked_at",
                  "created_by", "created_at")
        read_only_fields = ("id", "token", "expires_at", "use_count", "revoked_at", "created_at")

    def create(self, validated_data):
        expires_in = validated_data.pop("expires_in")
        now = timezone.now()
        return Invite.objects.create(created_at=now, expires_at=now + timedelta(seconds=expires_in), **validated_data)


class ParticipantSerializer(serializers.ModelSerializer):
    """One live connection to the room's call, with the media state the peer last announced (null: not yet)."""

    user = UserSerializer(read_only=True)

    class Meta:
        model = CallParticipant
        fields = ("peer_id", "user", "joined_at", "audio", "video", "screen")
        read_only_fields = fields


class CallQualitySerializer(serializers.ModelSerializer):
    """What one participant's `stats` reports said of its connection to one remote peer (docs/operations.md)."""

    peer_id = serializers.UUIDField(source="remote_peer_id", read_only=True, help_text="The remote peer.")
    mos_mean = serializers.FloatField(read_only=True, allow_null=True)
    rtt_mean_ms = serializers.FloatField(read_only=True, allow_null=True)
    jitter_mean_ms = serializers.FloatField(read_only=True, allow_null=True)
    loss_percent = serializers.FloatField(read_only=True, allow_null=True)
    bitrate_in_mean_kbps = serializers.FloatField(read_only=True, allow_null=True)
    bitrate_out_mean_kbps = serializers.FloatField(read_only=True, allow_null=True)
    poor_reasons = serializers.SerializerMethodField(help_text="Which PARLEY_POOR_* thresholds the pair is past.")

    class Meta:
        model = CallQuality
        fields = ("peer_id", "first_at", "last_at", "samples", "candidate_type", "protocol", "connect_ms",
                  "ice_restarts", "ice_failures", "mos_mean", "mos_min", "rtt_mean_ms", "rtt_max_ms",
                  "jitter_mean_ms", "jitter_max_ms", "loss_percent", "packets_received", "packets_lost",
                  "bitrate_in_mean_kbps", "bitrate_out_mean_kbps", "freeze_count", "freeze_seconds", "poor",
                  "poor_reasons")
        read_only_fields = fields

    def get_poor_reasons(self, row) -> list[str]:
        return quality.poor_reasons(row)


class CallParticipantSerializer(serializers.ModelSerializer):
    user = UserSerializer(read_only=True, allow_null=True, help_text="null once the user's account is deleted.")
    name = serializers.CharField(source="name_shown", read_only=True,
                                 help_text="The person's display name; kept when their account is deleted.")
    duration = SecondsField(help_text="Seconds from join to leave (or to now, while live).")
    quality = CallQualitySerializer(many=True, read_only=True,
                                    help_text="Call quality as this participant saw each remote peer (its reports).")

    class Meta:
        model = CallParticipant
        fields = ("peer_id", "user", "name", "joined_at", "left_at", "leave_reason", "duration", "reconnects",
                  "quality")
        read_only_fields = fields


class CallRoomSerializer(serializers.ModelSerializer):
    class Meta:
        model = Room
        fields = ("slug", "name")
        read_only_fields = fields


class CallSerializer(serializers.ModelSerializer):
    room = CallRoomSerializer(read_only=True, allow_null=True, help_text="null once the room is deleted.")
    room_name = serializers.CharField(read_only=True, help_text="The room's name when the call started.")
    is_live = serializers.BooleanField(read_only=True)
    duration = SecondsField(help_text="Seconds from start to end (or to now, while live).")
    participants = CallParticipantSerializer(many=True, read_only=True)

    class Meta:
        model = Call
        fields = ("id", "room", "room_name", "started_at", "ended_at", "is_live", "duration", "participants")
        read_only_fields = fields


class TicketSerializer(serializers.Serializer):
    ticket = serializers.CharField(help_text="Pass as `?ticket=` when opening ws/rooms/<slug>/. Single use.")
    expires_in = serializers.IntegerField(help_text="Seconds the ticket stays valid.")


class IceServerSerializer(serializers.Serializer):
    urls = serializers.JSONField(help_text="A URL or a list of URLs (stun:, turn:, turns:).")
    username = serializers.CharField(required=False, help_text="TURN only: `<unix expiry>:<user id>`.")
    credential = serializers.CharField(required=False, help_text="TURN only: base64(HMAC-SHA1(secret, username)).")


class IceServersSerializer(serializers.Serializer):
    ice_servers = IceServerSerializer(many=True, help_text="Pass as `iceServers` to RTCPeerConnection.")
    ttl = serializers.IntegerField(allow_null=True,
                                   help_text="Seconds the TURN credentials stay valid; null without TURN.")
