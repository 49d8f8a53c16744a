"""Deliver signaling frames to peers by peer id, in this server process or in another one.

This is the hot path, so it answers one question cheaply: "deliver this text to peer X of node N".
Each server process runs one `Node`: a registry of the peers connected to it and one channel on the channel
layer (its address, stored on the participant row as `relay_node`). A frame for a peer of the same process is
handed to its consumer directly. Frames for other processes are queued per node and sent as one channel-layer
message per node and event-loop turn, so Redis round trips are shared by every frame of a burst. A full channel
(`ChannelFull`) or a peer that is gone by the time its frame arrives is reported to the sender as
`undeliverable`: no frame is dropped silently. No database, no settings in here per frame.

Items on the wire: [kind, to_peer, text, extra, from_node, from_peer], kind one of
  "f" frame: send `text` to the peer;
  "j" joined: remember peer `extra` (its node) then send `text` (peer-joined);
  "l" left: forget peer `extra` then send `text` (peer-left);
  "c" close: close the peer's socket, `extra` = [close code, leave reason].
"""

import asyncio
import logging
import sys
from typing import Protocol

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer

from calls import protocol

logger = logging.getLogger(__name__)

BATCH = "relay.batch"
HEARTBEAT_SECONDS = 20.0  # how often a node refreshes its peers' rows and looks for silent peers
REAP_EVERY = 3  # heartbeats between two opportunistic reaper runs
SHUTDOWN_SECONDS = 30.0  # how long a stopping server may take to record its peers' leaves


class LocalPeer(Protocol):
    peer_id: str
    last_heard: float  # loop time of the last frame received from the client

    async def relayed(self, kind: str, text: str | None, extra) -> None: ...

    async def time_out(self) -> None: ...

    async def shut_down(self) -> None: ...


class Node:
    def __init__(self, layer):
        self.layer = layer
        self.channel = ""
        self.peers: dict[str, LocalPeer] = {}
        self.leaving: set[asyncio.Future] = set()  # leaves being recorded: a shutdown waits for them
        self._outbox: dict[str, list] = {}
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self.channel = await self.layer.new_channel("relay")
        self._tasks = [
            asyncio.create_task(self._receive_loop(), name="relay-receive"),
            asyncio.create_task(self._send_loop(), name="relay-send"),
            asyncio.create_task(self._housekeeping_loop(), name="relay-housekeeping"),
        ]

    async def shut_down(self) -> None:
        """The server process is stopping: end its connections (recorded as server-shutdown), tell the peers
        elsewhere, and send what is queued before the process exits."""
        peers = list(self.peers.values())
        logger.info("relay node %s: server shutting down, closing %d connection(s)", self.channel, len(peers))
        await asyncio.wait_for(asyncio.gather(*(peer.shut_down() for peer in peers), *self.leaving,
                                              return_exceptions=True), SHUTDOWN_SECONDS)
        await self.flush()
        await self.stop()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- sending -----------------------------------------------------------------------------------

    async def deliver(self, node: str, peer_id: str, kind: str, text: str | None, extra=None,
                      sender: str = "") -> bool:
        """Hand a frame to a peer. False when the peer is known to be gone (same process only)."""
        if node == self.channel:
            peer = self.peers.get(peer_id)
            if peer is None:
                return False
            await peer.relayed(kind, text, extra)
            return True
        items = self._outbox.get(node)
        if items is None:
            items = self._outbox[node] = []
            self._wake.set()
        items.append((kind, peer_id, text, extra, self.channel, sender))
        return True

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            # Frames queued while these sends are under way form the next batch.
            await self.flush()

    async def flush(self) -> None:
        """Send every queued batch now (after the batches already on their way)."""
        async with self._flushing:
            self._wake.clear()
            outbox, self._outbox = self._outbox, {}
            await asyncio.gather(*(self._send_batch(node, items) for node, items in outbox.items()))

    async def _send_batch(self, node: str, items: list) -> None:
        try:
            await self.layer.send(node, {"type": BATCH, "items": items})
            return
        except ChannelFull:
            logger.warning("relay channel %s is full: %d frames undeliverable", node, len(items))
            detail = "The peer's server cannot take more frames right now (its channel is full)."
        except Exception:
            logger.exception("relay to %s failed: %d frames undeliverable", node, len(items))
            detail = "The peer's server could not be reached."
        for kind, peer_id, _text, _extra, _node, sender in items:
            if kind == "f" and sender:
                await self._bounce(self.channel, sender, peer_id, detail)

    async def _bounce(self, node: str, sender: str, peer_id: str, detail: str) -> None:
        await self.deliver(node, sender, "f", protocol.error_frame(protocol.ErrorCode.UNDELIVERABLE,
                                                                   f"Peer {peer_id}: {detail}"))

    # --- receiving ---------------------------------------------------------------------------------

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
            for kind, peer_id, text, extra, from_node, sender in message.get("items", ()):
                peer = self.peers.get(peer_id)
                try:
                    if peer is not None:
                        await peer.relayed(kind, text, extra)
                    elif kind == "f" and sender:
                        await self._bounce(from_node, sender, peer_id, "The peer has left.")
                except Exception:
                    logger.exception("relay node %s: delivering to %s failed", self.channel, peer_id)

    # --- liveness ----------------------------------------------------------------------------------

    async def _housekeeping_loop(self) -> None:
        from calls import services  # services import this module

        loop = asyncio.get_running_loop()
        beat = 0
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            beat += 1
            try:
                await database_sync_to_async(services.touch_participants)(peer_ids=list(self.peers))
                deadline = loop.time() - services.peer_timeout()
                for peer in [p for p in self.peers.values() if p.last_heard < deadline]:
                    await peer.time_out()
                if beat % REAP_EVERY == 0:
                    await database_sync_to_async(services.reap_stale_participants)()
            except Exception:
                logger.exception("relay node %s: housekeeping failed", self.channel)


_nodes: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}


async def get_node() -> Node:
    """This process's node (one per event loop), started on first use."""
    loop = asyncio.get_running_loop()
    starting = _nodes.get(loop)
    if starting is None:
        starting = _nodes[loop] = loop.create_task(_start_node())
    return await asyncio.shield(starting)


async def _start_node() -> Node:
    node = Node(get_channel_layer())
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


def send_items(node: str, items: list) -> None:
    """From synchronous code (views, commands, services): send control items to a node."""
    if not node:
        return
    try:
        async_to_sync(get_channel_layer().send)(node, {"type": BATCH, "items": items})
    except ChannelFull:
        logger.warning("relay channel %s is full: %d control items not sent", node, len(items))


def close_peer(*, node: str, peer_id: str, code: int, reason: str) -> None:
    send_items(node, [("c", peer_id, None, [code, reason], "", "")])


def announce_left(*, targets: list[tuple[str, str]], peer_id: str, text: str) -> None:
    """Send a peer-left `text` to (node, peer id) targets, one message per node, so they forget `peer_id`."""
    by_node: dict[str, list] = {}
    for node, target in targets:
        by_node.setdefault(node, []).append(("l", target, text, peer_id, "", ""))
    for node, items in by_node.items():
        send_items(node, items)
