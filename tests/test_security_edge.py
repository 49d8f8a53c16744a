"""Issue 10, row 2: messages over the edge limit (PARLEY_WS_MAX_BYTES, 1 MiB) are refused by the server itself,
daphne and uvicorn alike, with close code 1009 before they are read whole, and cost the server no memory.

The client sends only the header of an oversized frame and the first bytes of its payload: a server that waited
for the rest would never answer, so a close within a second proves the refusal came before the read.
"""

import asyncio
import json
import os
import struct
import time

import pytest
import websockets
from asgiref.sync import sync_to_async

from calls import tickets
from tests.servers import as_in_production, each_server

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

EDGE = 1024 * 1024
ATTEMPTS = 100
MESSAGE_TOO_BIG = 1009


server = each_server({"PARLEY_WS_MAX_BYTES": str(EDGE), **as_in_production()})



def oversized_frame_start(length: int, sent: int = 16 * 1024) -> bytes:
    """A masked text frame's header announcing `length` bytes, and the first `sent` of them."""
    mask = os.urandom(4)
    header = struct.pack("!BBQ", 0x81, 0x80 | 127, length) + mask
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"x" * sent))
    return header + payload


async def attempt(server, user, room, length: int) -> tuple[int | None, float]:
    """Join, start a `length`-byte message, and return the close code and how long the close took."""
    ticket = await sync_to_async(tickets.issue_ticket)(user=user, room=room)
    async with websockets.connect(f"{server.ws_url}/ws/rooms/{room.slug}/?ticket={ticket}") as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "welcome"
        started = time.monotonic()
        ws.transport.write(oversized_frame_start(length))
        try:
            await asyncio.wait_for(ws.wait_closed(), 5)
        except TimeoutError:
            return None, time.monotonic() - started
        return ws.close_code, time.monotonic() - started


async def test_a_message_over_the_edge_is_refused_with_1009_at_once(server, public_room, alice):
    code, took = await attempt(server, alice, public_room, EDGE + 1)
    assert code == MESSAGE_TOO_BIG
    assert took < 1.0, f"closed after {took:.2f} s"


async def test_a_message_at_the_edge_reaches_the_consumer(server, public_room, alice):
    """The edge sits above the protocol's own limit: a big but allowed message gets the documented error."""
    ticket = await sync_to_async(tickets.issue_ticket)(user=alice, room=public_room)
    async with websockets.connect(f"{server.ws_url}/ws/rooms/{public_room.slug}/?ticket={ticket}",
                                  max_size=None) as ws:
        await asyncio.wait_for(ws.recv(), 10)
        await ws.send(json.dumps({"type": "ping", "padding": "x" * (EDGE - 100)}))
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert (frame["type"], frame["code"]) == ("error", "too-large")


async def test_a_hundred_oversized_messages_cost_the_server_less_than_10_mb(server, public_room, alice):
    for length in (EDGE + 1, 16 * EDGE):  # warm up: the first joins load code and size the allocator's pools
        for _ in range(25):
            await attempt(server, alice, public_room, length)
    before = server.rss_kib()
    took = []
    for length in (EDGE + 1, 16 * EDGE):
        for _ in range(ATTEMPTS):
            code, seconds = await attempt(server, alice, public_room, length)
            assert code == MESSAGE_TOO_BIG
            took.append(seconds)
    grown = server.rss_kib() - before
    print(f"\n{server.name}: {2 * ATTEMPTS} oversized messages, RSS {grown / 1024:+.1f} MB, "
          f"close after {max(took) * 1000:.0f} ms at most")
    assert grown < 10 * 1024
