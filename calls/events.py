"""Domain events: what happened to rooms and calls, told to whoever listens, inside the change's transaction.

The services send `occurred` synchronously, inside their `transaction.atomic()`, after the change is written: a
receiver that writes to the database (the webhook outbox, `webhooks/outbox.py`) writes in the same transaction,
so its row exists if and only if the change committed. A receiver that raises rolls the change back. `calls`
knows nothing of its receivers (they import it, never the other way round).

The payloads are the `data` of docs/webhooks.md: keep them stable.
"""

from django.db import transaction
from django.dispatch import Signal

# Sent with: type (one of TYPES), room (the Room, or None), room_key (str: events of one key are delivered in
# order), payload (a JSON-ready dict).
occurred = Signal()

ROOM_CREATED = "room.created"
ROOM_UPDATED = "room.updated"
ROOM_DELETED = "room.deleted"
CALL_STARTED = "call.started"
CALL_ENDED = "call.ended"
PARTICIPANT_JOINED = "participant.joined"
PARTICIPANT_LEFT = "participant.left"
RING_ENDED = "ring.ended"  # sent by the rings of people/ (issue 12); documented in docs/webhooks.md
TYPES = (ROOM_CREATED, ROOM_UPDATED, ROOM_DELETED, CALL_STARTED, CALL_ENDED, PARTICIPANT_JOINED,
         PARTICIPANT_LEFT, RING_ENDED)


def emit(type: str, *, room_id: int | None, payload: dict, room=None) -> None:
    """Tell the receivers that `type` happened. Must run inside the transaction of the change it reports."""
    if type not in TYPES:
        raise ValueError(f"unknown event type {type!r}")
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError(f"{type} sent outside a transaction: its outbox row could outlive a rolled-back change")
    occurred.send(sender=None, type=type, room=room, room_key=str(room_id or ""), payload=payload)


def _at(value) -> str | None:
    return value.isoformat() if value is not None else None


def _seconds(delta) -> int:
    return max(int(delta.total_seconds()), 0)


def room_data(room) -> dict:
    return {"id": room.pk, "slug": room.slug, "name": room.name, "visibility": room.visibility,
            "owner": room.owner.username if room.owner_id else None, "max_participants": room.max_participants,
            "locked": room.locked}


def call_ref(call) -> dict:
    return {"id": call.pk, "room_id": call.room_id, "room_name": call.room_name, "started_at": _at(call.started_at)}


def participant_data(participant) -> dict:
    user = participant.user if participant.user_id else None
    data = {"peer_id": str(participant.peer_id), "user": user.username if user else None,
            "name": participant.name_shown, "joined_at": _at(participant.joined_at)}
    if participant.left_at is not None:
        data.update(left_at=_at(participant.left_at), reason=participant.leave_reason,
                    duration_seconds=_seconds(participant.left_at - participant.joined_at))
    return data


def call_ended_data(call) -> dict:
    participants = list(call.participants.select_related("user").order_by("joined_at", "id"))
    return {"call": {**call_ref(call), "ended_at": _at(call.ended_at),
                     "duration_seconds": _seconds(call.ended_at - call.started_at),
                     "participants": [participant_data(p) for p in participants]}}
