from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from calls.models import Call, Room


class RingQuerySet(models.QuerySet):
    def ringing(self) -> "RingQuerySet":
        return self.filter(state=Ring.State.RINGING)

    def of_user(self, user) -> "RingQuerySet":
        """Rings the user made or received."""
        return self.filter(Q(caller=user) | Q(callee=user))

    def missed_unseen_by(self, user) -> "RingQuerySet":
        return self.filter(callee=user, state=Ring.State.MISSED, seen_at__isnull=True)


class Ring(models.Model):
    """One person calling another: ringing until exactly one outcome is decided (people.services)."""

    class State(models.TextChoices):
        RINGING = "ringing", "Ringing"
        ANSWERED = "answered", "Answered"
        DECLINED = "declined", "Declined"
        BUSY = "busy", "Busy"
        CANCELLED = "cancelled", "Cancelled"
        MISSED = "missed", "Missed"

    # The call log outlives accounts and rooms: a deleted user's name stays in *_name, the links become null.
    caller = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                               related_name="rings_made")
    caller_name = models.CharField(max_length=150)
    callee = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                               related_name="rings_received")
    callee_name = models.CharField(max_length=150)
    room = models.ForeignKey(Room, on_delete=models.SET_NULL, null=True, blank=True, related_name="rings")
    room_name = models.CharField(max_length=100)
    state = models.CharField(max_length=9, choices=State.choices, default=State.RINGING)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    call = models.ForeignKey(Call, on_delete=models.SET_NULL, null=True, blank=True, related_name="rings")
    seen_at = models.DateTimeField(null=True, blank=True, help_text="When the callee saw this missed call.")

    objects = RingQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["caller", "-created_at"], name="people_ring_caller_recent"),
            models.Index(fields=["callee", "-created_at"], name="people_ring_callee_recent"),
            models.Index(fields=["expires_at"], condition=Q(state="ringing"), name="people_ring_ringing_expiry"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["caller"], condition=Q(state="ringing"),
                                    name="people_ring_one_ringing_per_caller"),
            models.CheckConstraint(
                condition=Q(state__in=["ringing", "answered", "declined", "busy", "cancelled", "missed"]),
                name="people_ring_state_valid",
            ),
            models.CheckConstraint(condition=Q(expires_at__gt=F("created_at")), name="people_ring_expires_after_start"),
            models.CheckConstraint(condition=Q(state="ringing") | Q(ended_at__isnull=False),
                                   name="people_ring_decided_has_end"),
            models.CheckConstraint(condition=Q(answered_at__isnull=True) | Q(state="answered"),
                                   name="people_ring_answered_iff_answered"),
        ]

    def __str__(self) -> str:
        return f"{self.caller_name} -> {self.callee_name} ({self.state})"


class MeSocket(models.Model):
    """An open /ws/me/ socket: its user is online while one of them is open on a live server process (a process
    that keeps beating, calls.models.RelayNode)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="me_sockets")
    channel_name = models.CharField(max_length=200, unique=True)
    node = models.CharField(max_length=200, help_text="The relay node (server process) holding the socket.")
    connected_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["connected_at"]
        indexes = [models.Index(fields=["user"], name="people_mesocket_user"),
                   models.Index(fields=["node"], name="people_mesocket_node")]

    def __str__(self) -> str:
        return f"{self.user} on {self.node}"
