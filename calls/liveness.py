"""Liveness of connections and server processes, off the hot path.

Each server process refreshes its participants' rows (so the reaper can tell a live process from a dead one),
closes peers that went silent, and now and then reaps the participants of processes that died. The loops run on
the process's relay node, started with it: `relay.py` stays free of the database.
"""

import asyncio
import logging
import weakref

from channels.db import database_sync_to_async
from django.conf import settings

from calls import relay, services

logger = logging.getLogger(__name__)

_watched: "weakref.WeakSet[relay.Node]" = weakref.WeakSet()  # the nodes whose loops run


async def get_node() -> relay.Node:
    """This process's relay node, with the liveness loops running on it."""
    node = await relay.get_node()
    if node not in _watched:
        _watched.add(node)
        node.run(housekeeping_loop(node), name="relay-housekeeping")
    return node


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
