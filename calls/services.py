"""Writes that span models. Views, API and consumers call these; they never write across models themselves."""

import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.text import slugify

from accounts import audit, quotas
from calls import announcements, events, protocol, relay
from calls.models import Call, CallParticipant, Invite, ReplayFrame, Room, RoomMembership
from calls.protocol import CloseCode

logger = logging.getLogger(__name__)

Reason = CallParticipant.LeaveReason
Role = RoomMembership.Role


def unique_slug_for(name: str) -> str:
    base = slugify(name)[:56] or "room"
    slug, n = base, 2
    while Room.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def create_room(*, owner, name: str, slug: str = "", address: str | None = None, **fields) -> Room:
    """Create a room and make its creator the owner member. Refused (`quota-exceeded`) over the owner's quota.
    `address` is the client's, for the audit trail."""
    try:
        return _create_room(owner=owner, name=name, slug=slug, address=address, **fields)
    except quotas.QuotaExceeded as exceeded:
        audit.record("quota.refused", actor=owner, target=f"room:{slug or name}", address=address,
                     quota=exceeded.quota, limit=exceeded.limit, used=exceeded.used)
        raise Refused(Refused.QUOTA_EXCEEDED, str(exceeded), quota=exceeded) from None


@transaction.atomic
def _create_room(*, owner, name: str, slug: str, address: str | None, **fields) -> Room:
    get_user_model().objects.select_for_update().filter(pk=owner.pk).first()  # one quota check at a time per owner
    quotas.check(user=owner, quota="rooms")
    room = Room.objects.create(owner=owner, name=name, slug=slug or unique_slug_for(name), **fields)
    RoomMembership.objects.create(room=room, user=owner, role=RoomMembership.Role.OWNER)
    audit.record(audit.Action.ROOM_CREATED, actor=owner, target=room_target(room), address=address, name=room.name,
                 visibility=room.visibility, kind=room.kind, max_participants=room.max_participants,
                 locked=room.locked)
    events.emit(events.ROOM_CREATED, room_id=room.pk, room=room, payload={"room": events.room_data(room)})
    return room


def json_ready(value):
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def room_target(room: Room) -> str:
    """How audit events name a room (GET /api/rooms/<slug>/audit/ lists those of its slug)."""
    return f"room:{room.slug}"


# --- Joining and leaving calls -------------------------------------------------------------------


class JoinRefused(Exception):
    def __init__(self, close_code: int, detail: str):
        super().__init__(detail)
        # A plain int: daphne's WebSocket library (autobahn) refuses an IntEnum as a close code and closes with 1011.
        self.close_code = int(close_code)


@dataclass(frozen=True)
class Joined:
    participant: CallParticipant
    others: list[CallParticipant]  # the others in the call, in join order
    resume_token: str  # shown once: only its hash is stored
    replay: str | None = None  # on a resume: "complete" or "partial"
    frames: list[tuple[int | None, str]] = field(default_factory=list)  # on a resume: (seq or None, text)


def new_resume_token() -> tuple[str, str]:
    """A fresh resume token (192 random bits) and the hash that is stored."""
    token = secrets.token_urlsafe(24)
    return token, hash_resume_token(token)


def hash_resume_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def peer_objects(*, me: CallParticipant, others: list[CallParticipant]) -> list[dict]:
    """The others as `welcome` lists them: I play polite toward everyone who joined before me."""
    mine = (me.joined_at, me.pk)
    return [protocol.peer_object(p, polite=(p.joined_at, p.pk) < mine) for p in others]


def check_may_join(*, room: Room, user) -> None:
    """Raise JoinRefused unless the user may enter the room's call."""
    role = room.role_of(user)
    if not room.is_public and role is None:
        raise JoinRefused(CloseCode.NOT_FOUND, "No such room.")  # a private room does not exist for outsiders
    if room.locked and role not in RoomMembership.MODERATING_ROLES:
        raise JoinRefused(CloseCode.FORBIDDEN, "The room is locked.")


