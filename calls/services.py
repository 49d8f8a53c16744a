"""Writes that span models. Views, API and consumers call these; they never write across models themselves."""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from calls import protocol, relay
from calls.models import Call, CallParticipant, Invite, Room, RoomMembership

logger = logging.getLogger(__name__)

Reason = CallParticipant.LeaveReason


class CloseCode:
    """WebSocket close codes of the signaling protocol (docs/signaling.md)."""

    NOT_AUTHENTICATED = 4401
    FORBIDDEN = 4403  # not allowed to join, or kicked
    NOT_FOUND = 4404  # no such room, or a private room the user does not belong to
    TIMED_OUT = 4408
    ROOM_FULL = 4409
    FLOODING = 4429
    SERVICE_RESTART = 1012  # the server process is stopping: reconnect (another process will take you)


def unique_slug_for(name: str) -> str:
    base = slugify(name)[:56] or "room"
    slug, n = base, 2
    while Room.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


@transaction.atomic
def create_room(*, owner, name: str, slug: str = "", **fields) -> Room:
    """Create a room and make its creator the owner member."""
    room = Room.objects.create(owner=owner, name=name, slug=slug or unique_slug_for(name), **fields)
    RoomMembership.objects.create(room=room, user=owner, role=RoomMembership.Role.OWNER)
    return room


# --- Joining and leaving calls -------------------------------------------------------------------


class JoinRefused(Exception):
    def __init__(self, close_code: int, detail: str):
        super().__init__(detail)
        self.close_code = close_code


@dataclass(frozen=True)
class Joined:
    participant: CallParticipant
    others: list[CallParticipant]  # already in the call, in join order


def check_may_join(*, room: Room, user) -> None:
    """Raise JoinRefused unless the user may enter the room's call."""
    role = room.role_of(user)
    if not room.is_public and role is None:
        raise JoinRefused(CloseCode.NOT_FOUND, "No such room.")  # a private room does not exist for outsiders
    if room.locked and role not in (RoomMembership.Role.OWNER, RoomMembership.Role.MODERATOR):
        raise JoinRefused(CloseCode.FORBIDDEN, "The room is locked.")


def join_call(*, room_slug: str, user, peer_id: str, relay_node: str, user_agent: str = "") -> Joined:
    """Start the room's live call if there is none, then add the participant.

    The room row is locked for the transaction, so concurrent joins of one room are serialised: exactly one of
    several first joiners starts the call, the size limit holds, and of any two peers exactly one sees the other
    in its `welcome` (the later one), which is what the `polite` flags rely on.
    """
    try:
        return _join_call(room_slug=room_slug, user=user, peer_id=peer_id, relay_node=relay_node,
                          user_agent=user_agent)
    except JoinRefused as refusal:
        # A full room may be full of peers whose server died: time them out, then try once more.
        if refusal.close_code != CloseCode.ROOM_FULL or not reap_stale_participants(room_slug=room_slug):
            raise
    return _join_call(room_slug=room_slug, user=user, peer_id=peer_id, relay_node=relay_node, user_agent=user_agent)


@transaction.atomic
def _join_call(*, room_slug: str, user, peer_id: str, relay_node: str, user_agent: str) -> Joined:
    room = Room.objects.select_for_update().filter(slug=room_slug).first()
    if room is None:
        raise JoinRefused(CloseCode.NOT_FOUND, "No such room.")
    check_may_join(room=room, user=user)
    call = Call.objects.filter(room=room).live().first()
    if call is None:
        call = Call.objects.create(room=room, room_name=room.name, started_by=user)
        others = []
    else:
        others = list(call.participants.live().select_related("user").order_by("joined_at", "id"))
    if len(others) >= room.max_participants:
        raise JoinRefused(CloseCode.ROOM_FULL, f"The room is full ({room.max_participants} people).")
    participant = CallParticipant.objects.create(
        call=call, user=user, peer_id=peer_id, relay_node=relay_node, user_agent=user_agent[:300]
    )
    call.room = room
    return Joined(participant=participant, others=others)


def leave_call(*, peer_id, reason: str) -> bool:
    """Record that the peer left (once: the first reason wins) and end the call if it was the last one.

    Returns whether this call recorded the leave.
    """
    with transaction.atomic():
        participant = CallParticipant.objects.select_related("call").filter(peer_id=peer_id).first()
        if participant is None:
            return False
        # Lock the room like join_call does, so a join and the last leave cannot cross.
        Room.objects.select_for_update().filter(pk=participant.call.room_id).first()
        now = timezone.now()
        left = CallParticipant.objects.filter(peer_id=peer_id, left_at__isnull=True).update(
            left_at=now, leave_reason=reason
        )
        end_call_if_empty(call=participant.call, now=now)
    return bool(left)


