"""Redis high availability: two server units on a Redis primary watched by three sentinels; the primary stops in
the middle of a call, the sentinels promote the replica, and Parley follows them without a restart."""

import asyncio
import json
import os
import time

import pytest
import websockets
from asgiref.sync import sync_to_async

from calls import tickets
from calls.models import Call
from tests.deploy import UnitServer
from tests.sentinel import SentinelGroup

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

RECOVERY_SECONDS = 15


@pytest.fixture
def sentinels():
    with SentinelGroup() as group:
        yield group


@pytest.fixture
def servers(sentinels, django_db_setup):
    env = {"REDIS_URL": sentinels.url, "PARLEY_CHANNEL_PREFIX": f"parley-sentinel-{os.getpid()}"}
    with UnitServer(env=env) as first, UnitServer(env=env) as second:
        yield first, second


async def ws_url(server, user, room) -> str:
    ticket = await sync_to_async(tickets.issue_ticket)(user=user, room=room)
    return f"{server.ws_url}/ws/rooms/{room.slug}/?ticket={ticket}"


async def next_of(ws, kind: str, timeout: float = 10) -> dict:
    async def wait():
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == kind:
                return frame
    return await asyncio.wait_for(wait(), timeout)


async def seconds_until_an_offer_crosses(sender, receiver, to: str, timeout: float) -> float:
    """Send marked offers every 0.25 s until one reaches the receiver; how long that took."""
    started = time.monotonic()
    sent = 0

    async def send_marks():
        nonlocal sent
        while True:
            sent += 1
            await sender.send(json.dumps({"type": "offer", "to": to, "sdp": f"v=0\r\ns=mark-{sent}\r\n"}))
            await asyncio.sleep(0.25)

    marker = asyncio.create_task(send_marks())
    try:
        offer = await next_of(receiver, "offer", timeout)
        assert "mark-" in offer["sdp"]
        return time.monotonic() - started
    finally:
        marker.cancel()


async def test_signaling_across_processes_recovers_after_a_sentinel_failover(sentinels, servers, public_room,
                                                                             alice, bob, carol):
    first, second = servers
    async with websockets.connect(await ws_url(first, alice, public_room)) as a:
        await next_of(a, "welcome")
        async with websockets.connect(await ws_url(second, bob, public_room)) as b:
            bob_id = (await next_of(b, "welcome"))["peer_id"]
            await next_of(a, "peer-joined")
            assert await seconds_until_an_offer_crosses(a, b, bob_id, timeout=5) < 1

            old_primary = sentinels.primary_address()
            await asyncio.to_thread(sentinels.primary.stop)
            took = await seconds_until_an_offer_crosses(a, b, bob_id, timeout=RECOVERY_SECONDS)
            # The Sentinels agree on the new primary within the recovery time (on a busy machine an offer may
            # cross before they have all said so).
            deadline = time.monotonic() + RECOVERY_SECONDS
            while sentinels.primary_address() == old_primary and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert sentinels.primary_address() == ("127.0.0.1", sentinels.replica_port) != old_primary
            print(f"cross-process signaling back {took:.1f} s after the primary stopped")

            # A join after the failover (its ticket is redeemed in the cache, on the new primary) is announced
            # across processes.
            async with websockets.connect(await ws_url(first, carol, public_room)) as c:
                welcome = await next_of(c, "welcome")
                assert len(welcome["peers"]) == 2
                assert (await next_of(b, "peer-joined"))["peer"]["peer_id"] == welcome["peer_id"]
    await asyncio.sleep(1)
    calls = [call async for call in Call.objects.filter(room=public_room)]
    assert len(calls) == 1 and calls[0].ended_at is not None
    rows = [p async for p in calls[0].participants.select_related("user").order_by("joined_at")]
    assert [(p.user, p.leave_reason) for p in rows] == [(alice, "left"), (bob, "left"), (carol, "left")]