def kick_ban_until(*, call: Call | None, user, now: datetime | None = None) -> datetime | None:
    """When the user may join `call` again after being removed from it (None: they may now).

    Decided from the call log: a participation of theirs in this call that ended `kicked` less than
    PARLEY_KICK_BAN_SECONDS ago. A new call of the room (everyone left) starts with a clean slate.
    """
    if call is None or not getattr(user, "is_authenticated", False):
        return None
    kicks = kicked_recently(user=user, now=now)
    if kicks is None:
        return None
    return ban_ends(CallParticipant.objects.filter(kicks, call=call).order_by("-left_at")
                    .values_list("left_at", flat=True).first())


def ban_ends(kicked_at: datetime | None) -> datetime | None:
    """When a kick at `kicked_at` stops keeping its user out (None: no kick)."""
    return None if kicked_at is None else kicked_at + timedelta(seconds=settings.PARLEY_KICK_BAN_SECONDS)


def kicked_recently(*, user, now: datetime | None = None) -> Q | None:
    """The user's participations that ended `kicked` within the ban (None: there is no ban)."""
    seconds = settings.PARLEY_KICK_BAN_SECONDS
    if seconds <= 0:
        return None
    return Q(user=user, leave_reason=Reason.KICKED, left_at__gt=(now or timezone.now()) - timedelta(seconds=seconds))


def kick_ban_message(until: datetime, now: datetime | None = None) -> str:
    left = max(int((until - (now or timezone.now())).total_seconds()), 1)
    wait = f"{-(-left // 60)} min" if left >= 60 else f"{left} s"
    return f"You were removed from this call. You can join it again in {wait}."


def join_call(*, room_slug: str, user, peer_id: str, relay_node: str, user_agent: str = "") -> Joined:
    """Start the room's live call if there is none, then add the participant.

    The room row is locked for the transaction, so concurrent joins of one room are serialised: exactly one of
    several first joiners starts the call, the size limit holds, and of any two peers exactly one sees the other
    in its `welcome` (the later one), which is what the `polite` flags rely on.
    """
    try:
        try:
            return _join_call(room_slug=room_slug, user=user, peer_id=peer_id, relay_node=relay_node,
                              user_agent=user_agent)
        except JoinRefused as refusal:
            # A full room may be full of peers whose server died: time them out, then try once more.
            if refusal.close_code != CloseCode.ROOM_FULL or not reap_stale_participants(room_slug=room_slug):
                raise
        return _join_call(room_slug=room_slug, user=user, peer_id=peer_id, relay_node=relay_node,
                          user_agent=user_agent)
    except quotas.QuotaExceeded as exceeded:
        audit.record("quota.refused", actor=user, target=f"room:{room_slug}", quota=exceeded.quota,
                     limit=exceeded.limit, used=exceeded.used)
        raise JoinRefused(CloseCode.QUOTA_EXCEEDED, str(exceeded)) from None


@transaction.atomic
def _join_call(*, room_slug: str, user, peer_id: str, relay_node: str, user_agent: str) -> Joined:
    room = Room.objects.select_for_update().with_role_of(user).filter(slug=room_slug).first()
    if room is None:
        raise JoinRefused(CloseCode.NOT_FOUND, "No such room.")
    check_may_join(room=room, user=user)
    quotas.check_all(user=user, quotas=("concurrent_calls", "call_minutes"), room=room)
    call = Call.objects.filter(room=room).live().first()
    if call is None:
        call = Call.objects.create(room=room, room_name=room.name, started_by=user)
        others = []
        events.emit(events.CALL_STARTED, room_id=room.pk, room=room, payload={
            "call": {**events.call_ref(call), "started_by": user.username}})
    else:
        # The others, and the user's kicks within the ban, in one query.
        wanted = Q(left_at__isnull=True) | (kicked_recently(user=user) or Q())
        rows = list(call.participants.filter(wanted).select_related("user").order_by("joined_at", "id"))
        others = [p for p in rows if p.left_at is None]
        banned_until = ban_ends(max((p.left_at for p in rows if p.left_at is not None), default=None))
        if banned_until is not None:
            raise JoinRefused(CloseCode.FORBIDDEN, kick_ban_message(banned_until))
    replaced = peers_to_replace(others=others, user=user)
    others = [p for p in others if p not in replaced]
    if len(others) >= room.max_participants:
        raise JoinRefused(CloseCode.ROOM_FULL, f"The room is full ({room.max_participants} people).")
    token, token_hash = new_resume_token()
    participant = CallParticipant.objects.create(
        call=call, user=user, peer_id=peer_id, relay_node=relay_node, user_agent=user_agent[:300],
        resume_token_hash=token_hash,
    )
    for old in replaced:  # after the newcomer's row exists, so the call is never empty meanwhile
        replace_peer(participant=old)
    call.room = room
    announce_call_changed(room_id=room.pk, call_id=call.pk, user_id=user.pk, joined=True)
    events.emit(events.PARTICIPANT_JOINED, room_id=room.pk, room=room, payload={
        "call": events.call_ref(call), "participant": events.participant_data(participant)})
    return Joined(participant=participant, others=others, resume_token=token)


