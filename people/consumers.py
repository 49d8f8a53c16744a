"""The per-user socket, /ws/me/: presence, rings and live rooms (docs/signaling.md, "The per-user socket").

What people.services sends to a user goes to the channel-layer group `user.<id>`. Its members are the channels of
the server processes' relay nodes (calls.relay) that hold a socket of that user, not one channel per socket: the
node's one receiving channel hands each message to the process's `Hub`, which sends it to the user's sockets here
(every tab, on every process). A socket is also registered with the relay node for liveness: one that goes silent
is timed out like a room socket (calls.liveness), and a stopping server closes it.
"""

import asyncio
import logging
import uuid
import weakref
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from calls import liveness, metrics, protocol, relay, tickets
from calls.consumers import TokenBucket
from calls.outgoing import QueuedSender
from calls.protocol import CloseCode, ErrorCode, ProtocolError
from people import delivery, presence, services

logger = logging.getLogger(__name__)

GROUP_REFRESH_SECONDS = 3600  # channels-redis forgets group members after a day: the hub re-adds its own


class Hub:
    """The /ws/me/ sockets of one server process, by user; the relay node's channel is in the groups of those users."""

    def __init__(self, node: relay.Node):
        self.node = node
        self.sockets: dict[int, set["MeConsumer"]] = {}

    async def add(self, socket: "MeConsumer") -> None:
        sockets = self.sockets.setdefault(socket.user.pk, set())
        sockets.add(socket)
        if len(sockets) == 1:
            await self.node.layer.group_add(delivery.user_group(socket.user.pk), self.node.channel)

    async def remove(self, socket: "MeConsumer") -> None:
        sockets = self.sockets.get(socket.user.pk, set())
        sockets.discard(socket)
        if not sockets and self.sockets.pop(socket.user.pk, None) is not None:
            await self.node.layer.group_discard(delivery.user_group(socket.user.pk), self.node.channel)

    async def received(self, message: dict) -> None:
        """A group message on the node's channel (calls.relay.Node.on_message)."""
        kind = message.get("type")
        for socket in list(self.sockets.get(message.get("user"), ())):
            if kind == "me.frame":
                await socket.deliver(message["text"])
            elif kind == "me.close":
                await socket.close(code=int(CloseCode.NOT_AUTHENTICATED), reason="signed out")
                await socket.forget()

    async def sweep_loop(self) -> None:
        """Every few seconds: rings that ran out, sockets of dead processes; now and then, the group memberships."""
        every = settings.PARLEY_SIGNALING["NODE_BEAT_SECONDS"]
        loop = asyncio.get_running_loop()
        refreshed = loop.time()
        while True:
            await asyncio.sleep(every)
            try:
                await database_sync_to_async(services.sweep)()
                if loop.time() - refreshed > GROUP_REFRESH_SECONDS:
                    refreshed = loop.time()
                    for user_id in list(self.sockets):
                        await self.node.layer.group_add(delivery.user_group(user_id), self.node.channel)
            except Exception:
                logger.exception("people: sweep failed")


_hubs: "weakref.WeakKeyDictionary[relay.Node, Hub]" = weakref.WeakKeyDictionary()


def hub_for(node: relay.Node) -> Hub:
    hub = _hubs.get(node)
    if hub is None:
        hub = _hubs[node] = Hub(node)
        node.on_message = hub.received
        node.run(hub.sweep_loop(), name="people-sweep")
    return hub


def parse_me_message(raw: object) -> str:
    """The one client frame of /ws/me/ is `ping`; anything else is refused with a documented code."""
    kind = raw.get("type")
    if kind == "ping":
        return kind
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "Every frame needs a string 'type'.")
    raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"Unknown frame type {kind[:40]!r}.")


