import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Count, F, OuterRef, Q, Subquery, Value
from django.urls import reverse
from django.utils import timezone

MIN_PARTICIPANTS = 2
MAX_PARTICIPANTS = 16  # a full mesh: every peer sends its media to every other one


def format_duration(delta: timedelta) -> str:
    """H:MM:SS, the way people read call lengths."""
    seconds = max(int(delta.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


class RoomQuerySet(models.QuerySet):
    def visible_to(self, user) -> "RoomQuerySet":
        """Public rooms and the private rooms the user belongs to."""
        if not user.is_authenticated:
            return self.filter(visibility=Room.Visibility.PUBLIC)
        return self.filter(Q(visibility=Room.Visibility.PUBLIC) | Q(memberships__user=user)).distinct()

    def of_member(self, user) -> "RoomQuerySet":
        return self.filter(memberships__user=user)

    def ordinary(self) -> "RoomQuerySet":
        """Rooms people made, without the direct rooms of two that calling a person creates."""
        return self.filter(kind=Room.Kind.ROOM)

    def with_role_of(self, user) -> "RoomQuerySet":
        """Each room with the user's role in it read in the same query (`role_of(user)` then asks nothing)."""
        if not user.is_authenticated:
            return self
        role = RoomMembership.objects.filter(room=OuterRef("pk"), user=user).values("role")[:1]
        return self.annotate(role_viewer=Value(user.pk), role_of_viewer=Subquery(role))


class Room(models.Model):
    class Visibility(models.TextChoices):
        PUBLIC = "public", "Public"
        PRIVATE = "private", "Private"

    class Kind(models.TextChoices):
        ROOM = "room", "Room"
        DIRECT = "direct", "Direct"  # the private room of two people who call each other (people.services)

    class Media(models.TextChoices):
        """How a call's media flows (docs/sfu.md): peer to peer, through the SFU (Janus), or a mesh while at most
        PARLEY_MESH_MAX people are in the call and the SFU above that."""

        MESH = "mesh", "Mesh (peer to peer)"
        SFU = "sfu", "SFU (through the media server)"
        AUTO = "auto", "Automatic"

    slug = models.SlugField(max_length=64, unique=True, help_text="The room's address: /rooms/<slug>/")
    name = models.CharField(max_length=100)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="owned_rooms")
    visibility = models.CharField(max_length=7, choices=Visibility.choices, default=Visibility.PRIVATE)
    max_participants = models.PositiveSmallIntegerField(
        default=8,
        validators=[MinValueValidator(MIN_PARTICIPANTS), MaxValueValidator(MAX_PARTICIPANTS)],
        help_text=f"Between {MIN_PARTICIPANTS} and {MAX_PARTICIPANTS} people at once."
    )
    locked = models.BooleanField(default=False, help_text="Only the owner and moderators may join.")
    kind = models.CharField(max_length=6, choices=Kind.choices, default=Kind.ROOM, editable=False)
    media = models.CharField(max_length=4, choices=Media.choices, default=Media.AUTO,
                             help_text="Mesh: peer to peer. SFU: through the media server. Automatic: a mesh for "
                                       "small calls, the media server for bigger ones.")
    # A direct room's pair of users, "<lower id>-<higher id>": one direct room per pair. Empty for other rooms.
    pair = models.CharField(max_length=41, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RoomQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_participants__gte=MIN_PARTICIPANTS) & Q(max_participants__lte=MAX_PARTICIPANTS),
                name="calls_room_max_participants_bounds",
            ),
            models.CheckConstraint(
                condition=Q(visibility__in=["public", "private"]), name="calls_room_visibility_valid"
            ),
            models.CheckConstraint(condition=Q(kind__in=["room", "direct"]), name="calls_room_kind_valid"),
            models.CheckConstraint(condition=Q(media__in=["mesh", "sfu", "auto"]), name="calls_room_media_valid"),
            models.CheckConstraint(
                condition=Q(kind="room", pair="") | Q(kind="direct", visibility="private", locked=False) & ~Q(pair=""),
                name="calls_room_direct_private_unlocked",
            ),
            models.UniqueConstraint(fields=["pair"], condition=Q(kind="direct"), name="calls_room_one_direct_per_pair"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("room", kwargs={"slug": self.slug})

    @property
    def is_public(self) -> bool:
        return self.visibility == self.Visibility.PUBLIC

    @property
    def is_direct(self) -> bool:
        return self.kind == self.Kind.DIRECT

    def role_of(self, user) -> str | None:
        """The user's role in this room, or None for a non-member."""
        if not user.is_authenticated:
            return None
        if getattr(self, "role_viewer", None) == user.pk:  # read with the room (RoomQuerySet.with_role_of)
            return self.role_of_viewer
        return self.memberships.filter(user=user).values_list("role", flat=True).first()


class RoomMembership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        MODERATOR = "moderator", "Moderator"
        MEMBER = "member", "Member"

    MODERATING_ROLES = frozenset({Role.OWNER, Role.MODERATOR})  # may change the room and remove people

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="room_memberships")
    role = models.CharField(max_length=9, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["room", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="calls_roommembership_unique_user"),
            models.UniqueConstraint(
                fields=["room"], condition=Q(role="owner"), name="calls_roommembership_one_owner"
            ),
            models.CheckConstraint(
                condition=Q(role__in=["owner", "moderator", "member"]), name="calls_roommembership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.room} ({self.role})"


class CallQuerySet(models.QuerySet):
    def live(self) -> "CallQuerySet":
        return self.filter(ended_at__isnull=True)

    def ended(self) -> "CallQuerySet":
        return self.filter(ended_at__isnull=False)

    def for_user(self, user) -> "CallQuerySet":
        """Calls the user took part in, and every call of the rooms they own."""
        return self.filter(Q(participants__user=user) | Q(room__owner=user)).distinct()

    def with_participant_count(self) -> "CallQuerySet":
        """People in each call: distinct users, plus one per row of a deleted user (its user is null)."""
        return self.annotate(
            participant_count=Count("participants__user", distinct=True)
            + Count("participants", filter=Q(participants__user__isnull=True))
        )


class Call(models.Model):
    """One stretch of time in which a room had people in it."""

    # A deleted room leaves its calls behind: they are the call log.
    room = models.ForeignKey(Room, on_delete=models.SET_NULL, null=True, blank=True, related_name="calls")
    room_name = models.CharField(max_length=100, help_text="The room's name when the call started.")
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)

    objects = CallQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["room", "-started_at"], name="calls_call_room_recent"),
            models.Index(fields=["-started_at"], name="calls_call_recent"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=F("started_at")),
                name="calls_call_ends_after_start",
            ),
            models.UniqueConstraint(
                fields=["room"], condition=Q(ended_at__isnull=True), name="calls_call_one_live_per_room"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.room_name} at {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def is_live(self) -> bool:
        return self.ended_at is None

    @property
    def duration(self) -> timedelta:
        return (self.ended_at or timezone.now()) - self.started_at


class CallParticipantQuerySet(models.QuerySet):
    def live(self) -> "CallParticipantQuerySet":
        return self.filter(left_at__isnull=True)


class CallParticipant(models.Model):
    """One connection of one user to a call, from join to leave."""

    class LeaveReason(models.TextChoices):
        LEFT = "left", "Left"
        DISCONNECTED = "disconnected", "Disconnected"
        KICKED = "kicked", "Kicked"
        TIMED_OUT = "timed-out", "Timed out"
        SERVER_SHUTDOWN = "server-shutdown", "Server shutdown"
        ROOM_CLOSED = "room-closed", "Room deleted"
        ROOM_LOCKED = "room-locked", "Room locked"
        REPLACED = "replaced", "Replaced by another connection"
        SIGNED_OUT = "signed-out", "Signed out"  # logout, password change, deactivation or deletion of the user
        NO_ACCESS = "no-access", "Lost access"  # removed from the room, or it became private

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="participants")
    # A deleted user's rows stay in the call log, anonymised: user null, the name they had kept in display_name.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="call_participations"
    )
    display_name = models.CharField(
        max_length=150, blank=True, help_text="The person's name when their account was deleted (user is then empty)."
    )
    peer_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    joined_at = models.DateTimeField(default=timezone.now)
    left_at = models.DateTimeField(null=True, blank=True)
    leave_reason = models.CharField(max_length=15, choices=LeaveReason.choices, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    # The channel of the server process holding the connection (calls.relay): how other processes reach it.
    relay_node = models.CharField(max_length=200, blank=True, editable=False)
    # Last media state the peer announced (media-state frames); None until it says.
    audio = models.BooleanField(null=True, blank=True)
    video = models.BooleanField(null=True, blank=True)
    screen = models.BooleanField(null=True, blank=True)
    # Refreshed in batches by the serving process; the reaper times out rows that stop being refreshed.
    last_seen_at = models.DateTimeField(default=timezone.now)
    # Resuming (docs/signaling.md): the current resume token, hashed; while the socket is lost and the resume
    # window runs the participation is suspended, and `suspend_reason` is what its leave will say if the window
    # ends; `sent_seq` is the last sequence number its old socket was sent (unknown if its process died).
    resume_token_hash = models.CharField(max_length=64, blank=True, editable=False)
    suspended_at = models.DateTimeField(null=True, blank=True)
    suspend_reason = models.CharField(max_length=15, choices=LeaveReason.choices, blank=True)
    sent_seq = models.PositiveIntegerField(null=True, blank=True, editable=False)
    reconnects = models.PositiveIntegerField(default=0, help_text="How many times the connection was resumed.")

    objects = CallParticipantQuerySet.as_manager()

    class Meta:
        ordering = ["joined_at", "id"]
        indexes = [
            models.Index(fields=["call", "joined_at"], name="calls_participant_call_order"),
            models.Index(fields=["user", "-joined_at"], name="calls_participant_user_recent"),
            models.Index(
                fields=["last_seen_at"], condition=Q(left_at__isnull=True), name="calls_participant_live_seen"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(left_at__isnull=True) | Q(left_at__gte=F("joined_at")),
                name="calls_callparticipant_leaves_after_join",
            ),
            models.CheckConstraint(
                condition=(Q(left_at__isnull=True) & Q(leave_reason=""))
                | (Q(left_at__isnull=False) & ~Q(leave_reason="")),
                name="calls_callparticipant_reason_iff_left",
            ),
            models.CheckConstraint(
                condition=Q(suspended_at__isnull=True) | Q(left_at__isnull=True),
                name="calls_callparticipant_suspended_only_live",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name_shown} in {self.call}"

    @property
    def name_shown(self) -> str:
        if self.user_id is not None:
            return self.user.name_shown
        return self.display_name or "Deleted user"

    @property
    def is_live(self) -> bool:
        return self.left_at is None

    @property
    def duration(self) -> timedelta:
        return (self.left_at or timezone.now()) - self.joined_at


class CallQualityQuerySet(models.QuerySet):
    def poor(self) -> "CallQualityQuerySet":
        return self.filter(poor=True)


class CallQuality(models.Model):
    """The call quality one participant saw of one remote peer: its `stats` reports (docs/signaling.md) folded
    into running sums, worsts and the last cumulative counters by calls.quality, one row per pair, not per report."""

    class CandidateType(models.TextChoices):
        HOST = "host", "Host"
        SRFLX = "srflx", "Server reflexive (STUN)"
        PRFLX = "prflx", "Peer reflexive"
        RELAY = "relay", "Relay (TURN)"

    participant = models.ForeignKey(CallParticipant, on_delete=models.CASCADE, related_name="quality")
    remote_peer_id = models.UUIDField(help_text="The peer the reports are about (the other side's peer_id).")
    first_at = models.DateTimeField(default=timezone.now)
    last_at = models.DateTimeField(default=timezone.now)
    samples = models.PositiveIntegerField(default=0)
    # The last selected candidate pair, and time from joining to `connected` as the browser measured it.
    candidate_type = models.CharField(max_length=5, choices=CandidateType.choices, blank=True)
    protocol = models.CharField(max_length=3, blank=True)
    connect_ms = models.FloatField(null=True, blank=True)
    ice_restarts = models.PositiveIntegerField(default=0)
    ice_failures = models.PositiveIntegerField(default=0)
    # Sums over the samples that had the value (with their count), and the worst sample.
    rtt_samples = models.PositiveIntegerField(default=0)
    rtt_sum_ms = models.FloatField(default=0)
    rtt_max_ms = models.FloatField(null=True, blank=True)
    jitter_samples = models.PositiveIntegerField(default=0)
    jitter_sum_ms = models.FloatField(default=0)
    jitter_max_ms = models.FloatField(null=True, blank=True)
    mos_samples = models.PositiveIntegerField(default=0)
    mos_sum = models.FloatField(default=0)
    mos_min = models.FloatField(null=True, blank=True)
    bitrate_in_samples = models.PositiveIntegerField(default=0)
    bitrate_in_sum_kbps = models.FloatField(default=0)
    bitrate_out_samples = models.PositiveIntegerField(default=0)
    bitrate_out_sum_kbps = models.FloatField(default=0)
    # Totals of packets and freezes, from the differences between consecutive cumulative reports (a counter that
    # went down belongs to a new RTCPeerConnection: it counts from zero), and the last reported counters.
    packets_received = models.PositiveBigIntegerField(default=0)
    packets_lost = models.PositiveBigIntegerField(default=0)
    freeze_count = models.PositiveIntegerField(default=0)
    freeze_seconds = models.FloatField(default=0)
    last_counters = models.JSONField(default=dict, blank=True, editable=False)
    # Derived from the above at every report (calls.quality.is_poor), stored for filtering calls.
    poor = models.BooleanField(default=False)

    objects = CallQualityQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "call quality"
        ordering = ["participant", "first_at"]
        indexes = [models.Index(fields=["participant"], condition=Q(poor=True), name="calls_quality_poor")]
        constraints = [
            models.UniqueConstraint(fields=["participant", "remote_peer_id"], name="calls_callquality_one_per_pair"),
            models.CheckConstraint(condition=Q(last_at__gte=F("first_at")), name="calls_callquality_last_after_first"),
            models.CheckConstraint(
                condition=Q(rtt_samples__lte=F("samples")) & Q(jitter_samples__lte=F("samples"))
                & Q(mos_samples__lte=F("samples")) & Q(bitrate_in_samples__lte=F("samples"))
                & Q(bitrate_out_samples__lte=F("samples")),
                name="calls_callquality_partial_samples",
            ),
            models.CheckConstraint(
                condition=Q(mos_min__isnull=True) | (Q(mos_min__gte=1) & Q(mos_min__lte=4.5)),
                name="calls_callquality_mos_range",
            ),
            models.CheckConstraint(
                condition=Q(candidate_type__in=["", "host", "srflx", "prflx", "relay"]),
                name="calls_callquality_candidate_type",
            ),
            models.CheckConstraint(condition=Q(protocol__in=["", "udp", "tcp", "tls"]),
                                   name="calls_callquality_protocol"),
        ]

    def __str__(self) -> str:
        return f"{self.participant} about {self.remote_peer_id}"

    @staticmethod
    def _mean(total: float, count: int) -> float | None:
        return total / count if count else None

    @property
    def rtt_mean_ms(self) -> float | None:
        return self._mean(self.rtt_sum_ms, self.rtt_samples)

    @property
    def jitter_mean_ms(self) -> float | None:
        return self._mean(self.jitter_sum_ms, self.jitter_samples)

    @property
    def mos_mean(self) -> float | None:
        return self._mean(self.mos_sum, self.mos_samples)

    @property
    def bitrate_in_mean_kbps(self) -> float | None:
        return self._mean(self.bitrate_in_sum_kbps, self.bitrate_in_samples)

    @property
    def bitrate_out_mean_kbps(self) -> float | None:
        return self._mean(self.bitrate_out_sum_kbps, self.bitrate_out_samples)

    @property
    def loss_percent(self) -> float | None:
        total = self.packets_received + self.packets_lost
        return 100 * self.packets_lost / total if total else None


class ReplayFrame(models.Model):
    """A frame kept for a suspended participant, replayed in order when it resumes (then deleted).

    Frames its old socket had been sent carry their `seq`; frames that arrived while it was away get theirs at
    the replay, continuing the sequence.
    """

    participant = models.ForeignKey(CallParticipant, on_delete=models.CASCADE, related_name="replay_frames")
    seq = models.PositiveIntegerField(null=True, blank=True)
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["participant", "id"], name="calls_replayframe_order")]

    def __str__(self) -> str:
        return f"frame {self.seq or '-'} for {self.participant_id}"


