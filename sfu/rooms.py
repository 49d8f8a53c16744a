"""The Janus side of Parley's SFU mode that is not per socket (docs/sfu.md): each server process's one connection to
Janus, and each call's Janus room, made with a fresh number, secret and pin, recorded in `JanusRoom`, destroyed when
the call ends."""

import asyncio
import logging
from contextlib import suppress

from django.conf import settings
from django.db import IntegrityError

from calls.db_threads import in_db_thread
from calls.models import Call, Room
from sfu import janus as api
from sfu.janus import JanusConnection, JanusError, JanusHandle, RoomKeys
from sfu.models import JanusRoom

logger = logging.getLogger(__name__)

NO_SUCH_ROOM, ROOM_EXISTS = 426, 427  # JANUS_VIDEOROOM_ERROR_NO_SUCH_ROOM, _ROOM_EXISTS


# --- This process's connection to Janus ------------------------------------------------------------------------

class _Janus:
    """One WebSocket to Janus per server process, opened on first use and again after it was lost, and one session
    with a handle for the room requests (create, destroy)."""

    def __init__(self):
        self.connection: JanusConnection | None = None
        self.control: JanusHandle | None = None
        self.lock: asyncio.Lock | None = None

    async def get(self) -> JanusConnection:
        if self.connection is not None and not self.connection.closed.is_set():
            return self.connection
        if self.lock is None:
            self.lock = asyncio.Lock()
        async with self.lock:
            if self.connection is None or self.connection.closed.is_set():
                self.connection = await JanusConnection.open(
                    settings.PARLEY_JANUS_URL, api_secret=settings.PARLEY_JANUS_API_SECRET,
                    admin_key=settings.PARLEY_JANUS_ADMIN_KEY)
                self.control = None
            return self.connection

    async def control_handle(self) -> JanusHandle:
        connection = await self.get()
        if self.control is None or self.control.session.connection is not connection:
            session = await connection.create_session()
            self.control = await session.attach()
        return self.control


janus = _Janus()


# --- The call's Janus room (database) --------------------------------------------------------------------------

def keys_of(*, call_id: int) -> RoomKeys | None:
    row = JanusRoom.objects.filter(call_id=call_id).first()
    return RoomKeys(room=row.room, secret=row.secret, pin=row.pin) if row else None


def record_room(*, call_id: int, keys: RoomKeys) -> RoomKeys:
    """Record `keys` as the call's Janus room, unless another join recorded one first: the one recorded wins."""
    try:
        JanusRoom.objects.create(call_id=call_id, room=keys.room, secret=keys.secret, pin=keys.pin)
    except IntegrityError:
        return keys_of(call_id=call_id)
    return keys


def forget_room_of_ended_call(*, call_id: int) -> RoomKeys | None:
    """The Janus room of a call that has ended, its row deleted; None while the call goes on (or had none)."""
    if Call.objects.filter(pk=call_id, ended_at__isnull=True).exists():
        return None
    keys = keys_of(call_id=call_id)
    deleted, _ = JanusRoom.objects.filter(call_id=call_id).delete()
    return keys if deleted else None  # two last leaves at once: one of them destroys it


def forget_rooms_of_ended_calls() -> list[RoomKeys]:
    """The Janus rooms of calls that ended without a last leave on a live socket (the reaper ended them, or a resume
    window ran out), their rows deleted: the caller destroys them in Janus."""
    forgotten = []
    for row in JanusRoom.objects.filter(call__ended_at__isnull=False):
        if JanusRoom.objects.filter(pk=row.pk).delete()[0]:  # once, whichever process sweeps at the same time
            forgotten.append(RoomKeys(room=row.room, secret=row.secret, pin=row.pin))
    return forgotten


async def sweep_ended_rooms() -> None:
    try:
        for keys in await in_db_thread(forget_rooms_of_ended_calls)():
            try:
                await api.destroy_room(await janus.control_handle(), keys=keys)
                logger.info("sfu: Janus room %s of an ended call destroyed", keys.room)
            except JanusError as error:
                if error.code != NO_SUCH_ROOM:
                    logger.warning("sfu: Janus room %s of an ended call not destroyed: %s", keys.room, error)
    except Exception:
        logger.exception("sfu: the sweep of ended calls' Janus rooms failed")


_background: set[asyncio.Task] = set()


def background(coroutine, name: str) -> None:
    """A task nobody waits for, kept referenced until it is done (asyncio holds tasks weakly)."""
    task = asyncio.create_task(coroutine, name=name)
    _background.add(task)
    task.add_done_callback(_background.discard)


async def open_room(*, call_id: int, room: Room) -> RoomKeys:
    """Create the call's Janus room (a private one, with a fresh secret and pin) and record it; then, in the
    background, destroy the rooms of calls that ended without their last leave (so they do not pile up in Janus)."""
    keys = RoomKeys.generate()
    handle = await janus.control_handle()
    await api.create_room(handle, keys=keys, publishers=room.max_participants, description=f"Parley call {call_id}")
    winner = await in_db_thread(record_room)(call_id=call_id, keys=keys)
    if winner != keys:  # another join of the same call made one at the same moment: use that one
        with suppress(JanusError):
            await api.destroy_room(handle, keys=keys)
    background(sweep_ended_rooms(), "sfu-sweep")
    return winner


def wants_sfu(*, room: Room, people: int) -> bool:
    if not settings.PARLEY_JANUS_URL:
        return False
    return room.media == Room.Media.SFU or (room.media == Room.Media.AUTO and people > settings.PARLEY_MESH_MAX)
