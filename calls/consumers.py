"""The signaling consumer: authenticate, authorise, validate, relay and record. It never reads SDP."""

import asyncio
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from calls import liveness, protocol, services, tickets
from calls.ice import ice_servers_for
from calls.protocol import CLEAN_CLOSE_CODES, CloseCode, ErrorCode, ProtocolError
from calls.relay import Item
from calls.services import JoinRefused, Reason

logger = logging.getLogger(__name__)

# Joins and leaves mostly wait on database and cache round trips. Channels' default runs every such call in one
# thread, one after another; a small pool (a connection per thread) lets a thousand joins overlap.
db_threads = ThreadPoolExecutor(max_workers=settings.PARLEY_SIGNALING["DB_THREADS"], thread_name_prefix="parley-db")


def in_db_thread(func):
    return database_sync_to_async(func, thread_sensitive=False, executor=db_threads)


class TokenBucket:
    """Frames per second with a burst allowance; tracks how long the client has been flooding."""

    __slots__ = ("rate", "burst", "tokens", "updated", "limited_since")

    def __init__(self, rate: float, burst: int, now: float):
        self.rate, self.burst, self.tokens, self.updated = rate, burst, float(burst), now
        self.limited_since: float | None = None

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.limited_since = None
            return True
        if self.limited_since is None:
            self.limited_since = now
        return False


