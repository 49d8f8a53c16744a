"""Deliver signaling frames to peers by peer id, in this server process or in another one.

This is the hot path, so it answers one question cheaply: "deliver this item to peer X of node N".
Each server process runs one `Node`: a registry of the peers connected to it and one channel on the channel
layer (its address, stored on the participant row as `relay_node`). An item for a peer of the same process is
handed to its consumer directly. Items for other processes are queued per node and sent as one channel-layer
message per node and event-loop turn, so Redis round trips are shared by every frame of a burst. A full channel
(`ChannelFull`) or a peer that is gone by the time its frame arrives is reported to the sender as
`undeliverable`: no frame is dropped silently. No database, and no settings lookups per frame, in here.
"""

import asyncio
import logging
import sys
from typing import Any, NamedTuple, Protocol

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from redis.exceptions import ConnectionError as RedisConnectionError

from calls import protocol, sync_sender

logger = logging.getLogger(__name__)

BATCH = "relay.batch"


class Item(NamedTuple):
    """One thing for one peer. A tuple, so that it crosses the channel layer (msgpack) as a plain array."""

    kind: str  # one of the constants below
    to: str  # the peer id it is for
    text: str | None  # the frame to send, if any
    extra: Any  # per kind: JOINED [node, peer id], STATE [node, peer id, state, socket], LEFT the peer id,
    #             CLOSE [close code, leave reason]
    from_node: str = ""  # where an undeliverable frame is reported
    sender: str = ""  # the peer id to report it to ("" for server-made frames: not reported)

    FRAME = "frame"  # send `text`
    JOINED = "joined"  # remember the peer in `extra`, then send `text` (peer-joined)
    STATE = "state"  # the peer in `extra` [node, peer id, state, socket] is reconnecting or back (peer-state);
    #                  socket: how many times it had resumed, so that news of an older socket is not taken as new
    LEFT = "left"  # forget the peer in `extra`, then send `text` (peer-left)
    CLOSE = "close"  # close the socket with `extra` = [close code, leave reason]

    @classmethod
    def frame(cls, to: str, text: str, *, sender: str = "", from_node: str = "") -> "Item":
        return cls(cls.FRAME, to, text, None, from_node, sender)

    @classmethod
    def joined(cls, to: str, text: str, *, node: str, peer_id: str) -> "Item":
        return cls(cls.JOINED, to, text, [node, peer_id])

    @classmethod
    def state(cls, to: str, text: str, *, node: str, peer_id: str, state: str, socket: int) -> "Item":
        return cls(cls.STATE, to, text, [node, peer_id, state, socket])

    @classmethod
    def left(cls, to: str, text: str, *, peer_id: str) -> "Item":
        return cls(cls.LEFT, to, text, peer_id)

    @classmethod
    def close(cls, to: str, *, code: int, reason: str) -> "Item":
        return cls(cls.CLOSE, to, None, [int(code), reason])


class LocalPeer(Protocol):
    """What a node needs of a connection it holds (the signaling consumer)."""

    peer_id: str
    last_heard: float  # loop time of the last frame received from the client

    async def relayed(self, item: Item) -> None: ...

    async def time_out(self) -> None: ...

    async def shut_down(self) -> None: ...

    async def nodes_died(self, nodes: set[str]) -> None: ...

    def is_stalled(self, now: float) -> bool: ...

    def too_slow(self, why: str) -> None: ...


async def _bounce_missing(node: "Node", item: Item) -> bool:
    return False


