"""People: contacts, presence, and rings (one person calling another). Views, the API and the /ws/me/ consumer call
these; every write is made here, then told to the users' /ws/me/ sockets (channel-layer group `user.<id>`) once it
is committed.

A ring's outcome is decided exactly once: every decision is a conditional UPDATE of a row still `ringing` (PostgreSQL
re-checks the condition after a concurrent writer commits), so of an accept and a cancel that race, one wins and the
other is told the ring's state (409).
"""

import logging
import threading
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts import audit
from calls import events, metrics, protocol
from calls import services as calls_services
from calls.models import Room, RoomMembership
from people.delivery import send_to_users
from people.models import Ring
from people.presence import forget_dead_sockets, is_contact

logger = logging.getLogger(__name__)

User = get_user_model()
State = Ring.State

DECIDED_FRAMES = {
    State.ANSWERED: "ring-answered",
    State.DECLINED: "ring-declined",
    State.BUSY: "ring-declined",
    State.CANCELLED: "ring-ended",
    State.MISSED: "ring-ended",
}


def ring_seconds() -> int:
    return settings.PARLEY_RING_SECONDS


# --- Objects on the wire ----------------------------------------------------------------------------


def person_object(user, name: str = "") -> dict:
    """A user as frames and the API show them; a deleted user keeps only the name they had."""
    if user is None:
        return {"id": None, "username": "", "display_name": name or "Deleted user"}
    return protocol.user_object(user)


def moment(value) -> str | None:
    return value.isoformat() if value is not None else None


def ring_object(ring: Ring) -> dict:
    room = {"slug": ring.room.slug, "name": ring.room.name} if ring.room_id else None
    return {
        "id": ring.pk,
        "caller": person_object(ring.caller, ring.caller_name),
        "callee": person_object(ring.callee, ring.callee_name),
        "room": room,
        "state": ring.state,
        "created_at": moment(ring.created_at),
        "expires_at": moment(ring.expires_at),
        "answered_at": moment(ring.answered_at),
        "ended_at": moment(ring.ended_at),
        "call_id": ring.call_id,
    }


def rings_with_people():
    return Ring.objects.select_related("caller", "callee", "room")


# --- Rings ------------------------------------------------------------------------------------------


