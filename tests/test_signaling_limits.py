"""Limits, liveness and the paths by which other parts of Parley end connections."""

import asyncio
import json
import logging
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.utils import timezone

from calls import relay, services
from calls.models import Call, CallParticipant
from calls.protocol import CloseCode
from calls.relay import Item
from calls.services import Reason

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def limits(settings):
    def set_limits(**changes):
        settings.PARLEY_SIGNALING = {**settings.PARLEY_SIGNALING, **changes}
    return set_limits


async def test_a_flood_is_rate_limited_then_closed_with_4429(peers, public_room, alice, limits):
    limits(RATE_PER_SECOND=1, RATE_BURST=5, FLOOD_GRACE_SECONDS=0.5)
    peer = await peers(alice, public_room)
    for _ in range(5):
        await peer.send({"type": "ping"})
        assert await peer.receive() == {"type": "pong"}
    await peer.send({"type": "ping"})
    assert (await peer.receive_type("error"))["code"] == "rate-limited"
    await asyncio.sleep(0.6)
    await peer.send({"type": "ping"})
    assert await peer.closed_with() == 4429
    row = await CallParticipant.objects.aget(peer_id=peer.peer_id)
    assert row.left_at is not None


async def test_a_client_within_its_rate_is_never_limited(peers, public_room, alice, limits):
    limits(RATE_PER_SECOND=50, RATE_BURST=10)
    peer = await peers(alice, public_room)
    for _ in range(30):
        await peer.send({"type": "ping"})
        assert await peer.receive() == {"type": "pong"}
        await asyncio.sleep(0.025)


async def test_kick_closes_the_socket_with_4403_and_tells_the_others(peers, public_room, alice, bob):
    a, b = await peers.together(public_room, alice, bob)
    participant = await CallParticipant.objects.aget(peer_id=b.peer_id)
    await database_sync_to_async(services.kick_participant)(by=alice, participant=participant)
    assert await b.closed_with() == 4403
    assert await a.receive() == {"type": "peer-left", "peer_id": b.peer_id, "reason": "kicked"}
    assert (await CallParticipant.objects.aget(peer_id=b.peer_id)).leave_reason == "kicked"


async def test_locking_a_room_closes_everyone_but_moderators(peers, private_room, alice, bob):
    a, b = await peers.together(private_room, alice, bob)
    closed = await database_sync_to_async(services.close_room_connections)(
        room=private_room, reason=Reason.ROOM_LOCKED, close_code=CloseCode.FORBIDDEN, spare_moderators=True)
    assert closed == 1
    assert await b.closed_with() == 4403
    assert (await a.receive_type("peer-left"))["reason"] == "room-locked"


async def test_a_silent_peer_times_out_with_4408(peers, public_room, alice, bob, limits):
    limits(PEER_TIMEOUT=0.5, HEARTBEAT_SECONDS=0.2)
    a, b = await peers.together(public_room, alice, bob)
    frames = []
    for _ in range(10):  # a keeps pinging, b stays silent
        await a.send({"type": "ping"})
        frames.append(await a.receive())
        await asyncio.sleep(0.1)
    assert await b.closed_with() == CloseCode.TIMED_OUT
    assert {"type": "peer-state", "peer_id": b.peer_id, "state": "reconnecting"} in frames
    row = await CallParticipant.objects.aget(peer_id=b.peer_id)
    assert row.suspended_at is not None and row.suspend_reason == Reason.TIMED_OUT


async def test_the_reaper_times_out_peers_of_a_dead_process_and_ends_the_call(peers, public_room, alice, bob):
    survivor = await peers(alice, public_room)
    # A participant whose server process died long ago: its row stopped being refreshed.
    call = await Call.objects.aget(pk=survivor.welcome["call_id"])
    ghost = await CallParticipant.objects.acreate(call=call, user=bob, relay_node="specific.dead!process",
                                                  last_seen_at=timezone.now() - timedelta(hours=1))
    await database_sync_to_async(call_command)("reap_calls")
    assert await survivor.receive() == {"type": "peer-left", "peer_id": str(ghost.peer_id), "reason": "timed-out"}
    await ghost.arefresh_from_db()
    assert ghost.leave_reason == "timed-out"
    await survivor.leave()  # a clean close: the participation ends at once
    # The survivor's row is fresh, so only the ghost was reaped; the call ends when the survivor drops.
    await call.arefresh_from_db()
    assert call.ended_at is not None