def peers_to_replace(*, others: list[CallParticipant], user) -> list[CallParticipant]:
    """One user has at most PARLEY_MAX_PEERS_PER_USER live peers in a call (a laptop and a phone): a further join
    replaces the user's oldest, so that one person can never fill a room. `others` is in join order."""
    mine = [p for p in others if p.user_id == user.pk]
    excess = len(mine) - settings.PARLEY_SIGNALING["MAX_PEERS_PER_USER"] + 1
    return mine[:max(excess, 0)]


def replace_peer(*, participant: CallParticipant) -> None:
    """End a peer a newer join of its user replaces: closed with 4410, `peer-left: replaced` to the others."""
    logger.info("peer %s replaced by a newer join of its user", participant.peer_id)
    end_connection(participant=participant, reason=Reason.REPLACED, close_code=CloseCode.REPLACED)
    if participant.suspended_at is not None:  # no socket to announce it: its peers hear it from here
        announce_peer_left(call_id=participant.call_id, peer_id=str(participant.peer_id), reason=Reason.REPLACED)


def leave_call(*, peer_id, reason: str, at: datetime | None = None, only_suspended_since=None) -> bool:
    """Record that the peer left (once: the first reason wins) and end the call if it was the last one.

    `at` is when the connection was lost (a suspended participation that was never resumed), else now.
    `only_suspended_since` records the leave only if the participation is still suspended since that moment
    (a window that ends must not end a participation that resumed meanwhile). Returns whether it recorded it.
    """
    with transaction.atomic():
        participant = CallParticipant.objects.select_related("call").filter(peer_id=peer_id).first()
        if participant is None:
            return False
        # Lock the room like join_call does, so a join and the last leave cannot cross.
        Room.objects.select_for_update().filter(pk=participant.call.room_id).first()
        now = timezone.now()
        left_at = max(at or now, participant.joined_at)
        rows = CallParticipant.objects.filter(peer_id=peer_id, left_at__isnull=True)
        if only_suspended_since is not None:
            rows = rows.filter(suspended_at=only_suspended_since)
        left = rows.update(left_at=left_at, leave_reason=reason, suspended_at=None)
        if left:
            ReplayFrame.objects.filter(participant=participant).delete()
            participant.refresh_from_db(fields=["left_at", "leave_reason", "suspended_at"])
            events.emit(events.PARTICIPANT_LEFT, room_id=participant.call.room_id, payload={
                "call": events.call_ref(participant.call), "participant": events.participant_data(participant)})
        ended = end_call_if_empty(call=participant.call, now=left_at if at else now)
        if left:
            announce_call_changed(room_id=participant.call.room_id, call_id=participant.call_id,
                                  user_id=participant.user_id, joined=False, ended=ended)
    return bool(left)


def announce_call_changed(*, room_id: int | None, call_id: int, user_id: int | None, joined: bool,
                          ended: bool = False) -> None:
    """Tell `calls.signals.call_changed` once the join or leave is committed (calls.announcements)."""
    change = announcements.CallChange(room_id=room_id, call_id=call_id, user_id=user_id, joined=joined, ended=ended)
    transaction.on_commit(lambda: announcements.committed(change))


@transaction.atomic
def end_call_if_empty(*, call: Call, now=None) -> bool:
    if call.participants.live().exists():
        return False
    ended = Call.objects.filter(pk=call.pk, ended_at__isnull=True).update(ended_at=max(now or timezone.now(),
                                                                                       call.started_at))
    if ended:
        call.refresh_from_db()
        events.emit(events.CALL_ENDED, room_id=call.room_id, payload=events.call_ended_data(call))
    return bool(ended)


