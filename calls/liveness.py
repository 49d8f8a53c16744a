"""Liveness of connections and server processes, off the hot path.

Each server process beats (a row per relay node), notices processes that stopped beating and tells its own
sockets that their peers there are reconnecting, ends participations whose resume window ran out, refreshes its
participants' rows, and suspends peers that went silent. The loops run on the process's relay node, started with
it: `relay.py` stays free of the database.
"""

import asyncio
import logging
import weakref

from channels.db import database_sync_to_async
from django.conf import settings

from calls import continuity, metrics, relay, services

logger = logging.getLogger(__name__)

_watched: "weakref.WeakSet[relay.Node]" = weakref.WeakSet()  # the nodes whose loops run


async def get_node() -> relay.Node:
    """This process's relay node, with the liveness loops running on it."""
    node = await relay.get_node()
    if node not in _watched:
        _watched.add(node)
        node.on_missing = keep_or_reroute
        await database_sync_to_async(continuity.beat_node)(channel=node.channel)
        node.run(heartbeat_loop(node), name="relay-heartbeat")
        node.run(housekeeping_loop(node), name="relay-housekeeping")
    return node


async def keep_or_reroute(node: relay.Node, item: relay.Item) -> bool:
    """A frame arrived for a peer no longer here: keep it for its replay (it is suspended) or send it on to where
    it resumed. False if the peer has left, and the sender is told the frame was undeliverable."""
    where = await database_sync_to_async(continuity.route_or_keep)(peer_id=item.to, text=item.text)
    if where is None or where == continuity.KEPT_FULL:
        return False
    if where == "":
        return True  # kept
    # Sent on once, unreported: a second miss (it moved again meanwhile) is not chased around the processes.
    return await node.deliver(node=where, item=item._replace(sender=""))


async def heartbeat_loop(node: relay.Node) -> None:
    """Every few seconds: beat, find dead processes, end expired suspensions."""
    timings = settings.PARLEY_SIGNALING
    every, timeout = timings["NODE_BEAT_SECONDS"], timings["NODE_TIMEOUT"]
    while True:
        await asyncio.sleep(every)
        try:
            await database_sync_to_async(continuity.beat_node)(channel=node.channel)
            live = await database_sync_to_async(continuity.live_nodes_and_suspend_dead)(timeout=timeout)
            live.add(node.channel)
            referenced = {where for peer in list(node.peers.values()) for where in peer.peers.values() if where}
            dead = referenced - live
            if dead:
                for peer in list(node.peers.values()):
                    await peer.nodes_died(dead)
            await database_sync_to_async(continuity.expire_suspended)()
            metrics.sample_process()
        except Exception:
            logger.exception("relay node %s: heartbeat failed", node.channel)


async def housekeeping_loop(node: relay.Node) -> None:
    timings = settings.PARLEY_SIGNALING
    heartbeat, reap_every = timings["HEARTBEAT_SECONDS"], timings["REAP_EVERY"]
    loop = asyncio.get_running_loop()
    beat = 0
    while True:
        await asyncio.sleep(heartbeat)
        beat += 1
        try:
            await database_sync_to_async(services.touch_participants)(peer_ids=list(node.peers))
            await close_silent_peers(node, now=loop.time())
            close_stalled_peers(node, now=loop.time())
            if beat % reap_every == 0:
                await database_sync_to_async(services.reap_stale_participants)()
        except Exception:
            logger.exception("relay node %s: housekeeping failed", node.channel)


async def close_silent_peers(node: relay.Node, *, now: float) -> int:
    deadline = now - services.peer_timeout()
    silent = [peer for peer in node.peers.values() if peer.last_heard < deadline]
    for peer in silent:
        await peer.time_out()
    return len(silent)


def close_stalled_peers(node: relay.Node, *, now: float) -> int:
    """Close the peers that stopped reading their frames (also those nobody sends to any more)."""
    stalled = [peer for peer in node.peers.values() if peer.is_stalled(now)]
    for peer in stalled:
        peer.too_slow("unread for too long")
    return len(stalled)