class RelayNode(models.Model):
    """A running server process's relay node and its heartbeat: a process that stops beating has died, and its
    participants are suspended so that they can resume elsewhere (calls/liveness.py)."""

    channel = models.CharField(max_length=200, unique=True)
    started_at = models.DateTimeField(default=timezone.now)
    beat_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-beat_at"]
        indexes = [models.Index(fields=["beat_at"], name="calls_relaynode_beat")]

    def __str__(self) -> str:
        return self.channel


def new_invite_token() -> str:
    return secrets.token_urlsafe(24)


class Invite(models.Model):
    """A link (/invite/<token>/) that makes whoever opens it, logged in, a member of the room."""

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"
        USED_UP = "used-up", "Used up"

    token = models.CharField(max_length=64, default=new_invite_token, editable=False)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="invites")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    max_uses = models.PositiveIntegerField(null=True, blank=True, help_text="Empty for no limit.")
    use_count = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["room", "-created_at"], name="calls_invite_room_recent")]
        constraints = [
            models.UniqueConstraint(fields=["token"], name="calls_invite_unique_token"),
            models.CheckConstraint(
                condition=Q(expires_at__gt=F("created_at")), name="calls_invite_expires_after_creation"
            ),
            models.CheckConstraint(
                condition=Q(max_uses__isnull=True) | Q(max_uses__gte=1), name="calls_invite_max_uses_positive"
            ),
            models.CheckConstraint(
                condition=Q(max_uses__isnull=True) | Q(use_count__lte=F("max_uses")),
                name="calls_invite_uses_within_limit",
            ),
        ]

    def __str__(self) -> str:
        return f"Invite to {self.room} ({self.state})"

    def get_absolute_url(self) -> str:
        return reverse("invite", kwargs={"token": self.token})

    def state_at(self, now) -> str:
        if self.revoked_at is not None:
            return self.State.REVOKED
        if self.expires_at <= now:
            return self.State.EXPIRED
        if self.max_uses is not None and self.use_count >= self.max_uses:
            return self.State.USED_UP
        return self.State.ACTIVE

    @property
    def state(self) -> str:
        return self.state_at(timezone.now())