def record_media_state(*, peer_id, audio: bool, video: bool, screen: bool) -> None:
    CallParticipant.objects.filter(peer_id=peer_id, left_at__isnull=True).update(
        audio=audio, video=video, screen=screen
    )


def touch_participants(*, peer_ids: list) -> int:
    """Mark the given live peers as seen now: each server process does this for its own peers, in one query."""
    if not peer_ids:
        return 0
    return CallParticipant.objects.filter(peer_id__in=peer_ids, left_at__isnull=True).update(
        last_seen_at=timezone.now()
    )


def peer_timeout() -> float:
    """Seconds of silence after which a connected peer is treated as gone."""
    return settings.PARLEY_SIGNALING["PEER_TIMEOUT"]


def stale_after() -> timedelta:
    """How long a row may go without a refresh before its server process is presumed dead (a fallback: dead
    processes are found sooner by their heartbeat, see live_nodes_and_suspend_dead)."""
    signaling = settings.PARLEY_SIGNALING
    return timedelta(seconds=signaling["PEER_TIMEOUT"] + signaling["RESUME_SECONDS"]
                     + 2 * signaling["HEARTBEAT_SECONDS"])


def reap_stale_participants(*, room_slug: str | None = None, now=None) -> int:
    """Time out participants whose server process stopped refreshing them (it died), end emptied calls,
    and tell the peers still there. Returns how many participants were timed out."""
    now = now or timezone.now()
    stale = CallParticipant.objects.live().filter(last_seen_at__lt=now - stale_after())
    if room_slug is not None:
        stale = stale.filter(call__room__slug=room_slug)
    reaped = 0
    for participant in stale.select_related("call"):
        if leave_call(peer_id=participant.peer_id, reason=Reason.TIMED_OUT, at=participant.last_seen_at):
            reaped += 1
            logger.info("timed out peer %s of call %s", participant.peer_id, participant.call_id)
            announce_peer_left(call_id=participant.call_id, peer_id=str(participant.peer_id),
                               reason=Reason.TIMED_OUT)
    return reaped


def announce_peer_left(*, call_id: int, peer_id: str, reason: str) -> None:
    """Tell the peers still in a call that one left without its own server saying so (it died), once the
    leave is committed."""
    text = protocol.peer_left_frame(peer_id=peer_id, reason=reason)
    targets = [(node, str(target)) for node, target in
               CallParticipant.objects.live().filter(call_id=call_id).values_list("relay_node", "peer_id")]
    transaction.on_commit(lambda: relay.announce_left(targets=targets, peer_id=peer_id, text=text))


# --- Rules: who may change a room and its call -----------------------------------------------------