async def test_a_failing_handler_closes_only_its_own_connection(peers, public_room, alice, bob, monkeypatch,
                                                                caplog):
    a, b = await peers.together(public_room, alice, bob)

    def explode(**kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(services, "record_media_state", explode)
    with caplog.at_level(logging.ERROR, logger="calls.consumers"):
        await b.send({"type": "media-state", "audio": True, "video": True, "screen": False})
        assert await b.closed_with() == 1011
    assert "handler failed" in caplog.text
    assert (await a.receive_type("peer-left"))["reason"] == "disconnected"
    await a.send({"type": "ping"})
    assert await a.receive() == {"type": "pong"}


class FakePeer:
    """A peer registered on a node directly: stands for a consumer in another server process."""

    def __init__(self, node: relay.Node, peer_id: str):
        self.peer_id = peer_id
        self.last_heard = float("inf")
        self.frames: asyncio.Queue = asyncio.Queue()
        node.register(self)

    async def relayed(self, item: Item):
        await self.frames.put(item.text)

    async def next_frame(self) -> dict:
        return json.loads(await asyncio.wait_for(self.frames.get(), 5))

    async def time_out(self):
        pass


@pytest.fixture
async def two_nodes(layer, settings):
    """Two relay nodes with a Redis layer each, as two server processes have (each its own client prefix)."""
    from channels_redis.core import RedisChannelLayer

    nodes = [relay.Node(RedisChannelLayer(**settings.CHANNEL_LAYERS["default"]["CONFIG"])) for _ in range(2)]
    for node in nodes:
        await node.start()
    yield nodes
    for node in nodes:
        await node.stop()
        await node.layer.flush()


@pytest.mark.redis
@pytest.mark.parametrize("layer", ["redis"], indirect=True)
async def test_frames_cross_processes_in_order_after_a_long_idle(two_nodes):
    """channels-redis on redis-py 8: an idle blocking read must not hit a socket timeout (#422)."""
    here, there = two_nodes
    target = FakePeer(there, "b")
    await asyncio.sleep(30)  # idle: no frame on either node
    for n in range(50):
        await here.deliver(node=there.channel, item=Item.frame("b", json.dumps({"n": n}), sender="a"))
    received = [(await target.next_frame())["n"] for _ in range(50)]
    assert received == list(range(50))


@pytest.mark.redis
@pytest.mark.parametrize("layer", ["redis"], indirect=True)
async def test_a_full_channel_is_reported_to_the_sender_as_undeliverable(two_nodes, settings):
    here, there = two_nodes
    sender = FakePeer(here, "a")
    there._tasks[0].cancel()  # the other process stops reading: its channel fills up
    here.layer.capacity = 2
    for n in range(6):
        await here.deliver(node=there.channel, item=Item.frame("b", json.dumps({"n": n}), sender="a"))
        await asyncio.sleep(0.05)  # one batch each
    assert (await sender.next_frame())["code"] == "undeliverable"


@pytest.mark.redis
@pytest.mark.parametrize("layer", ["redis"], indirect=True)
async def test_a_frame_for_a_peer_gone_from_its_process_is_bounced(two_nodes):
    here, there = two_nodes
    sender = FakePeer(here, "a")
    await here.deliver(node=there.channel, item=Item.frame("b-gone", "{}", sender="a"))
    assert (await sender.next_frame())["code"] == "undeliverable"


async def test_a_flooder_is_closed_although_tokens_trickle_in(peers, public_room, alice, limits):
    """Each refill lets one frame through; that does not end the flood, so 4429 comes after the grace period."""
    limits(RATE_PER_SECOND=20, RATE_BURST=5, FLOOD_GRACE_SECONDS=1.0)
    peer = await peers(alice, public_room)
    loop = asyncio.get_running_loop()
    closing = asyncio.ensure_future(peer.closed_with(timeout=4))
    started = loop.time()
    while not closing.done() and loop.time() - started < 3:
        await peer.send({"type": "ping"})  # 100 a second: five times the rate
        await asyncio.sleep(0.01)
    took = loop.time() - started
    assert await closing == 4429
    assert 1.0 <= took < 1.5, took


async def test_a_client_that_stops_acknowledging_is_closed_with_4413(peers, public_room, alice, bob, limits):
    limits(SLOW_SECONDS=0.5, HEARTBEAT_SECONDS=0.2)
    reader, sender = await peers.together(public_room, alice, bob)
    await reader.send({"type": "ping", "last_seq": 0})  # it acknowledges, so it is watched...
    assert await reader.receive() == {"type": "pong"}
    await sender.send({"type": "offer", "to": reader.peer_id, "sdp": "v=0"})
    assert (await reader.receive())["type"] == "offer"  # ...and then never again
    assert await reader.closed_with(timeout=3) == CloseCode.TOO_SLOW
    state = await sender.receive_type("peer-state")
    assert (state["peer_id"], state["state"]) == (reader.peer_id, "reconnecting")


async def test_a_client_that_keeps_acknowledging_is_never_closed(peers, public_room, alice, bob, limits):
    limits(SLOW_SECONDS=0.5, HEARTBEAT_SECONDS=0.2)
    reader, sender = await peers.together(public_room, alice, bob)
    for _ in range(8):
        await sender.send({"type": "offer", "to": reader.peer_id, "sdp": "v=0"})
        offer = await reader.receive_raw()
        await reader.send({"type": "ping", "last_seq": offer["seq"]})
        assert await reader.receive() == {"type": "pong"}
        await asyncio.sleep(0.2)
    assert await reader.nothing()
