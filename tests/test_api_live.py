"""The REST API ending live calls: kick, lock and delete reach real signaling sockets through the channel layer
(in-memory and Redis), and across processes (a real daphne server sharing Redis with the process of the API)."""

import asyncio
import json
import os

import pytest
import websockets
from channels.db import database_sync_to_async
from channels.layers import channel_layers

from calls import relay, tickets
from calls.models import Call, CallParticipant, Room
from config.settings import channel_layer_for
from tests.helpers import api_as
from tests.servers import DaphneServer

pytestmark = [pytest.mark.django_db(transaction=True)]


async def call_api(user, method: str, url: str, data: dict | None = None):
    """One API request from another thread, as a WSGI worker would make it."""
    return await database_sync_to_async(getattr(api_as(user), method))(url, data, format="json")


async def test_a_moderator_kicks_a_peer_its_socket_closes_with_4403_and_the_others_hear_kicked(peers, room, alice,
                                                                                                bob, carol):
    a, b = await peers.together(room, alice, bob)
    response = await call_api(carol, "post", f"/api/rooms/{room.slug}/participants/{b.peer_id}/kick/")
    assert response.status_code == 204
    assert await b.closed_with() == 4403
    assert await a.receive() == {"type": "peer-left", "peer_id": b.peer_id, "reason": "kicked"}
    assert (await CallParticipant.objects.aget(peer_id=b.peer_id)).leave_reason == "kicked"


async def test_a_member_cannot_kick_and_nobody_is_disconnected(peers, room, alice, bob):
    a, b = await peers.together(room, alice, bob)
    response = await call_api(bob, "post", f"/api/rooms/{room.slug}/participants/{a.peer_id}/kick/")
    assert response.status_code == 403
    assert await a.nothing() and await b.nothing()


async def test_deleting_a_room_closes_every_socket_with_4404_and_keeps_its_call_log(peers, room, alice, bob,
                                                                                  carol):
    everyone = [await peers(user, room) for user in (alice, bob, carol)]
    response = await call_api(alice, "delete", f"/api/rooms/{room.slug}/")
    assert response.status_code == 204
    assert [await peer.closed_with() for peer in everyone] == [4404, 4404, 4404]
    assert not await Room.objects.filter(pk=room.pk).aexists()
    # The call log outlives the room, and says why everyone left.
    call = await Call.objects.aget(pk=everyone[0].welcome["call_id"])
    assert call.room_id is None and call.room_name == room.name and call.ended_at is not None
    reasons = [p.leave_reason async for p in call.participants.all()]
    assert reasons == ["room-closed"] * 3


async def test_locking_a_room_closes_members_with_4403_and_keeps_moderators(peers, room, alice, bob, carol):
    a, b, c = await peers.together(room, alice, bob, carol)
    response = await call_api(carol, "patch", f"/api/rooms/{room.slug}/", {"locked": True})
    assert response.status_code == 200 and response.json()["participant_count"] == 2
    assert await b.closed_with() == 4403
    assert await a.receive() == {"type": "peer-left", "peer_id": b.peer_id, "reason": "room-locked"}
    assert await c.receive() == {"type": "peer-left", "peer_id": b.peer_id, "reason": "room-locked"}
    assert (await CallParticipant.objects.aget(peer_id=b.peer_id)).leave_reason == "room-locked"


async def test_a_ticket_from_the_api_opens_the_signaling_socket_once(peers, room, bob):
    response = await call_api(bob, "post", f"/api/rooms/{room.slug}/ticket/")
    assert response.status_code == 200
    ticket = response.json()["ticket"]
    peer = await peers.open(f"/ws/rooms/{room.slug}/?ticket={ticket}")
    assert (await peer.receive_type("welcome"))["peer_id"]
    again = await peers.open(f"/ws/rooms/{room.slug}/?ticket={ticket}")
    assert await again.closed_with() == 4401  # single use


# --- Across processes -------------------------------------------------------------------------------


@pytest.fixture
def server_on_redis(redis_url, live_server_process, settings):
    """A daphne process on Redis, and this process (where the API runs) on the same Redis layer."""
    prefix = f"parley-api-live-{os.getpid()}"
    settings.CHANNEL_LAYERS = {"default": channel_layer_for(redis_url, prefix=prefix)}
    channel_layers.backends.clear()
    with DaphneServer(env={"REDIS_URL": redis_url, "PARLEY_CHANNEL_PREFIX": prefix}) as server:
        yield server
    channel_layers.backends.clear()


async def ws_join(server: DaphneServer, user, room):
    ticket = await database_sync_to_async(tickets.issue_ticket)(user=user, room=room)
    ws = await websockets.connect(f"{server.ws_url}/ws/rooms/{room.slug}/?ticket={ticket}")
    welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert welcome["type"] == "welcome"
    return ws, welcome["peer_id"]


async def next_frame(ws, kind: str) -> dict:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        frame.pop("seq", None)
        if frame["type"] == kind:
            return frame


@pytest.mark.live
@pytest.mark.redis
async def test_a_kick_through_the_api_reaches_a_socket_held_by_another_process(server_on_redis, public_room, alice,
                                                                               bob):
    alice_ws, _ = await ws_join(server_on_redis, alice, public_room)
    bob_ws, bob_peer = await ws_join(server_on_redis, bob, public_room)
    try:
        await next_frame(alice_ws, "peer-joined")
        response = await call_api(alice, "post", f"/api/rooms/{public_room.slug}/participants/{bob_peer}/kick/")
        assert response.status_code == 204
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await next_frame(bob_ws, "never")
        assert closed.value.rcvd.code == 4403
        assert await next_frame(alice_ws, "peer-left") == {"type": "peer-left", "peer_id": bob_peer,
                                                            "reason": "kicked"}
    finally:
        await alice_ws.close()
        await bob_ws.close()
        await relay.stop_node()
