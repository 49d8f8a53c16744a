"""The SFU side of a signaling socket (docs/sfu.md): frames addressed to `"sfu"` are relayed to Janus, not to a peer.

Per socket in SFU mode one `SfuPeer` holds a Janus session with two VideoRoom handles: the publisher (the client's
offer -> Janus's answer) and the subscriber (Janus's offer of every other feed of the call -> the client's answer).
The subscriber follows the room by itself: Janus tells every publisher handle when a feed is published or goes, and
the SfuPeer updates its subscription and sends the client a new offer with the `streams` it carries. So nothing
crosses server processes for the media: each process talks to Janus for its own sockets.

Permissions stay Parley's: the Janus room of a call is created by Parley with a secret and a pin that no client sees
(`JanusRoom`), a client never names what it subscribes to (the server subscribes it to its own call's feeds, and to
nothing else), a socket's Janus session is destroyed with it (a kick, a leave, a suspension), and the Janus room is
destroyed when the call ends.

The consumer (calls/consumers.py) calls in at four points: `on_join` (decide the media, create the Janus room when
the call needs one, add `"media"` to the welcome), `after_welcome` (announce a switch to the SFU), `from_client`
(a frame to "sfu") and `gone` (the socket's participation left or was suspended).
"""

import asyncio
import logging
import re
import uuid
from contextlib import suppress
from dataclasses import dataclass

import orjson
from django.conf import settings

from calls import protocol
from calls.db_threads import in_db_thread
from calls.models import MAX_PARTICIPANTS
from calls.protocol import CloseCode, ErrorCode, ProtocolError
from calls.relay import Item
from calls.services import Reason
from sfu import janus as api
from sfu.janus import JanusError, JanusHandle, RoomKeys
from sfu.rooms import (
    NO_SUCH_ROOM,
    ROOM_EXISTS,
    background,
    forget_room_of_ended_call,
    janus,
    keys_of,
    open_room,
    wants_sfu,
)

logger = logging.getLogger(__name__)

SFU = "sfu"
ANSWER_WAIT_SECONDS = 10  # how long a subscription update waits for the client's answer to the previous offer
NOT_SFU_SECONDS = 2.0  # a mesh socket looks up whether its call moved to the SFU at most this often
NOT_SFU = "This call is not in SFU mode: 'to' must be a peer id."
MEDIA_MODE_SFU = protocol.encode({"type": "media-mode", "media": "sfu"})
UFRAG = re.compile(r"^a=ice-ufrag:(\S+)", re.MULTILINE)


# --- The consumer's hooks --------------------------------------------------------------------------------------

async def on_join(consumer, joined) -> bool:
    """Decide the call's media for this socket and add it to the welcome; False if the socket was refused (4503:
    the call needs the SFU and Janus cannot be reached)."""
    consumer.sfu = None
    consumer.sfu_switched = False
    participant = joined.participant
    keys = None
    if settings.PARLEY_JANUS_URL:
        keys = await in_db_thread(keys_of)(call_id=participant.call_id)
        room = participant.call.room
        if keys is None and wants_sfu(room=room, people=len(joined.others) + 1):
            try:
                keys = await open_room(call_id=participant.call_id, room=room)
            except JanusError as error:
                logger.warning("sfu: call %s needs the SFU, which is unavailable: %s", participant.call_id, error)
                consumer.joined = True  # so that the participation is recorded as ended
                await consumer.end(CloseCode.UNAVAILABLE, Reason.DISCONNECTED, "media server unavailable")
                return False
            consumer.sfu_switched = bool(joined.others)
            logger.info("sfu: call %s moves to Janus room %s", participant.call_id, keys.room)
    if keys:  # the welcome says "mesh" as made; a call in SFU mode (the rarer case) has it made again
        consumer.sfu = SfuPeer(consumer, keys)
        welcome = orjson.loads(consumer.welcome_text)
        welcome["media"] = SFU
        consumer.welcome_text = protocol.encode(welcome)
    return True


async def after_welcome(consumer) -> None:
    """Tell the others the call moved to the SFU (when this join moved it), and start our Janus session."""
    if getattr(consumer, "sfu_switched", False):
        for peer_id in list(consumer.peers):
            await consumer.send_to_peer(Item.frame(peer_id, MEDIA_MODE_SFU))
    sfu = getattr(consumer, "sfu", None)
    if sfu is not None:
        sfu.start_soon()


