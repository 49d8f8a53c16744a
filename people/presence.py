"""Contacts, presence and live rooms: who is online or in a call, told to the /ws/me/ sockets that listen.

Announcements take many users or rooms at once (the joins of a signaling process come in batches,
calls.announcements) for a fixed number of queries, and send frames only to users with a /ws/me/ socket on a live
process: nobody else could receive them.
"""

from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from calls import protocol
from calls.models import CallParticipant, RelayNode, Room, RoomMembership
from calls.shared_cache import shared_cache
from people import delivery
from people.models import MeSocket, Ring

User = get_user_model()
State = Ring.State

ONLINE, IN_CALL, OFFLINE = "online", "in-call", "offline"


# --- Contacts ---------------------------------------------------------------------------------------


def contact_ids(user_id: int):
    """The ids of the people the user shares a room with, or has called or been called by (a subquery)."""
    rooms = RoomMembership.objects.filter(user_id=user_id).values("room_id")
    shared = RoomMembership.objects.filter(room_id__in=rooms).values("user_id")
    called = Ring.objects.filter(caller_id=user_id).values("callee_id")
    called_by = Ring.objects.filter(callee_id=user_id).values("caller_id")
    return (User.objects.filter(Q(pk__in=shared) | Q(pk__in=called) | Q(pk__in=called_by), is_active=True)
            .exclude(pk=user_id).values("pk"))


def contacts_of(user):
    return User.objects.filter(pk__in=contact_ids(user.pk)).order_by("username")


def is_contact(user, other) -> bool:
    return contacts_of(user).filter(pk=other.pk).exists()


def listening(user_ids) -> set[int]:
    """Those of the users (active ones) with a /ws/me/ socket on a live process."""
    ids = set(user_ids)
    if not ids:
        return set()
    return set(MeSocket.objects.filter(user_id__in=ids, user__is_active=True, node__in=live_nodes())
               .values_list("user_id", flat=True))


def listening_contacts(user_ids) -> dict[int, set[int]]:
    """For each user, their contacts (as `contact_ids` has them) who have a /ws/me/ socket open: four queries for
    any number of users."""
    ids = set(user_ids)
    contacts: dict[int, set[int]] = defaultdict(set)
    rooms_of: dict[int, set[int]] = defaultdict(set)
    for user_id, room_id in RoomMembership.objects.filter(user_id__in=ids).values_list("user_id", "room_id"):
        rooms_of[room_id].add(user_id)
    for room_id, member_id in RoomMembership.objects.filter(room_id__in=rooms_of).values_list("room_id", "user_id"):
        for user_id in rooms_of[room_id]:
            contacts[user_id].add(member_id)
    for caller_id, callee_id in Ring.objects.filter(Q(caller_id__in=ids) | Q(callee_id__in=ids)).values_list(
            "caller_id", "callee_id"):
        if caller_id in ids:
            contacts[caller_id].add(callee_id)
        if callee_id in ids:
            contacts[callee_id].add(caller_id)
    heard = listening(set().union(*contacts.values()))
    return {user_id: (contacts[user_id] & heard) - {user_id} for user_id in ids}


# --- Presence ---------------------------------------------------------------------------------------


def live_nodes():
    """The relay nodes (server processes) that beat within their timeout, as a subquery."""
    timeout = timedelta(seconds=settings.PARLEY_SIGNALING["NODE_TIMEOUT"])
    return RelayNode.objects.filter(beat_at__gte=timezone.now() - timeout).values("channel")


def presence_by_user(user_ids) -> dict[int, str]:
    ids = list(user_ids)
    in_call = set(CallParticipant.objects.live().filter(user_id__in=ids).values_list("user_id", flat=True))
    online = set(MeSocket.objects.filter(user_id__in=ids, node__in=live_nodes()).values_list("user_id", flat=True))
    return {pk: IN_CALL if pk in in_call else ONLINE if pk in online else OFFLINE for pk in ids}


def presence_of(user_id: int) -> str:
    return presence_by_user([user_id])[user_id]


def contacts_with_presence(*, user, search: str = "") -> list[tuple]:
    """(contact, presence) for each of the user's contacts, matching `search` in the username or name."""
    contacts = contacts_of(user)
    if search:
        contacts = contacts.filter(Q(username__icontains=search) | Q(display_name__icontains=search))
    contacts = list(contacts)
    presence = presence_by_user(c.pk for c in contacts)
    return [(contact, presence[contact.pk]) for contact in contacts]


def announce_presence(*, user_id: int) -> str:
    """Tell the user's contacts their presence if it changed since it was last told (by any process)."""
    return announce_presence_of([user_id]).get(user_id, OFFLINE)


