"""The outbox: every domain event (calls.events.occurred) is written here, in the transaction of its change, with
one pending delivery for each enabled endpoint that wants it. The worker (webhooks/delivery.py) sends them.

Order: the worker sends an endpoint's deliveries of one room key in id order. The services write a room's events
while they hold its row locked (joins and leaves lock it, a change or deletion updates it), so one room's events
get their ids in the order their transactions commit. A sender of `occurred` that does not lock the room (rings,
say) gets the order of its inserts."""

from django.db.models import Q
from django.dispatch import receiver

from calls import events
from webhooks.models import Delivery, Endpoint, OutboxEvent


def endpoints_for(*, type: str, room_key: str):
    """The enabled endpoints that want events of `type` in the room `room_key` (global ones want every room)."""
    scope = Q(scope=Endpoint.Scope.GLOBAL)
    if room_key:
        scope |= Q(scope=Endpoint.Scope.ROOM, room_id=int(room_key))
    return [e for e in Endpoint.objects.filter(scope, enabled=True) if e.wants(type)]


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