async def from_client(consumer, data: dict) -> None:
    """A frame with `"to": "sfu"`: validated, then handed to this socket's SfuPeer."""
    message = parse_sfu_message(data)
    sfu = getattr(consumer, "sfu", None)
    if sfu is None:  # the call moved to the SFU after we joined (media-mode): look its room up, once
        # Frames to "sfu" in a mesh call cost no database query each: at most one look-up per NOT_SFU_SECONDS (a
        # client sends to "sfu" only after its welcome or a media-mode said so, and the room is recorded before).
        now = consumer.loop.time()
        if not settings.PARLEY_JANUS_URL or now - getattr(consumer, "sfu_checked_at", -1e9) < NOT_SFU_SECONDS:
            raise ProtocolError(ErrorCode.UNKNOWN_PEER, NOT_SFU)
        consumer.sfu_checked_at = now
        keys = await in_db_thread(keys_of)(call_id=consumer.call_id)
        if keys is None:
            raise ProtocolError(ErrorCode.UNKNOWN_PEER, NOT_SFU)
        sfu = consumer.sfu = SfuPeer(consumer, keys)
    try:
        await sfu.handle(message)
    except JanusError as error:
        logger.warning("sfu: peer %s: Janus refused %s: %s", consumer.peer_id, message.kind, error)
        if error.code == 0:
            sfu.lost()
        raise ProtocolError(ErrorCode.UNDELIVERABLE, f"The media server refused the {message.kind}.") from None


async def gone(consumer, *, left: bool) -> None:
    """The socket's participation left (`left`) or was suspended: its Janus session goes (its feed with it), and the
    Janus room too when the call has ended."""
    sfu = getattr(consumer, "sfu", None)
    consumer.sfu = None
    if sfu is not None:
        await sfu.close()
    call_id = getattr(consumer, "call_id", None)
    if left and call_id is not None and settings.PARLEY_JANUS_URL:
        keys = await in_db_thread(forget_room_of_ended_call)(call_id=call_id)
        if keys is not None:
            try:
                await api.destroy_room(await janus.control_handle(), keys=keys)
                logger.info("sfu: call %s ended, Janus room %s destroyed", call_id, keys.room)
            except JanusError as error:
                if error.code != NO_SUCH_ROOM:
                    logger.warning("sfu: Janus room %s of call %s not destroyed: %s", keys.room, call_id, error)


# --- Frames to the SFU -----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SfuMessage:
    kind: str  # offer (the client publishes), answer (to the server's offer), candidate
    sdp: str | None = None
    candidate: dict | None = None


def parse_sfu_message(data: dict) -> SfuMessage:
    kind = data.get("type")
    if kind in ("offer", "answer"):
        return SfuMessage(kind, sdp=protocol._string(data, "sdp", protocol.MAX_SDP_CHARS))
    if kind == "candidate":
        if "candidate" not in data:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "'candidate' is required (null ends the candidates).")
        return SfuMessage(kind, candidate=protocol._candidate(data["candidate"]))
    raise ProtocolError(ErrorCode.BAD_MESSAGE, "Only offer, answer and candidate frames go to the SFU.")


def ufrag_of(sdp: str) -> str | None:
    match = UFRAG.search(sdp)
    return match.group(1) if match else None


def is_peer_id(text) -> bool:
    try:
        return isinstance(text, str) and str(uuid.UUID(text)) == text
    except ValueError:
        return False