class MeConsumer(QueuedSender, AsyncWebsocketConsumer):
    """One /ws/me/ socket of one user (a tab)."""

    # Frames for it come through the process's relay node and Hub, not through a channel of its own.
    channel_layer_alias = "parley.none"

    user = None
    registered = False
    counted = False  # in the open-sockets gauge
    peers: dict = {}  # what the relay node's liveness loop reads of a socket: a /ws/me/ socket has no peers

    async def connect(self):
        await self.accept()  # first, so that a refusal can carry its close code
        metrics.ME_SOCKETS.inc()
        self.counted = True
        limits = settings.PARLEY_SIGNALING
        self.loop = asyncio.get_running_loop()
        self.last_heard = self.loop.time()
        self.bucket = TokenBucket(limits["RATE_PER_SECOND"], limits["RATE_BURST"], self.last_heard)
        self.max_frame_bytes = limits["MAX_FRAME_BYTES"]
        self.flood_grace = limits["FLOOD_GRACE_SECONDS"]
        self.peer_id = str(uuid.uuid4())  # its key in the relay node's registry, and its socket's name
        self.channel_name = f"me.{self.peer_id}"
        # Sent through a queue and a writer of its own (calls.outgoing): the hub hands a frame to every socket of
        # a user on the relay node's receiving loop, which must never wait for a client that does not read.
        self.start_writer(slow_bytes=limits["SLOW_BYTES"], slow_seconds=limits["SLOW_SECONDS"],
                          name=f"me-writer-{self.peer_id}")
        if not self.scope.get("origin_allowed", True):
            await self.close(code=int(CloseCode.FORBIDDEN), reason="origin not allowed")
            return
        ticket = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get("ticket", [""])[0]
        try:
            user = await database_sync_to_async(self.authenticate)(ticket)
        except ConnectionError:
            await self.close(code=int(CloseCode.UNAVAILABLE), reason="try again in a moment")
            return
        if user is None:
            await self.close(code=int(CloseCode.NOT_AUTHENTICATED), reason="not authenticated")
            return
        self.user = user
        self.node = await liveness.get_node()
        self.hub = hub_for(self.node)
        self.pending: list[str] | None = []  # frames that came before the welcome went out
        self.node.register(self)
        self.registered = True
        try:
            await self.hub.add(self)
        except Exception:  # the channel layer (Redis) is down
            logger.exception("/ws/me/: could not join the user's group")
            await self.forget()
            await self.close(code=int(CloseCode.UNAVAILABLE), reason="try again in a moment")
            return
        welcome = await database_sync_to_async(self.open)()
        self.push(welcome)
        pending, self.pending = self.pending, None
        for text in pending:
            self.push(text)

    def authenticate(self, ticket: str):
        if ticket:
            try:
                return tickets.redeem_ticket(ticket=ticket, room_slug=tickets.ME)
            except Exception:  # the cache (Redis) is down: the ticket cannot be checked
                logger.exception("/ws/me/: a ticket could not be redeemed")
                raise ConnectionError from None
        user = self.scope.get("user")
        return user if user is not None and user.is_authenticated else None

    def open(self) -> str:
        presence.open_me_socket(user=self.user, channel_name=self.channel_name, node=self.node.channel)
        return protocol.encode({"type": "welcome", "user": protocol.user_object(self.user), "presence":
                                presence.presence_of(self.user.pk), "rings": services.ringing_for(self.user)})

    async def receive(self, text_data=None, bytes_data=None):
        if not self.registered:
            return
        now = self.loop.time()
        self.last_heard = now
        if not self.bucket.take(now):
            if now - self.bucket.limited_since >= self.flood_grace:
                await self.close(code=int(CloseCode.FLOODING), reason="flooding")
            else:
                self.push(protocol.error_frame(ErrorCode.RATE_LIMITED, "Slow down."))
            return
        try:
            if text_data is None:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, "Binary frames are not part of the protocol.")
            if len(text_data) * 4 > self.max_frame_bytes and len(text_data.encode()) > self.max_frame_bytes:
                raise ProtocolError(ErrorCode.TOO_LARGE, f"Frames are limited to {self.max_frame_bytes} bytes.")
            parse_me_message(protocol.decode(text_data))
            self.push(protocol.PONG)
        except ProtocolError as error:
            self.push(protocol.error_frame(error.code, error.detail))

    async def deliver(self, text: str) -> None:
        """A frame from people.services for this user (group `user.<id>`, through the Hub)."""
        if not self.registered:
            return
        if self.pending is not None:
            self.pending.append(text)
        else:
            self.push(text)

    # What the relay node asks of the sockets it holds (calls.relay.LocalPeer).

    async def relayed(self, item) -> None:
        return None

    async def nodes_died(self, nodes) -> None:
        return None

    async def time_out(self) -> None:
        await self.close(code=int(CloseCode.TIMED_OUT), reason="silent for too long")
        await self.forget()

    async def shut_down(self) -> None:
        await self.close(code=int(CloseCode.RESTARTING), reason="server restarting")
        await self.forget()

    async def close(self, code=None, reason=None):
        await self.drain()  # what was queued goes out first
        self.stop_writer()
        await super().close(code=code, reason=reason)

    async def close_slow(self) -> None:
        await self.close(code=int(CloseCode.TOO_SLOW), reason="not reading")
        await self.forget()

    async def disconnect(self, code):
        if self.counted:
            self.counted = False
            metrics.ME_SOCKETS.dec()
        self.stop_writer()
        await self.forget()

    async def forget(self) -> None:
        """Once per socket: out of the group and the registry, and offline if it was the user's last one."""
        if not self.registered:
            return
        self.registered = False
        self.node.forget(self)
        try:
            await self.hub.remove(self)
        except Exception:
            logger.exception("/ws/me/: could not leave the user's group")
        await asyncio.shield(database_sync_to_async(presence.close_me_socket)(channel_name=self.channel_name))