class Node:
    def __init__(self, layer, *, shutdown_seconds: float = 30.0):
        self.layer = layer
        self.channel = ""
        self.shutdown_seconds = shutdown_seconds  # how long a stopping server may take to record its leaves
        self.peers: dict[str, LocalPeer] = {}
        self.joining = 0  # sockets between their accept and their welcome (calls.consumers admits a bounded number)
        self._leaving: set[asyncio.Future] = set()  # leaves being recorded: a shutdown waits for them
        self._outbox: dict[str, list] = {}
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        # What to do with a frame for a peer that is not here (any more): True if handled, False to report it
        # to its sender as undeliverable. Liveness replaces it to keep frames for suspended peers.
        self.on_missing = _bounce_missing
        # Messages on the node's channel that are not relay batches: the group sends of apps built on calls (the
        # node's channel is a member of their groups, e.g. people's `user.<id>`), handed to the app's hook.
        self.on_message = None

    async def start(self) -> None:
        self.channel = await self.layer.new_channel("relay")
        self.run(self._receive_loop(), name="relay-receive")
        self.run(self._send_loop(), name="relay-send")

    def run(self, coroutine, *, name: str) -> asyncio.Task:
        """Run a background task for as long as the node runs (liveness attaches its loops here)."""
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.append(task)
        return task

    async def shut_down(self) -> None:
        """The server process is stopping: end its connections (recorded as server-shutdown), tell the peers
        elsewhere, and send what is queued before the process exits, even if the leaves took too long."""
        peers = list(self.peers.values())
        logger.info("relay node %s: server shutting down, closing %d connection(s)", self.channel, len(peers))
        try:
            await asyncio.wait_for(asyncio.gather(*(peer.shut_down() for peer in peers), *self._leaving,
                                                  return_exceptions=True), self.shutdown_seconds)
        except TimeoutError:
            logger.warning("relay node %s: leaves still unrecorded after %.0f s", self.channel,
                           self.shutdown_seconds)
        finally:
            await self.flush()
            await asyncio.sleep(0.2)  # let the server write the close frames before its event loop stops
            await self.stop()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- the peers held here --------------------------------------------------------------------------

    def register(self, peer: LocalPeer) -> None:
        self.peers[peer.peer_id] = peer

    def forget(self, peer: LocalPeer) -> None:
        if self.peers.get(peer.peer_id) is peer:
            del self.peers[peer.peer_id]

    def track_leave(self, recording: asyncio.Future) -> None:
        """A leave being written: a shutdown waits for it before the process exits."""
        self._leaving.add(recording)
        recording.add_done_callback(self._leaving.discard)

    # --- sending ----------------------------------------------------------------------------------------

    async def deliver(self, *, node: str, item: Item) -> bool:
        """Hand an item to a peer of `node`. False when the peer is known to be gone (same process only)."""
        if node == self.channel:
            peer = self.peers.get(item.to)
            if peer is None:
                return False
            await peer.relayed(item)
            return True
        items = self._outbox.get(node)
        if items is None:
            items = self._outbox[node] = []
            self._wake.set()
        items.append(item if item.from_node else item._replace(from_node=self.channel))
        return True

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            # Items queued while these sends are under way form the next batch.
            await self.flush()

    async def flush(self) -> None:
        """Send every queued batch now (after the batches already on their way)."""
        async with self._flushing:
            self._wake.clear()
            outbox, self._outbox = self._outbox, {}
            await asyncio.gather(*(self._send_batch(node, items) for node, items in outbox.items()))

    async def _send_batch(self, node: str, items: list[Item]) -> None:
        try:
            try:
                await self.layer.send(node, {"type": BATCH, "items": items})
            except (ConnectionError, OSError, RedisConnectionError):
                # A pooled connection that died with a Redis restart fails once; a fresh one may not.
                await self.layer.send(node, {"type": BATCH, "items": items})
            return
        except ChannelFull:
            logger.warning("relay channel %s is full: %d items undeliverable", node, len(items))
            detail = "The peer's server cannot take more frames right now (its channel is full)."
        except Exception:
            logger.exception("relay to %s failed: %d items undeliverable", node, len(items))
            detail = "The peer's server could not be reached."
        for item in items:
            if item.kind == Item.FRAME and item.sender:
                await self._bounce(self.channel, item, detail)

    async def _bounce(self, node: str, item: Item, detail: str) -> None:
        text = protocol.error_frame(protocol.ErrorCode.UNDELIVERABLE, f"Peer {item.to}: {detail}")
        await self.deliver(node=node, item=Item.frame(item.sender, text))

    # --- receiving --------------------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("relay node %s: receive failed; retrying", self.channel)
                await asyncio.sleep(1)
                continue
            if message.get("type") != BATCH:
                await self._other(message)
                continue
            for raw in message.get("items", ()):
                item = Item(*raw)
                peer = self.peers.get(item.to)
                try:
                    if peer is not None:
                        await peer.relayed(item)
                    elif item.kind == Item.FRAME and item.sender and not await self.on_missing(self, item):
                        await self._bounce(item.from_node, item, "The peer has left.")
                except Exception:
                    logger.exception("relay node %s: delivering to %s failed", self.channel, item.to)

    async def _other(self, message: dict) -> None:
        if self.on_message is None:
            return
        try:
            await self.on_message(message)
        except Exception:
            logger.exception("relay node %s: handling %s failed", self.channel, message.get("type"))


_nodes: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}


async def get_node() -> Node:
    """This process's node (one per event loop), started on first use."""
    loop = asyncio.get_running_loop()
    starting = _nodes.get(loop)
    if starting is None:
        starting = _nodes[loop] = loop.create_task(_start_node())
    return await asyncio.shield(starting)


async def _start_node() -> Node:
    from django.conf import settings  # read once, when the node starts

    node = Node(get_channel_layer(), shutdown_seconds=settings.PARLEY_SIGNALING["SHUTDOWN_SECONDS"])
    await node.start()
    logger.info("relay node %s started", node.channel)
    _shut_down_with_daphne(node)
    return node


def _shut_down_with_daphne(node: Node) -> None:
    """Under daphne (Twisted), shut the node down before the reactor stops, so that a restart is recorded.

    daphne's own shutdown hook cancels every connection, but it fails on a connection that never sent a request
    (a port probe, a balancer's health check) and then nothing is recorded; ours runs regardless.
    """
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None or not reactor.running:
        return
    from twisted.internet.defer import Deferred

    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: Deferred.fromFuture(asyncio.ensure_future(node.shut_down()))
    )


async def stop_node() -> None:
    starting = _nodes.pop(asyncio.get_running_loop(), None)
    if starting is not None:
        await (await starting).stop()


# --- From synchronous code (services, views, commands) ---------------------------------------------------


def send_items(node: str, items: list[Item]) -> None:
    """Send items to a node from synchronous code. A failure is logged, never raised: the caller's change is
    committed already, and the peers it concerns are reaped if they cannot be told."""
    if not node:
        return
    async def send(layer):
        await layer.send(node, {"type": BATCH, "items": items})

    try:
        sync_sender.sender.run(send)
    except ChannelFull:
        logger.warning("relay channel %s is full: %d control items not sent", node, len(items))
    except Exception:
        logger.exception("relay to %s failed: %d control items not sent", node, len(items))


def close_peer(*, node: str, peer_id: str, code: int, reason: str) -> None:
    send_items(node, [Item.close(peer_id, code=code, reason=reason)])


def announce_left(*, targets: list[tuple[str, str]], peer_id: str, text: str) -> None:
    """Send a peer-left `text` to (node, peer id) targets, one message per node, so they forget `peer_id`."""
    by_node: dict[str, list[Item]] = {}
    for node, target in targets:
        by_node.setdefault(node, []).append(Item.left(target, text, peer_id=peer_id))
    for node, items in by_node.items():
        send_items(node, items)
