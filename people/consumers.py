"""The per-user socket, /ws/me/: presence, rings and live rooms (docs/signaling.md, "The per-user socket").

Every socket of a user joins the channel-layer group `user.<id>`, so what people.services sends reaches every tab on
every server process. The socket is registered with the process's relay node (calls.relay) for liveness only:
a socket that goes silent is timed out like a room socket (calls.liveness), and a stopping server closes it.
"""

import asyncio
import logging
import uuid
import weakref
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from calls import liveness, protocol, relay, tickets
from calls.consumers import TokenBucket
from calls.protocol import CloseCode, ErrorCode, ProtocolError
from people import services

logger = logging.getLogger(__name__)

_swept: "weakref.WeakSet[relay.Node]" = weakref.WeakSet()  # the nodes whose sweep runs


def ensure_sweep(node: relay.Node) -> None:
    """Each process with /ws/me/ sockets sweeps every few seconds: rings that ran out, sockets of dead processes."""
    if node not in _swept:
        _swept.add(node)
        node.run(sweep_loop(), name="people-sweep")


async def sweep_loop() -> None:
    every = settings.PARLEY_SIGNALING["NODE_BEAT_SECONDS"]
    while True:
        await asyncio.sleep(every)
        try:
            await database_sync_to_async(services.sweep)()
        except Exception:
            logger.exception("people: sweep failed")


def parse_me_message(raw: object) -> str:
    """The one client frame of /ws/me/ is `ping`; anything else is refused with a documented code."""
    kind = raw.get("type")
    if kind == "ping":
        return kind
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "Every frame needs a string 'type'.")
    raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"Unknown frame type {kind[:40]!r}.")


class MeConsumer(AsyncWebsocketConsumer):
    """One /ws/me/ socket of one user (a tab)."""

    user = None
    group = ""
    registered = False
    peers: dict = {}  # what the relay node's liveness loop reads of a socket: a /ws/me/ socket has no peers

    async def connect(self):
        await self.accept()  # first, so that a refusal can carry its close code
        limits = settings.PARLEY_SIGNALING
        self.loop = asyncio.get_running_loop()
        self.last_heard = self.loop.time()
        self.bucket = TokenBucket(limits["RATE_PER_SECOND"], limits["RATE_BURST"], self.last_heard)
        self.max_frame_bytes = limits["MAX_FRAME_BYTES"]
        self.flood_grace = limits["FLOOD_GRACE_SECONDS"]
        self.peer_id = str(uuid.uuid4())  # its key in the relay node's registry
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
        ensure_sweep(self.node)
        self.group = services.user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.node.register(self)
        self.registered = True
        welcome = await database_sync_to_async(self.open)()
        await self.send(text_data=welcome)

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
        services.open_me_socket(user=self.user, channel_name=self.channel_name, node=self.node.channel)
        return protocol.encode({"type": "welcome", "user": protocol.user_object(self.user), "presence":
                                services.presence_of(self.user.pk), "rings": services.ringing_for(self.user)})

    async def receive(self, text_data=None, bytes_data=None):
        if not self.registered:
            return
        now = self.loop.time()
        self.last_heard = now
        if not self.bucket.take(now):
            if now - self.bucket.limited_since >= self.flood_grace:
                await self.close(code=int(CloseCode.FLOODING), reason="flooding")
            else:
                await self.send(text_data=protocol.error_frame(ErrorCode.RATE_LIMITED, "Slow down."))
            return
        try:
            if text_data is None:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, "Binary frames are not part of the protocol.")
            if len(text_data) * 4 > self.max_frame_bytes and len(text_data.encode()) > self.max_frame_bytes:
                raise ProtocolError(ErrorCode.TOO_LARGE, f"Frames are limited to {self.max_frame_bytes} bytes.")
            parse_me_message(protocol.decode(text_data))
            await self.send(text_data=protocol.PONG)
        except ProtocolError as error:
            await self.send(text_data=protocol.error_frame(error.code, error.detail))

    async def me_frame(self, event):
        """A frame from people.services for this user (channel-layer group `user.<id>`)."""
        if self.registered:
            await self.send(text_data=event["text"])

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

    async def disconnect(self, code):
        await self.forget()

    async def forget(self) -> None:
        """Once per socket: out of the group and the registry, and offline if it was the user's last one."""
        if not self.registered:
            return
        self.registered = False
        self.node.forget(self)
        await self.channel_layer.group_discard(self.group, self.channel_name)
        await asyncio.shield(database_sync_to_async(services.close_me_socket)(channel_name=self.channel_name))