class Refused(Exception):
    """A room action the acting user may not take. `code` is one of the constants; the API maps it to a status."""

    NOT_ALLOWED = "not-allowed"
    CONFLICT = "conflict"
    QUOTA_EXCEEDED = "quota-exceeded"

    def __init__(self, code: str, detail: str, quota=None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.quota = quota  # a QuotaExceeded, for QUOTA_EXCEEDED


# Which room roles may take each action (docs/api.md has the same table as a matrix). Staff operators with the
# model permission in the admin may take every action there (`is_operator`).
RULES: dict[str, frozenset[str]] = {
    "see-members": frozenset(Role.values),
    "change-room": RoomMembership.MODERATING_ROLES,
    "delete-room": frozenset({Role.OWNER}),
    "add-member": RoomMembership.MODERATING_ROLES,
    "add-moderator": frozenset({Role.OWNER}),
    "change-role": frozenset({Role.OWNER}),
    "manage-invites": RoomMembership.MODERATING_ROLES,
    "kick": RoomMembership.MODERATING_ROLES,
}
REFUSALS = {
    "see-members": "Only members see who else belongs to the room.",
    "change-room": "Only the owner and moderators may change the room.",
    "delete-room": "Only the owner may delete the room.",
    "add-member": "Only the owner and moderators add members.",
    "add-moderator": "Only the owner makes moderators.",
    "change-role": "Only the owner changes roles.",
    "manage-invites": "Only the owner and moderators manage invites.",
    "kick": "Only the owner and moderators remove people from a call.",
}
OPERATOR_PERMISSIONS = {"delete-room": "calls.delete_room"}  # anything else: calls.change_room


def is_operator(user, action: str) -> bool:
    return bool(user.is_staff and user.has_perm(OPERATOR_PERMISSIONS.get(action, "calls.change_room")))


def may(*, user, action: str, role: str | None) -> bool:
    """Whether a user whose role in the room is `role` (None: no member) may take `action`."""
    return role in RULES[action] or is_operator(user, action)


# A direct room (the room of two people who call each other) keeps its two members and its settings.
DIRECT_ROOM_FIXED = frozenset({"change-room", "add-member", "add-moderator", "change-role", "manage-invites"})
DIRECT_ROOM_REFUSAL = "A direct room is the room of two people: it cannot be renamed, locked or given other members."


def require(*, by, room: Room, action: str, role: str | None = None) -> str | None:
    """Refuse unless `by` may take `action` in `room`; returns their role. Pass `role` when it is known."""
    if room.is_direct and action in DIRECT_ROOM_FIXED:
        raise Refused(Refused.NOT_ALLOWED, DIRECT_ROOM_REFUSAL)
    role = role if role is not None else room.role_of(by)
    if not may(user=by, action=action, role=role):
        raise Refused(Refused.NOT_ALLOWED, REFUSALS[action])
    return role


# --- Ending connections from outside (REST API, admin) ---------------------------------------------


def kick_participant(*, by, participant: CallParticipant, address: str | None = None) -> None:
    """Remove a peer from its live call: its socket closes with 4403 and the others see `peer-left: kicked`.
    Moderators cannot remove the owner or other moderators."""
    room = participant.call.room
    role = require(by=by, room=room, action="kick")
    if role == Role.MODERATOR and room.role_of(participant.user) in RoomMembership.MODERATING_ROLES:
        raise Refused(Refused.NOT_ALLOWED, "Moderators cannot remove the owner or other moderators.")
    with transaction.atomic():
        end_connection(participant=participant, reason=Reason.KICKED, close_code=CloseCode.FORBIDDEN)
        audit.record(audit.Action.PARTICIPANT_KICKED, actor=by, target=room_target(room), address=address,
                     call=participant.call_id, peer_id=str(participant.peer_id),
                     user=participant.user.username if participant.user_id else participant.display_name,
                     ban_seconds=settings.PARLEY_KICK_BAN_SECONDS)


def end_call(*, by, call: Call, address: str | None = None) -> int:
    """End a live call for everyone: each live participant is removed as a kick removes one (4403, `kicked`),
    and the call ends with the last of them. The rules of a kick: owners, moderators and operators; a moderator
    cannot end a call the owner or another moderator is in. Returns how many connections were closed."""
    room = call.room
    if room is None:  # a call outliving its room is over already; only an operator tidies one up
        if not is_operator(by, "kick"):
            raise Refused(Refused.NOT_ALLOWED, REFUSALS["kick"])
        role = None
    else:
        role = require(by=by, room=room, action="kick")
    live = list(call.participants.live().select_related("user"))
    if role == Role.MODERATOR and not is_operator(by, "kick"):
        others = {p.user_id for p in live if p.user_id != by.pk}
        if room.memberships.filter(user__in=others, role__in=RoomMembership.MODERATING_ROLES).exists():
            raise Refused(Refused.NOT_ALLOWED, "Moderators cannot remove the owner or other moderators.")
    with transaction.atomic():
        for participant in live:
            end_connection(participant=participant, reason=Reason.KICKED, close_code=CloseCode.FORBIDDEN)
        end_call_if_empty(call=call)  # a call with nobody live left in it (all suspended rows gone meanwhile)
    audit.record(audit.Action.CALL_ENDED, actor=by, target=room_target(room) if room else f"call:{call.pk}",
                 address=address, call=call.pk, closed=len(live))
    logger.info("call %s ended by %s: closed %d connection(s)", call.pk, by, len(live))
    return len(live)


def end_connection(*, participant: CallParticipant, reason: str, close_code: int) -> None:
    """Record the participant's leave and, once that is committed, close its socket (the consumer announces it)."""
    leave_call(peer_id=participant.peer_id, reason=reason)
    node, peer_id = participant.relay_node, str(participant.peer_id)
    transaction.on_commit(lambda: relay.close_peer(node=node, peer_id=peer_id, code=close_code, reason=reason))


def close_room_connections(*, room: Room, reason: str, close_code: int, spare_moderators: bool = False) -> int:
    """End the live connections of a room (it is being deleted or locked), recording why. Returns how many."""
    live = CallParticipant.objects.live().filter(call__room=room).select_related("user")
    if spare_moderators:
        moderators = set(
            room.memberships.filter(role__in=RoomMembership.MODERATING_ROLES).values_list("user_id", flat=True)
        )
        live = [p for p in live if p.user_id not in moderators]
    closed = 0
    for participant in live:
        end_connection(participant=participant, reason=reason, close_code=close_code)
        closed += 1
    return closed


def end_user_connections(*, user, close_code: int, reason: str) -> int:
    """End every live connection of the user, on whichever server process holds it (their credentials ended:
    logout, password change, deactivation, deletion). Returns how many."""
    live = list(CallParticipant.objects.live().filter(user=user))
    for participant in live:
        end_connection(participant=participant, reason=reason, close_code=close_code)
    return len(live)


def end_connections_without_access(*, room: Room) -> int:
    """End the live connections of the room's people who may no longer join it (removed from it, it became
    private, demoted in a locked room), each closed with the code a new join would get (4404 or 4403)."""
    closed = 0
    for participant in CallParticipant.objects.live().filter(call__room=room).select_related("user"):
        try:
            check_may_join(room=room, user=participant.user)
        except JoinRefused as refusal:
            end_connection(participant=participant, reason=Reason.NO_ACCESS, close_code=refusal.close_code)
            closed += 1
    if closed:
        logger.info("room %s: closed %d connection(s) of people who lost access", room.slug, closed)
    return closed


@transaction.atomic
def prepare_user_deletion(*, user) -> None:
    """Before a user is deleted: end their connections (4401) and those of the rooms they own, which go with
    them (4404), and keep their name on their call-log rows, which outlive them with no user."""
    end_user_connections(user=user, close_code=CloseCode.NOT_AUTHENTICATED, reason=Reason.SIGNED_OUT)
    for room in Room.objects.filter(owner=user):
        close_room_connections(room=room, reason=Reason.ROOM_CLOSED, close_code=CloseCode.NOT_FOUND)
    CallParticipant.objects.filter(user=user).update(display_name=user.name_shown)


# --- Room settings, members and invites (REST API, admin) ------------------------------------------


@transaction.atomic
def update_room(*, by, room: Room, address: str | None = None, **changes) -> Room:
    """Save the changes; locking a room ends the live connections of everyone but its owner and moderators."""
    require(by=by, room=room, action="change-room")
    was_locked = room.locked
    changed = {}
    for name, value in changes.items():
        if name != "locked" and getattr(room, name) != value:
            changed[name] = [json_ready(getattr(room, name)), json_ready(value)]
        setattr(room, name, value)
    room.save()
    if changed:
        audit.record(audit.Action.ROOM_CHANGED, actor=by, target=room_target(room), address=address, changes=changed)
    events.emit(events.ROOM_UPDATED, room_id=room.pk, room=room, payload={"room": events.room_data(room)})
    if room.locked and not was_locked:
        closed = close_room_connections(room=room, reason=Reason.ROOM_LOCKED, close_code=CloseCode.FORBIDDEN,
                                        spare_moderators=True)
        logger.info("room %s locked by %s: closed %d connection(s)", room.slug, by, closed)
        audit.record(audit.Action.ROOM_LOCKED, actor=by, target=room_target(room), address=address, closed=closed)
    elif was_locked and not room.locked:
        audit.record(audit.Action.ROOM_UNLOCKED, actor=by, target=room_target(room), address=address)
    end_connections_without_access(room=room)  # e.g. a public room made private: its outsiders go
    return room


@transaction.atomic
def delete_room(*, by, room: Room, address: str | None = None) -> int:
    """End the room's live connections (close code 4404, `room-closed`), then delete it. Its calls stay in the
    call log, detached from the room.

    Returns how many connections were closed.
    """
    require(by=by, room=room, action="delete-room")
    closed = close_room_connections(room=room, reason=Reason.ROOM_CLOSED, close_code=CloseCode.NOT_FOUND)
    logger.info("room %s (id %s) deleted by %s: closed %d connection(s)", room.slug, room.pk, by, closed)
    events.emit(events.ROOM_DELETED, room_id=room.pk, room=room, payload={"room": events.room_data(room)})
    audit.record(audit.Action.ROOM_DELETED, actor=by, target=room_target(room), address=address, name=room.name,
                 closed=closed)
    room.delete()
    return closed


def add_member(*, by, room: Room, user, role: str = Role.MEMBER, address: str | None = None) -> RoomMembership:
    require(by=by, room=room, action="add-member" if role == Role.MEMBER else "add-moderator")
    if role == Role.OWNER:
        raise Refused(Refused.NOT_ALLOWED, "A room has one owner.")
    try:
        with transaction.atomic():
            membership = RoomMembership.objects.create(room=room, user=user, role=role)
            audit.record(audit.Action.MEMBER_ADDED, actor=by, target=room_target(room), address=address,
                         user=user.username, role=role)
            return membership
    except IntegrityError:
        raise Refused(Refused.CONFLICT, f"{user.username} is a member already.") from None


def change_role(*, by, membership: RoomMembership, role: str, address: str | None = None) -> RoomMembership:
    require(by=by, room=membership.room, action="change-role")
    if membership.role == Role.OWNER or role == Role.OWNER:
        raise Refused(Refused.NOT_ALLOWED, "The owner's role does not change.")
    was = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    if was != role:
        audit.record(audit.Action.MEMBER_ROLE_CHANGED, actor=by, target=room_target(membership.room),
                     address=address, user=membership.user.username, was=was, role=role)
    end_connections_without_access(room=membership.room)  # a moderator made a member, in a locked room
    return membership


def remove_member(*, by, membership: RoomMembership, address: str | None = None) -> None:
    """The owner removes anyone but themselves; moderators remove plain members; anyone but the owner leaves."""
    room = membership.room
    if membership.role == Role.OWNER:
        raise Refused(Refused.NOT_ALLOWED, "The owner cannot leave or be removed; delete the room instead.")
    role = room.role_of(by)
    allowed = (
        membership.user_id == by.pk
        or role == Role.OWNER
        or (role == Role.MODERATOR and membership.role == Role.MEMBER)
        or is_operator(by, "change-room")
    )
    if not allowed:
        raise Refused(Refused.NOT_ALLOWED, "You may not remove this member.")
    membership.delete()
    audit.record(audit.Action.MEMBER_REMOVED, actor=by, target=room_target(room), address=address,
                 user=membership.user.username, role=membership.role, left=membership.user_id == by.pk)
    end_connections_without_access(room=room)


class InviteInvalid(Exception):
    """The invite cannot be used; `state` says why (an Invite.State, or "unknown")."""

    def __init__(self, state: str):
        super().__init__(state)
        self.state = state


@transaction.atomic
def accept_invite(*, token: str, user, address: str | None = None) -> tuple[RoomMembership, bool]:
    """Make the user a member of the invite's room, counting one use. Returns (membership, created).

    Someone who already belongs to the room keeps their role and does not use the invite up.
    """
    invite = Invite.objects.select_for_update().select_related("room").filter(token=token).first()
    if invite is None:
        raise InviteInvalid("unknown")
    state = invite.state_at(timezone.now())
    if state != Invite.State.ACTIVE:
        raise InviteInvalid(state)
    membership, created = RoomMembership.objects.get_or_create(
        room=invite.room, user=user, defaults={"role": RoomMembership.Role.MEMBER}
    )
    if created:
        Invite.objects.filter(pk=invite.pk).update(use_count=F("use_count") + 1)
        audit.record(audit.Action.INVITE_USED, actor=user, target=room_target(invite.room), address=address,
                     invite=invite.pk, uses=invite.use_count + 1, max_uses=invite.max_uses)
    return membership, created