class SfuPeer:
    """One socket's Janus session: its publisher handle, its subscriber handle, the feeds of the others.

    Its frames to the client carry no `seq` and are never replayed: they belong to this session, which ends with
    the socket; after a resume the client starts again with a new offer and a new subscriber connection."""

    def __init__(self, consumer, keys: RoomKeys):
        self.consumer, self.keys = consumer, keys
        self.session = self.publisher = self.subscriber = None
        self.feed: int | None = None
        self.private_id: int | None = None
        self.published = False
        self.feeds: dict[int, str] = {}  # the others' published feeds: Janus feed id -> peer id
        self.subscribed: set[int] = set()
        self.subscriber_ufrag: str | None = None  # the client's, in its answer: its candidates go to the subscriber
        self.changed = asyncio.Event()
        self.answered = asyncio.Event()
        self.answered.set()
        self.ready = asyncio.Lock()
        self.tasks: list[asyncio.Task] = []
        self.closed = False

    def spawn(self, coroutine, name: str) -> None:
        """One of this session's tasks, cancelled with it; a failure is logged (the socket goes on without it)."""
        task = asyncio.create_task(coroutine, name=f"sfu-{name}-{self.consumer.peer_id}")
        task.add_done_callback(self._failed)
        self.tasks.append(task)

    def _failed(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("sfu: peer %s: %s failed", self.consumer.peer_id, task.get_name(),
                         exc_info=task.exception())

    def start_soon(self) -> None:
        self.spawn(self._start_logged(), "start")

    async def _start_logged(self) -> None:
        try:
            await self.start()
        except JanusError as error:
            logger.warning("sfu: peer %s: no Janus session: %s", self.consumer.peer_id, error)
            if error.code == 0:
                self.lost()

    async def start(self) -> None:
        """Join the Janus room as a publisher (not yet sending) and follow its feeds; once."""
        async with self.ready:
            if self.session is not None or self.closed:
                return
            connection = await janus.get()
            session = await connection.create_session()
            try:
                publisher = await session.attach()
                joined = await self.join(publisher)
            except BaseException:
                await session.destroy()
                raise
            self.session, self.publisher = session, publisher
            self.feed, self.private_id = joined["id"], joined["private_id"]
            self.add_feeds(joined.get("publishers") or [])
            self.spawn(self.watch(), "watch")
            self.spawn(self.follow(), "follow")

    async def join(self, publisher: JanusHandle) -> dict:
        try:
            return await api.join_as_publisher(publisher, keys=self.keys, display=self.consumer.peer_id)
        except JanusError as error:
            if error.code != NO_SUCH_ROOM:
                raise
        # Janus restarted, and its rooms went with it: the call's room again, with the same number, secret and pin.
        try:
            await api.create_room(await janus.control_handle(), keys=self.keys, publishers=MAX_PARTICIPANTS,
                                  description=f"Parley call {self.consumer.call_id}")
            logger.info("sfu: Janus room %s of call %s made again", self.keys.room, self.consumer.call_id)
        except JanusError as error:
            if error.code != ROOM_EXISTS:  # another socket of the call made it again first
                raise
        return await api.join_as_publisher(publisher, keys=self.keys, display=self.consumer.peer_id)

    def lost(self) -> None:
        """The connection to Janus is gone, and with it this session: close the socket with 4503, which suspends the
        participation; the client resumes (with backoff) and starts again on a Janus that answers."""
        if self.closed or getattr(self.consumer, "sfu", None) is not self:
            return
        background(self._drop_socket(), f"sfu-lost-{self.consumer.peer_id}")

    async def _drop_socket(self) -> None:
        consumer = self.consumer
        if not consumer.joined:
            return
        logger.warning("sfu: peer %s: Janus is gone, closing with 4503", consumer.peer_id)
        await consumer.suspend(Reason.DISCONNECTED)
        await consumer.close(code=CloseCode.UNAVAILABLE, reason="media server unavailable")

    async def handle(self, message: SfuMessage) -> None:
        await self.start()
        if message.kind == "offer":
            request = api.configure if self.published else api.publish
            answer = await request(self.publisher, sdp=message.sdp)
            self.published = True
            self.consumer.push(protocol.encode({"type": "answer", "from": SFU, "sdp": answer}))
        elif message.kind == "answer":
            if self.subscriber is None or self.answered.is_set():
                raise ProtocolError(ErrorCode.BAD_MESSAGE, "There is no offer from the SFU to answer.")
            await api.start(self.subscriber, sdp=message.sdp)
            self.subscriber_ufrag = ufrag_of(message.sdp) or self.subscriber_ufrag
            self.answered.set()
        elif message.candidate is not None and message.candidate["candidate"]:
            candidate = message.candidate
            to_subscriber = self.subscriber is not None and candidate["usernameFragment"] == self.subscriber_ufrag
            handle = self.subscriber if to_subscriber else self.publisher
            await handle.trickle({key: candidate[key] for key in ("candidate", "sdpMid", "sdpMLineIndex")})
        # `candidate: null` (end of candidates) needs nothing: Janus does not wait for it.

    # --- the room's feeds ----------------------------------------------------------------------------------------

    def add_feeds(self, publishers: list[dict]) -> None:
        for publisher in publishers:
            feed, peer_id = publisher.get("id"), publisher.get("display")
            if feed == self.feed or publisher.get("dummy") or not publisher.get("streams") or not is_peer_id(peer_id):
                continue
            if peer_id == self.consumer.peer_id:
                continue
            self.feeds[feed] = peer_id
            self.changed.set()

    def drop_feed(self, feed) -> None:
        if self.feeds.pop(feed, None) is not None:
            # Janus takes a feed that went out of every subscription itself, and renegotiates (watch_subscriber).
            self.subscribed.discard(feed)
            self.changed.set()

    async def watch(self) -> None:
        """Janus's news on our publisher handle: feeds published and gone."""
        while True:
            event = await self.publisher.events.get()
            if event.get("janus") == "closed":
                self.lost()
                return
            data = (event.get("plugindata") or {}).get("data") or {}
            if data.get("publishers"):
                self.add_feeds(data["publishers"])
            for key in ("unpublished", "leaving", "kicked"):
                if isinstance(data.get(key), int):
                    self.drop_feed(data[key])

    async def watch_subscriber(self) -> None:
        """Janus's own news on our subscriber handle: when a feed we receive goes, Janus drops its streams and sends
        a new offer by itself (an `updated` event without a transaction), which goes on to the client."""
        while True:
            event = await self.subscriber.events.get()
            if event.get("janus") == "closed":
                return
            data = (event.get("plugindata") or {}).get("data") or {}
            jsep = event.get("jsep") or {}
            logger.debug("sfu: peer %s: subscriber event %s", self.consumer.peer_id, data)
            if jsep.get("type") == "offer":
                self.send_offer(jsep["sdp"], data.get("streams") or [])

    def send_offer(self, sdp: str, streams: list[dict]) -> None:
        self.answered.clear()
        self.consumer.push(protocol.encode({
            "type": "offer", "from": SFU, "sdp": sdp, "streams": self.stream_list(streams)}))

    async def follow(self) -> None:
        """Keep the subscription equal to the feeds of the room, one renegotiation at a time."""
        while True:
            await self.changed.wait()
            self.changed.clear()
            with suppress(asyncio.TimeoutError):  # a client that never answers does not stop the others' news
                await asyncio.wait_for(self.answered.wait(), ANSWER_WAIT_SECONDS)
            wanted = set(self.feeds)
            add, drop = sorted(wanted - self.subscribed), sorted(self.subscribed - wanted)
            if not add and not drop:
                continue
            try:
                if self.subscriber is None:
                    if not add:
                        continue
                    self.subscriber = await self.session.attach()
                    self.spawn(self.watch_subscriber(), "subscriber")
                    streams, offer = await api.join_as_subscriber(self.subscriber, keys=self.keys, feeds=add,
                                                                  private_id=self.private_id)
                else:
                    streams, offer = await api.update_subscription(self.subscriber, subscribe=add, unsubscribe=drop)
            except JanusError as error:
                if error.code == 0:
                    return
                logger.warning("sfu: peer %s: subscription +%s -%s refused: %s", self.consumer.peer_id, add, drop,
                               error)
                continue
            self.subscribed = (self.subscribed | set(add)) - set(drop)
            if offer is not None:
                self.send_offer(offer, streams)

    def stream_list(self, streams: list[dict]) -> list[dict]:
        listed = []
        for stream in streams:
            kind, feed = stream.get("type"), stream.get("feed_id")
            if kind in ("audio", "video") and stream.get("active", True) and feed in self.feeds:
                listed.append({"peer_id": self.feeds[feed], "mid": stream.get("mid"), "kind": kind})
        return listed

    async def close(self) -> None:
        self.closed = True
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with suppress(asyncio.CancelledError, Exception):
                await task
        if self.session is not None:
            await self.session.destroy()  # Janus closes our PeerConnections and tells the others our feed went