def end_call_if_empty(*, call: Call, now=None) -> bool:
    if call.participants.live().exists():
        return False
    return bool(Call.objects.filter(pk=call.pk, ended_at__isnull=True).update(ended_at=max(now or timezone.now(),
                                                                                           call.started_at)))


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
    """How long a row may go without a refresh before its server process is presumed dead."""
    return timedelta(seconds=peer_timeout() + 2 * relay.HEARTBEAT_SECONDS)


def reap_stale_participants(*, room_slug: str | None = None, now=None) -> int:
    """Time out participants whose server process stopped refreshing them (it died), end emptied calls,
    and tell the peers still there. Returns how many participants were timed out."""
    now = now or timezone.now()
    stale = CallParticipant.objects.live().filter(last_seen_at__lt=now - stale_after())
    if room_slug is not None:
        stale = stale.filter(call__room__slug=room_slug)
    reaped = 0
    for participant in stale.select_related("call"):
        if leave_call(peer_id=participant.peer_id, reason=Reason.TIMED_OUT):
            reaped += 1
            logger.info("timed out peer %s of call %s", participant.peer_id, participant.call_id)
            announce_peer_left(call_id=participant.call_id, peer_id=str(participant.peer_id),
                               reason=Reason.TIMED_OUT)
    return reaped


def announce_peer_left(*, call_id: int, peer_id: str, reason: str) -> None:
    """Tell the peers still in a call that one left without its own server saying so (it died)."""
    text = protocol.encode({"type": "peer-left", "peer_id": peer_id, "reason": reason})
    targets = CallParticipant.objects.live().filter(call_id=call_id).values_list("relay_node", "peer_id")
    relay.announce_left(targets=[(node, str(target)) for node, target in targets], peer_id=peer_id, text=text)


# --- Ending connections from outside (REST API, admin) ---------------------------------------------


def kick_participant(*, participant: CallParticipant) -> None:
    """Remove a peer from its live call: its socket closes with 4403 and the others see `peer-left: kicked`."""
    leave_call(peer_id=participant.peer_id, reason=Reason.KICKED)
    relay.close_peer(node=participant.relay_node, peer_id=str(participant.peer_id),
                     code=CloseCode.FORBIDDEN, reason=Reason.KICKED)


def close_room_connections(*, room: Room, reason: str, close_code: int, spare_moderators: bool = False) -> int:
    """End the live connections of a room (it is being deleted or locked), recording why. Returns how many."""
    live = CallParticipant.objects.live().filter(call__room=room).select_related("user")
    if spare_moderators:
        moderators = set(
            room.memberships.filter(role__in=[RoomMembership.Role.OWNER, RoomMembership.Role.MODERATOR])
            .values_list("user_id", flat=True)
        )
        live = [p for p in live if p.user_id not in moderators]
    closed = 0
    for participant in live:
        leave_call(peer_id=participant.peer_id, reason=reason)
        relay.close_peer(node=participant.relay_node, peer_id=str(participant.peer_id), code=close_code,
                         reason=reason)
        closed += 1
    return closed


# --- Room settings, members and invites (REST API) -------------------------------------------------


def update_room(*, room: Room, **changes) -> Room:
    """Save the changes; locking a room ends the live connections of everyone but its owner and moderators."""
    was_locked = room.locked
    for field, value in changes.items():
        setattr(room, field, value)
    room.save()
    if room.locked and not was_locked:
        closed = close_room_connections(room=room, reason=Reason.ROOM_LOCKED, close_code=CloseCode.FORBIDDEN,
                                        spare_moderators=True)
        logger.info("room %s locked: closed %d connection(s)", room.slug, closed)
    return room


def delete_room(*, room: Room) -> int:
    """End the room's live connections (close code 4404, `room-closed`), then delete it. Its calls stay in the
    call log, detached from the room.

    Returns how many connections were closed.
    """
    closed = close_room_connections(room=room, reason=Reason.ROOM_CLOSED, close_code=CloseCode.NOT_FOUND)
    logger.info("room %s (id %s) deleted by its owner: closed %d connection(s)", room.slug, room.pk, closed)
    room.delete()
    return closed


class InviteInvalid(Exception):
    """The invite cannot be used; `state` says why (an Invite.State, or "unknown")."""

    def __init__(self, state: str):
        super().__init__(state)
        self.state = state


@transaction.atomic
def accept_invite(*, token: str, user) -> tuple[RoomMembership, bool]:
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
    return membership, created
