"""The outbox: every domain event (calls.events.occurred) is written here, in the transaction of its change, with
one pending delivery for each enabled endpoint that wants it. The worker (webhooks/delivery.py) sends them.

Order: the worker sends an endpoint's deliveries of one room key in id order. The services write a room's events
while they hold its row locked (joins and leaves lock it, a change or deletion updates it), so one room's events
get their ids in the order their transactions commit. A sender of `occurred` that does not lock the room (rings,
say) gets the order of its inserts."""

import logging
import time
import uuid

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from calls import events
from calls.shared_cache import shared_cache
from webhooks.models import Delivery, Endpoint, OutboxEvent

logger = logging.getLogger(__name__)


def endpoints_for(*, type: str, room_key: str):
    """The enabled endpoints that want events of `type` in the room `room_key` (global ones want every room)."""
    room_id = int(room_key) if room_key else None
    return [e for e in enabled_endpoints.now() if e.wants(type) and (
        e.scope == Endpoint.Scope.GLOBAL or (room_id is not None and e.room_id == room_id))]


class EnabledEndpoints:
    """The enabled endpoints, kept by each process: every join and leave writes events, and endpoints rarely
    change. A change anywhere (the API, the admin, the worker disabling one) puts a new token in the shared cache
    once committed; a process whose copy was read under another token, or is older than MAX_AGE, reads them again.
    Without Redis the cache is per process, so every event reads them."""

    KEY = "webhooks:endpoints-token"
    MAX_AGE = 30.0  # seconds: bounds a stale copy when a token could not be written (Redis down)

    def __init__(self):
        self.kept: tuple[object, float, list[Endpoint]] | None = None  # (token, read at, endpoints)

    def now(self) -> list[Endpoint]:
        if not settings.REDIS_URL:
            return self.read()
        try:
            token = shared_cache().get(self.KEY)
        except Exception:  # Redis is down: the database answers
            logger.warning("webhooks: the endpoints token could not be read", exc_info=True)
            return self.read()
        kept = self.kept
        if kept is not None and kept[0] == token and time.monotonic() - kept[1] < self.MAX_AGE:
            return kept[2]
        endpoints = self.read()
        self.kept = (token, time.monotonic(), endpoints)
        return endpoints

    def read(self) -> list[Endpoint]:
        return list(Endpoint.objects.filter(enabled=True))

    def changed(self) -> None:
        """An endpoint changed: every process reads them again (once the change is committed; this one at once, as
        its own transaction sees the change)."""
        self.kept = None

        def renew():
            self.kept = None
            try:
                shared_cache().set(self.KEY, uuid.uuid4().hex, timeout=None)
            except Exception:
                logger.warning("webhooks: the endpoints token could not be written", exc_info=True)
        transaction.on_commit(renew)


enabled_endpoints = EnabledEndpoints()


@receiver([post_save, post_delete], sender=Endpoint, dispatch_uid="webhooks-endpoint-changed")
def endpoint_changed(**_) -> None:
    enabled_endpoints.changed()


def write_event(*, type: str, room_key: str, payload: dict) -> OutboxEvent:
    """Write an event and its deliveries. Call inside the transaction of the change it reports."""
    event = OutboxEvent.objects.create(type=type, room_key=room_key, payload=payload)
    Delivery.objects.bulk_create(
        Delivery(event=event, endpoint=endpoint, room_key=room_key, next_attempt_at=event.created_at)
        for endpoint in endpoints_for(type=type, room_key=room_key)
    )
    return event


@receiver(events.occurred, dispatch_uid="webhooks-outbox")
def event_occurred(sender, *, type: str, room_key: str, payload: dict, **kwargs) -> None:
    write_event(type=type, room_key=room_key, payload=payload)