class SignalingConsumer(AsyncWebsocketConsumer):
    # Connections talk through calls.relay (one channel per process), not through a channel each.
    channel_layer_alias = "parley.none"

    peer_id = ""
    joined = False
    leave_reason = ""

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        except asyncio.CancelledError:
            # daphne cancels every connection when it shuts down: record ours as such.
            self.leave_reason = self.leave_reason or Reason.SERVER_SHUTDOWN
            await self.leave()
            raise

    async def dispatch(self, message):
        # Channels runs close_old_connections() in the database thread before every handler. Relayed frames
        # never touch the database, so they skip that hop; connect and disconnect keep it.
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    # --- joining -------------------------------------------------------------------------------------

    async def connect(self):
        await self.accept()  # first, so that a refusal can carry its close code
        limits = settings.PARLEY_SIGNALING
        self.max_frame_bytes = limits["MAX_FRAME_BYTES"]
        self.flood_grace = limits["FLOOD_GRACE_SECONDS"]
        self.loop = asyncio.get_running_loop()
        self.last_heard = self.loop.time()
        self.bucket = TokenBucket(limits["RATE_PER_SECOND"], limits["RATE_BURST"], self.last_heard)
        self.peers: dict[str, str] = {}  # peer id -> relay node, for every other peer of the call
        self.pending: list | None = []  # frames relayed to us before our welcome went out
        self.leave_reason = ""
        self.room_slug = self.scope["url_route"]["kwargs"]["slug"]

        if not self.scope.get("origin_allowed", True):
            await self.refuse(CloseCode.FORBIDDEN, "origin not allowed")
            return
        self.node = await liveness.get_node()
        self.peer_id = str(uuid.uuid4())
        self.node.register(self)  # before the row exists, so no frame for us can miss us
        try:
            joined, welcome, me = await in_db_thread(self.enter_call)()
        except JoinRefused as refusal:
            self.node.forget(self.peer_id)
            await self.refuse(refusal.close_code, str(refusal))
            return
        self.joined = True
        self.peers = {str(p.peer_id): p.relay_node for p in joined.others}
        await self.send(text_data=welcome)
        pending, self.pending = self.pending, None
        for item in pending:
            await self.relayed(item)
        joined_text = protocol.peer_joined_frame(me)
        for peer_id, node in list(self.peers.items()):
            await self.node.deliver(node=node, item=Item.joined(peer_id, joined_text, node=self.node.channel,
                                                                peer_id=self.peer_id))

    def enter_call(self) -> tuple[services.Joined, str, dict]:
        """Authenticate, join the call and build our welcome, in one trip to a database thread."""
        user = self.authenticate()
        if user is None:
            raise JoinRefused(CloseCode.NOT_AUTHENTICATED, "Not authenticated.")
        joined = services.join_call(room_slug=self.room_slug, user=user, peer_id=self.peer_id,
                                    relay_node=self.node.channel, user_agent=self.header(b"user-agent"))
        return joined, *self.welcome_frames(joined)

    def authenticate(self):
        ticket = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get("ticket")
        if ticket:
            return tickets.redeem_ticket(ticket=ticket[0], room_slug=self.room_slug)
        user = self.scope.get("user")
        return user if user is not None and user.is_authenticated else None

    def welcome_frames(self, joined: services.Joined) -> tuple[str, dict]:
        participant = joined.participant
        welcome = protocol.welcome_frame(peer_id=self.peer_id, call_id=participant.call_id,
                                         room=participant.call.room, others=joined.others,
                                         ice_servers=ice_servers_for(participant.user))
        return welcome, protocol.peer_object(participant, polite=False)

    async def refuse(self, code: int, reason: str) -> None:
        logger.info("signaling refused for %s: %s (%s)", self.scope.get("path"), reason, code)
        await self.close(code=code, reason=reason)

    def header(self, name: bytes) -> str:
        for key, value in self.scope.get("headers", ()):
            if key == name:
                return value.decode("latin-1")
        return ""

    # --- frames from the client ----------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        if not self.joined:
            return
        now = self.loop.time()
        self.last_heard = now
        if not self.bucket.take(now):
            if now - self.bucket.limited_since >= self.flood_grace:
                await self.end(CloseCode.FLOODING, Reason.DISCONNECTED, "flooding")
            else:
                await self.send(text_data=protocol.error_frame(ErrorCode.RATE_LIMITED, "Slow down."))
            return
        try:
            if text_data is None:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, "Binary frames are not part of the protocol.")
            # A character takes 1 to 4 bytes: measure precisely only near the limit.
            if len(text_data) * 4 > self.max_frame_bytes and len(text_data.encode()) > self.max_frame_bytes:
                raise ProtocolError(ErrorCode.TOO_LARGE, f"Frames are limited to {self.max_frame_bytes} bytes.")
            message = protocol.parse_client_message(protocol.decode(text_data))
            await self.handle(message)
        except ProtocolError as error:
            await self.send(text_data=protocol.error_frame(error.code, error.detail))
        except Exception:
            logger.exception("signaling: peer %s in %s: handler failed", self.peer_id, self.room_slug)
            await self.end(CloseCode.SERVER_ERROR, Reason.DISCONNECTED, "server error")

    async def handle(self, message: protocol.ClientMessage) -> None:
        if type(message) is protocol.Relay:
            node = self.peers.get(message.to)
            if node is None:
                raise ProtocolError(ErrorCode.UNKNOWN_PEER, "No such peer in this call.")
            message.frame["from"] = self.peer_id
            item = Item.frame(message.to, protocol.encode(message.frame), sender=self.peer_id)
            if not await self.node.deliver(node=node, item=item):
                raise ProtocolError(ErrorCode.UNDELIVERABLE, "The peer is leaving.")
        elif type(message) is protocol.Ping:
            await self.send(text_data=protocol.PONG)
        elif type(message) is protocol.MediaState:
            await database_sync_to_async(services.record_media_state)(
                peer_id=self.peer_id, audio=message.audio, video=message.video, screen=message.screen
            )
            text = protocol.media_state_frame(peer_id=self.peer_id, state=message)
            for peer_id, node in list(self.peers.items()):
                await self.node.deliver(node=node, item=Item.frame(peer_id, text))

    # --- frames from the relay -----------------------------------------------------------------------

    async def relayed(self, item: Item) -> None:
        if self.pending is not None:
            self.pending.append(item)
            return
        kind = item.kind
        if kind == Item.FRAME:
            await self.send(text_data=item.text)
        elif kind == Item.JOINED:
            node, peer_id = item.extra
            self.peers[peer_id] = node
            await self.send(text_data=item.text)
        elif kind == Item.LEFT:
            self.peers.pop(item.extra, None)
            await self.send(text_data=item.text)
        elif kind == Item.CLOSE:
            code, reason = item.extra
            await self.end(code, reason, reason)

    async def time_out(self) -> None:
        await self.end(CloseCode.TIMED_OUT, Reason.TIMED_OUT, "silent for too long")

    async def shut_down(self) -> None:
        await self.end(CloseCode.SERVICE_RESTART, Reason.SERVER_SHUTDOWN, "server restarting")

    # --- leaving -------------------------------------------------------------------------------------

    async def end(self, code: int, reason: str, detail: str) -> None:
        """Close our socket, recording `reason` as the leave reason."""
        if not self.leave_reason:
            self.leave_reason = reason
        await self.leave()  # recorded and announced before the client sees the close
        await self.close(code=code, reason=detail)

    async def disconnect(self, code):
        if code == CloseCode.SERVICE_RESTART:  # uvicorn closes every socket with 1012 when it stops
            reason = Reason.SERVER_SHUTDOWN
        else:
            reason = Reason.LEFT if code in CLEAN_CLOSE_CODES else Reason.DISCONNECTED
        await self.leave(reason=reason)

    async def leave(self, reason: str = "") -> None:
        if not self.joined:
            return
        self.joined = False
        self.node.forget(self.peer_id)
        reason = self.leave_reason or reason or Reason.DISCONNECTED
        # Shielded, and known to the node: a shutdown cancels connections, but their leaves must still be
        # written and announced before the process exits.
        recording = asyncio.ensure_future(self.record_leave(reason))
        self.node.track_leave(recording)
        await asyncio.shield(recording)

    async def record_leave(self, reason: str) -> None:
        try:
            await in_db_thread(services.leave_call)(peer_id=self.peer_id, reason=reason)
        finally:
            text = protocol.peer_left_frame(peer_id=self.peer_id, reason=reason)
            for peer_id, node in list(self.peers.items()):
                await self.node.deliver(node=node, item=Item.left(peer_id, text, peer_id=self.peer_id))