class RingRefused(Exception):
    """A ring request that cannot be granted; `code` says which (the API maps it to a status)."""

    NOT_FOUND = "not-found"  # 404: no such person, ring or room, or one the caller may not see
    NOT_ALLOWED = "not-allowed"  # 403
    INVALID = "invalid"  # 400
    CONFLICT = "conflict"  # 409

    def __init__(self, code: str, detail: str, *, ring: Ring | None = None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.ring = ring


def direct_room_for(a, b) -> Room:
    """The private room of the two people (made on first use, one per pair), with both as members."""
    low, high = sorted([a.pk, b.pk])
    pair = f"{low}-{high}"
    room = Room.objects.filter(kind=Room.Kind.DIRECT, pair=pair).first()
    if room is None:
        try:
            with transaction.atomic():
                room = calls_services.create_room(
                    owner=a, name=f"{a.name_shown} & {b.name_shown}"[:100],
                    slug=calls_services.unique_slug_for(f"direct-{low}-{high}"), visibility=Room.Visibility.PRIVATE,
                    kind=Room.Kind.DIRECT, pair=pair, max_participants=2)
        except IntegrityError:  # the other one's first ring made it meanwhile
            room = Room.objects.get(kind=Room.Kind.DIRECT, pair=pair)
    for person in (a, b):  # someone who left their direct room is back in it when called
        RoomMembership.objects.get_or_create(room=room, user=person, defaults={"role": RoomMembership.Role.MEMBER})
    return room


def ring_room(*, caller, callee, room_slug: str) -> Room:
    """The room a ring with `room` leads to: one the caller may join, and the callee belongs to (or, for a public
    room, one of the caller's contacts)."""
    room = Room.objects.filter(slug=room_slug).first()
    if room is None or (not room.is_public and room.role_of(caller) is None):
        raise RingRefused(RingRefused.NOT_FOUND, "No such room.")
    try:
        calls_services.check_may_join(room=room, user=caller)
    except calls_services.JoinRefused as refusal:
        raise RingRefused(RingRefused.NOT_ALLOWED, str(refusal)) from None
    if room.role_of(callee) is None and not (room.is_public and is_contact(caller, callee)):
        raise RingRefused(RingRefused.NOT_FOUND, "No such person.")
    return room


def start_ring(*, caller, callee_username: str, room_slug: str = "", address: str | None = None) -> Ring:
    """Ring a person: a contact, or a member of the given room. The callee's sockets get `ring`."""
    callee = User.objects.filter(username=callee_username, is_active=True).first()
    if callee is not None and callee.pk == caller.pk:
        raise RingRefused(RingRefused.INVALID, "You cannot call yourself.")
    if callee is None or (not room_slug and not is_contact(caller, callee)):
        raise RingRefused(RingRefused.NOT_FOUND, "No such person.")  # a stranger learns nothing of who exists
    room = ring_room(caller=caller, callee=callee, room_slug=room_slug) if room_slug else None
    expire_rings(caller=caller)  # one that ran out but was not swept yet does not count
    current = Ring.objects.ringing().filter(caller=caller).first()
    if current is not None:
        raise conflict_with(current, callee)
    now = timezone.now()
    try:
        with transaction.atomic():
            room = room or direct_room_for(caller, callee)
            ring = Ring.objects.create(caller=caller, caller_name=caller.name_shown, callee=callee,
                                       callee_name=callee.name_shown, room=room, room_name=room.name,
                                       created_at=now, expires_at=now + timedelta(seconds=ring_seconds()))
            ring = rings_with_people().get(pk=ring.pk)
            audit.record(audit.Action.RING_STARTED, actor=caller, target=f"room:{room.slug}", address=address,
                         ring=ring.pk, callee=callee.username, direct=room.is_direct)
            send_to_users([callee.pk], {"type": "ring", "ring": ring_object(ring)})
            transaction.on_commit(lambda: expire_later(ring.pk, ring_seconds()))
    except IntegrityError:  # a second ring of the same caller, at the same moment
        current = Ring.objects.ringing().filter(caller=caller).first()
        raise conflict_with(current, callee) from None
    logger.info("ring %s: %s calls %s in %s", ring.pk, caller, callee, room.slug)
    return ring


def conflict_with(current: Ring | None, callee) -> RingRefused:
    if current is not None and current.callee_id == callee.pk:
        return RingRefused(RingRefused.CONFLICT, f"You are calling {callee.name_shown} already.", ring=current)
    return RingRefused(RingRefused.CONFLICT, "You are calling someone else already: hang up first.", ring=current)


def ring_of(*, by, ring_id) -> Ring:
    """The ring, if `by` made or received it; else RingRefused (404)."""
    ring = rings_with_people().of_user(by).filter(pk=ring_id).first()
    if ring is None:
        raise RingRefused(RingRefused.NOT_FOUND, "No such ring.")
    return ring


def decide(*, by, ring_id, party: str, state: str, address: str | None = None) -> Ring:
    """Record the ring's outcome if it is still ringing and `by` is the `party` ("caller" or "callee") that may
    decide it; tell both people. Exactly one decision wins."""
    ring = ring_of(by=by, ring_id=ring_id)
    if getattr(ring, f"{party}_id") != by.pk:
        who = "the person called" if party == "callee" else "the caller"
        raise RingRefused(RingRefused.NOT_ALLOWED, f"Only {who} may do this.")
    now = timezone.now()
    changes = {"state": state, "ended_at": now}
    if state == State.ANSWERED:
        changes["answered_at"] = now
    with transaction.atomic():
        decided = Ring.objects.filter(pk=ring.pk, state=State.RINGING, expires_at__gt=now).update(**changes)
        ring = rings_with_people().get(pk=ring.pk)
        if decided:
            emit_ring_ended(ring, by=by, address=address)
            send_to_users([ring.caller_id, ring.callee_id], {"type": DECIDED_FRAMES[state], "ring": ring_object(ring)})
    if not decided:
        expire_rings(ids=[ring.pk])  # it ran out before the sweep saw it
        ring.refresh_from_db()
        raise RingRefused(RingRefused.CONFLICT, f"The ring is {ring.state} already.", ring=ring)
    forget_timer(ring.pk)
    logger.info("ring %s: %s by %s", ring.pk, state, by)
    return ring


def emit_ring_ended(ring: Ring, *, by=None, address: str | None = None) -> None:
    """The `ring.ended` event (docs/webhooks.md) and audit event, in the transaction that decides the ring. `by`
    decided it (None: it ran out)."""
    metrics.RINGS.labels(ring.state).inc()
    audit.record(audit.Action.RING_ENDED, actor=by, target=f"room:{ring.room.slug}" if ring.room_id else "",
                 address=address, ring=ring.pk, outcome=ring.state, caller=ring.caller_name, callee=ring.callee_name,
                 seconds=max(int((ring.ended_at - ring.created_at).total_seconds()), 0) if ring.ended_at else 0)
    events.emit(events.RING_ENDED, room_id=ring.room_id, payload={"ring": {
        "id": ring.pk, "room_id": ring.room_id, "caller": ring.caller_name, "callee": ring.callee_name,
        "outcome": ring.state, "started_at": ring.created_at.isoformat(),
        "ended_at": ring.ended_at.isoformat() if ring.ended_at else None,
        "duration_seconds": max(int((ring.ended_at - ring.created_at).total_seconds()), 0) if ring.ended_at else 0,
    }})


def accept_ring(*, by, ring_id, address: str | None = None) -> Ring:
    return decide(by=by, ring_id=ring_id, party="callee", state=State.ANSWERED, address=address)


def decline_ring(*, by, ring_id, busy: bool = False, address: str | None = None) -> Ring:
    return decide(by=by, ring_id=ring_id, party="callee", state=State.BUSY if busy else State.DECLINED,
                  address=address)


def cancel_ring(*, by, ring_id, address: str | None = None) -> Ring:
    return decide(by=by, ring_id=ring_id, party="caller", state=State.CANCELLED, address=address)


def expire_rings(*, now=None, ids=None, caller=None) -> int:
    """Rings nobody answered in time become `missed` (each once, whichever process sweeps first); both people are
    told `ring-ended`. Returns how many."""
    now = now or timezone.now()
    due = Ring.objects.ringing().filter(expires_at__lte=now)
    if ids is not None:
        due = due.filter(pk__in=ids)
    if caller is not None:
        due = due.filter(caller=caller)
    expired = 0
    for ring_id in list(due.values_list("pk", flat=True)):
        with transaction.atomic():
            if Ring.objects.filter(pk=ring_id, state=State.RINGING).update(state=State.MISSED,
                                                                           ended_at=F("expires_at")):
                ring = rings_with_people().get(pk=ring_id)
                emit_ring_ended(ring)
                send_to_users([ring.caller_id, ring.callee_id], {"type": "ring-ended", "ring": ring_object(ring)})
                expired += 1
    return expired


_timers: dict[int, threading.Timer] = {}  # ring id -> this process's expiry timer, while it runs


def expire_later(ring_id: int, seconds: float) -> None:
    """The timer of the process that made the ring (the sweep catches what a process that died left)."""
    def run():
        _timers.pop(ring_id, None)
        try:
            expire_rings(ids=[ring_id])
        except Exception:
            logger.exception("ring %s: expiry failed (the sweep will retry)", ring_id)
        finally:
            connection.close()

    timer = _timers[ring_id] = threading.Timer(seconds + 0.05, run)
    timer.daemon = True
    timer.start()


def forget_timer(ring_id: int) -> None:
    """A ring decided before it ran out needs no timer."""
    timer = _timers.pop(ring_id, None)
    if timer is not None:
        timer.cancel()


def sweep(*, now=None) -> None:
    """What any process runs every few seconds: expire rings, forget the sockets of dead processes."""
    close_old_connections()
    expire_rings(now=now)
    forget_dead_sockets()


def ringing_for(user) -> list[dict]:
    """The rings still ringing that the user made or receives, as a new socket's `welcome` lists them."""
    return [ring_object(ring) for ring in rings_with_people().ringing().of_user(user).filter(
        expires_at__gt=timezone.now())]


def rings_for(*, user, outcome: str = "", with_username: str = ""):
    rings = rings_with_people().of_user(user)
    if outcome:
        rings = rings.filter(state=outcome)
    if with_username:
        rings = rings.filter(Q(caller__username=with_username) | Q(callee__username=with_username))
    return rings


# --- Call history: rings on the My calls page -------------------------------------------------------


def describe_ring(ring: Ring, user) -> str:
    if ring.callee_id == user.pk:
        other = ring.caller_name if ring.caller_id is None else ring.caller.name_shown
        return {State.RINGING: f"{other} is calling", State.ANSWERED: f"Call from {other}",
                State.DECLINED: f"You declined a call from {other}", State.BUSY: f"Call from {other} while busy",
                State.CANCELLED: f"Missed call from {other} (hung up)",
                State.MISSED: f"Missed call from {other}"}[ring.state]
    other = ring.callee_name if ring.callee_id is None else ring.callee.name_shown
    return {State.RINGING: f"Calling {other}", State.ANSWERED: f"Call to {other}",
            State.DECLINED: f"{other} declined", State.BUSY: f"{other} was busy",
            State.CANCELLED: f"Call to {other}, cancelled", State.MISSED: f"Call to {other}, no answer"}[ring.state]


def history_for(user, *, since=None, until=None, person=None, room: str = "", limit: int = 200) -> list[dict]:
    """The user's rings as entries of the My calls timeline (`at`, `template`, `ring`, `text`, `incoming`), within
    [since, until), with `person` (the other party) and in `room` when given."""
    rings = rings_with_people().of_user(user)
    if since is not None:
        rings = rings.filter(created_at__gte=since)
    if until is not None:
        rings = rings.filter(created_at__lt=until)
    if person is not None:
        rings = rings.filter(Q(caller=person) | Q(callee=person))
    if room:
        rings = rings.filter(room__slug=room)
    return [{"kind": "ring", "at": ring.created_at, "template": "people/history_ring.html", "ring": ring,
             "text": describe_ring(ring, user), "incoming": ring.callee_id == user.pk}
            for ring in rings[:limit]]


def unseen_missed_count(user) -> int:
    return Ring.objects.missed_unseen_by(user).count()


def mark_missed_seen(user) -> int:
    return Ring.objects.missed_unseen_by(user).update(seen_at=timezone.now())