def announce_presence_of(user_ids) -> dict[int, str]:
    """`announce_presence` for many users at once; their presence now (deleted users left out)."""
    ids = sorted({pk for pk in user_ids if pk is not None})
    if not ids:
        return {}
    with transaction.atomic():
        # The users' rows serialise the announcements of their sockets and calls, on every process (in id order:
        # two batches never wait for each other crosswise).
        users = {user.pk: user for user in User.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
        now = presence_by_user(users)
        keys = {pk: f"presence:{pk}" for pk in users}
        told = shared_cache().get_many(keys.values())
        changed = [pk for pk in users if told.get(keys[pk]) != now[pk]]
        if changed:
            shared_cache().set_many({keys[pk]: now[pk] for pk in changed}, timeout=None)
            for pk, contacts in listening_contacts(changed).items():
                delivery.send_to_users(contacts, {"type": "presence", "user": protocol.user_object(users[pk]),
                                         "presence": now[pk]})
    return now


# --- /ws/me/ sockets --------------------------------------------------------------------------------


def open_me_socket(*, user, channel_name: str, node: str) -> None:
    MeSocket.objects.update_or_create(channel_name=channel_name, defaults={"user": user, "node": node})
    announce_presence(user_id=user.pk)


def close_me_socket(*, channel_name: str) -> None:
    socket = MeSocket.objects.filter(channel_name=channel_name).first()
    if socket is not None:
        socket.delete()
        announce_presence(user_id=socket.user_id)


def close_sockets_of(*, user_id: int) -> None:
    """The user signed out (or their account goes): their /ws/me/ sockets close with 4401, on every process."""
    transaction.on_commit(lambda: delivery.sender.send([user_id], "signed out", kind="close", message="me.close"))


def forget_dead_sockets() -> int:
    """Sockets of server processes that stopped beating are gone: their users may be offline now."""
    dead = MeSocket.objects.exclude(node__in=live_nodes())
    user_ids = set(dead.values_list("user_id", flat=True))
    if not user_ids:
        return 0
    count, _ = dead.delete()
    announce_presence_of(user_ids)
    return count


# --- Live rooms and the calls' changes --------------------------------------------------------------


def announce_room_live(*, room_id: int | None) -> None:
    """Tell the room's members who is in its call now (nobody once it ended)."""
    announce_rooms_live([room_id])


def announce_rooms_live(room_ids) -> None:
    """`announce_room_live` for many rooms at once: four queries."""
    rooms = {room.pk: room for room in Room.objects.filter(pk__in={pk for pk in room_ids if pk is not None})}
    if not rooms:
        return
    in_call: dict[int, list[dict]] = defaultdict(list)
    seen: set[tuple[int, int]] = set()
    for participant in (CallParticipant.objects.live().filter(call__room_id__in=rooms)
                        .select_related("user", "call").order_by("joined_at", "id")):
        room_id = participant.call.room_id
        if participant.user_id is not None and (room_id, participant.user_id) not in seen:
            seen.add((room_id, participant.user_id))
            in_call[room_id].append(protocol.user_object(participant.user))
    members: dict[int, list[int]] = defaultdict(list)
    for room_id, user_id in RoomMembership.objects.filter(room_id__in=rooms).values_list("room_id", "user_id"):
        members[room_id].append(user_id)
    heard = listening(set().union(*members.values()))
    for room_id, room in rooms.items():
        delivery.send_to_users([pk for pk in members[room_id] if pk in heard], {
            "type": "room-live", "room": {"slug": room.slug, "name": room.name}, "participants": in_call[room_id]})


def calls_changed(changes) -> None:
    """People joined or left live calls (calls.signals.call_changed): link answered rings to the calls, and tell
    contacts and room members."""
    joins = [c for c in changes if c.joined and c.user_id is not None and c.room_id is not None]
    if joins:
        link_answered_rings(joins)
    announce_presence_of(c.user_id for c in changes)
    announce_rooms_live(c.room_id for c in changes)


def link_answered_rings(joins) -> None:
    """An answered ring leads to the call its caller or callee joins next in its room."""
    rings = Ring.objects.filter(state=State.ANSWERED, call__isnull=True, room_id__in={c.room_id for c in joins})
    for ring in rings.only("pk", "room_id", "caller_id", "callee_id"):
        for change in joins:
            if change.room_id == ring.room_id and change.user_id in (ring.caller_id, ring.callee_id):
                Ring.objects.filter(pk=ring.pk, call__isnull=True).update(call_id=change.call_id)
                break
