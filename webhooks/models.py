"""Webhook endpoints, the outbox of events, and one delivery per event and endpoint (docs/webhooks.md)."""

import base64
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from calls import events
from calls.models import Room

EVENT_TYPE_CHOICES = [(name, name) for name in events.TYPES]


def new_secret() -> str:
    """`whsec_` and 24 random bytes in base64, as Standard Webhooks writes secrets."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


class Endpoint(models.Model):
    """A URL that receives the events of one room (its owner registers it) or of every room (staff)."""

    class Scope(models.TextChoices):
        ROOM = "room", "One room"
        GLOBAL = "global", "Every room"

    class DisabledReason(models.TextChoices):
        NONE = "", "-"
        BY_OWNER = "by-owner", "Disabled by its owner"
        GONE = "gone", "The endpoint answered 410 Gone"
        FAILING = "failing", "Failing for too long"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints")
    scope = models.CharField(max_length=6, choices=Scope.choices, default=Scope.ROOM)
    # A deleted room's endpoint is kept (room null, scope "room"): it matches no new event, and still receives
    # what was queued for it, `room.deleted` included. Its owner deletes it.
    room = models.ForeignKey(Room, on_delete=models.SET_NULL, null=True, blank=True, related_name="webhook_endpoints")
    url = models.URLField(max_length=500)
    event_types = models.JSONField(default=list, help_text="The event types sent to it (docs/webhooks.md).")
    secret = models.CharField(max_length=64, default=new_secret, editable=False)
    description = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=8, choices=DisabledReason.choices, blank=True, default="")
    failing_since = models.DateTimeField(null=True, blank=True, help_text="First failure since the last success.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["room"], condition=Q(enabled=True), name="webhooks_endpoint_room_on")]
        constraints = [
            models.CheckConstraint(condition=Q(scope="global", room__isnull=True) | Q(scope="room"),
                                   name="webhooks_endpoint_global_has_no_room"),
            models.CheckConstraint(condition=Q(scope__in=["room", "global"]), name="webhooks_endpoint_scope_valid"),
            models.CheckConstraint(condition=Q(enabled=True, disabled_reason="") | Q(enabled=False),
                                   name="webhooks_endpoint_reason_only_disabled"),
        ]

    def __str__(self) -> str:
        return f"{self.url} ({self.room or self.get_scope_display()})"

    def wants(self, event_type: str) -> bool:
        return event_type in self.event_types


class OutboxEvent(models.Model):
    """One event, written in the transaction of the change it reports (webhooks/outbox.py)."""

    event_id = models.CharField(max_length=40, default=new_event_id, editable=False)
    type = models.CharField(max_length=40, choices=EVENT_TYPE_CHOICES)
    room_key = models.CharField(max_length=40, blank=True, help_text="Events of one key are delivered in order.")
    payload = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["created_at"], name="webhooks_outboxevent_created")]
        constraints = [models.UniqueConstraint(fields=["event_id"], name="webhooks_outboxevent_unique_id")]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"

    def body(self) -> dict:
        """What is POSTed (docs/webhooks.md): the same bytes on every attempt."""
        return {"id": self.event_id, "type": self.type, "timestamp": self.created_at.isoformat(),
                "data": self.payload}


class Delivery(models.Model):
    """An event on its way to one endpoint: attempted until a 2xx, or given up after the retry schedule."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"  # given up: the schedule ran out, the endpoint answered 410 or was removed

    event = models.ForeignKey(OutboxEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    room_key = models.CharField(max_length=40, blank=True, editable=False)  # the event's, for the order query
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["next_attempt_at", "id"], condition=Q(status="pending"), name="webhooks_delivery_due"),
            models.Index(fields=["endpoint", "room_key", "id"], condition=Q(status="pending"),
                         name="webhooks_delivery_queue"),
            models.Index(fields=["endpoint", "-id"], name="webhooks_delivery_recent"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="webhooks_delivery_once_per_endpoint"),
            models.CheckConstraint(condition=Q(status__in=["pending", "delivered", "failed"]),
                                   name="webhooks_delivery_status_valid"),
            models.CheckConstraint(condition=Q(status="delivered", delivered_at__isnull=False)
                                   | (~Q(status="delivered") & Q(delivered_at__isnull=True)),
                                   name="webhooks_delivery_delivered_iff_time"),
            models.CheckConstraint(condition=Q(last_attempt_at__isnull=True) | Q(attempts__gte=1),
                                   name="webhooks_delivery_attempt_counted"),
        ]

    def __str__(self) -> str:
        return f"{self.event} to {self.endpoint_id} ({self.status})"
