"""Signaling through real daphne processes, with real WebSocket and WebRTC (aiortc) clients."""

import asyncio
import json
import os

import pytest
import websockets
from asgiref.sync import sync_to_async

from calls import tickets
from calls.models import Call, CallParticipant
from calls.protocol import CloseCode
from calls.services import Reason
from tests.helpers import eventually
from tests.servers import DaphneServer, ServerProcess, UvicornServer
from tests.webrtc import WebRTCPeer, loopback_only

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

OFFER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


async def ws_url(server: ServerProcess, user, room) -> str:
    ticket = await sync_to_async(tickets.issue_ticket)(user=user, room=room)
    return f"{server.ws_url}/ws/rooms/{room.slug}/?ticket={ticket}"


async def recv(ws) -> dict:
    """The next frame, without its sequence number."""
    frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
    frame.pop("seq", None)
    return frame


async def every_call_ended(room) -> bool:
    return await Call.objects.filter(room=room).aexists() and not await Call.objects.filter(room=room).live().aexists()


async def assert_one_ended_call_with(room, users) -> None:
    """The server records the last leave just after the last socket closed: wait for it, then look."""
    await eventually(lambda: every_call_ended(room))
    calls = [c async for c in Call.objects.filter(room=room)]
    assert len(calls) == 1 and calls[0].ended_at is not None
    rows = [p async for p in calls[0].participants.select_related("user").order_by("joined_at")]
    assert [p.user for p in rows] == users
    assert all(p.left_at and p.left_at >= p.joined_at and p.leave_reason == "left" for p in rows)


async def test_two_websocket_clients_negotiate_through_a_real_server(live_server_process, public_room, alice, bob):
    server = live_server_process
    async with websockets.connect(await ws_url(server, alice, public_room)) as a:
        welcome_a = await recv(a)
        async with websockets.connect(await ws_url(server, bob, public_room)) as b:
            welcome_b = await recv(b)
            assert [p["peer_id"] for p in welcome_b["peers"]] == [welcome_a["peer_id"]]
            assert (await recv(a))["peer"]["peer_id"] == welcome_b["peer_id"]

            await b.send(json.dumps({"type": "offer", "to": welcome_a["peer_id"], "sdp": OFFER}))
            assert (await recv(a)) == {"type": "offer", "to": welcome_a["peer_id"], "sdp": OFFER,
                                       "from": welcome_b["peer_id"]}
            await a.send(json.dumps({"type": "answer", "to": welcome_b["peer_id"], "sdp": OFFER}))
            assert (await recv(b))["type"] == "answer"
            for n in range(10):
                candidate = {"candidate": f"candidate:{n} 1 udp 1 127.0.0.1 {5000 + n} typ host", "sdpMid": "0",
                             "sdpMLineIndex": 0, "usernameFragment": "u"}
                await a.send(json.dumps({"type": "candidate", "to": welcome_b["peer_id"], "candidate": candidate}))
                assert (await recv(b))["candidate"] == candidate
        assert await recv(a) == {"type": "peer-left", "peer_id": welcome_b["peer_id"], "reason": "left"}
    await assert_one_ended_call_with(public_room, [alice, bob])


async def test_two_aiortc_peers_connect_and_talk_over_a_data_channel(live_server_process, public_room, alice, bob,
                                                                     monkeypatch):
    loopback_only(monkeypatch)
    server = live_server_process
    async with WebRTCPeer(await ws_url(server, alice, public_room)) as a:
        async with WebRTCPeer(await ws_url(server, bob, public_room)) as b:
            await b.connected_to(a.peer_id)
            await a.connected_to(b.peer_id)
            (await b.channel_open(a.peer_id)).send("hello from bob")
            assert await asyncio.wait_for(a.messages.get(), 10) == (b.peer_id, "hello from bob")
            (await a.channel_open(b.peer_id)).send("hello back")
            assert await asyncio.wait_for(b.messages.get(), 10) == (a.peer_id, "hello back")
        assert (await a.event("peer-left"))["reason"] == "left"
    await assert_one_ended_call_with(public_room, [alice, bob])


@pytest.fixture
def two_servers(redis_url, live_server_process):
    """Two daphne processes sharing Redis and the database, as behind a load balancer."""
    env = {"REDIS_URL": redis_url, "PARLEY_CHANNEL_PREFIX": f"parley-live-{os.getpid()}"}
    with DaphneServer(env=env) as first, DaphneServer(env=env) as second:
        yield first, second


@pytest.mark.redis
async def test_peers_on_two_server_processes_connect_across_them(two_servers, public_room, alice, bob, monkeypatch):
    loopback_only(monkeypatch)
    first, second = two_servers
    async with WebRTCPeer(await ws_url(first, alice, public_room)) as a:
        async with WebRTCPeer(await ws_url(second, bob, public_room)) as b:
            assert [p["peer_id"] for p in b.welcome["peers"]] == [a.peer_id]
            await b.connected_to(a.peer_id)
            await a.connected_to(b.peer_id)
            assert (await a.event("peer-joined"))["peer"]["peer_id"] == b.peer_id
            (await b.channel_open(a.peer_id)).send("across processes")
            assert await asyncio.wait_for(a.messages.get(), 10) == (b.peer_id, "across processes")
        assert (await a.event("peer-left"))["peer_id"] == b.peer_id
    await assert_one_ended_call_with(public_room, [alice, bob])


@pytest.mark.redis
async def test_a_server_restart_suspends_its_peers_and_tells_the_others(two_servers, public_room, alice, bob):
    first, second = two_servers
    async with websockets.connect(await ws_url(first, alice, public_room)) as a:
        await recv(a)
        async with websockets.connect(await ws_url(second, bob, public_room)) as b:
            welcome_b = await recv(b)
            assert (await recv(a))["type"] == "peer-joined"
            await asyncio.to_thread(second.stop)  # SIGTERM, as a deployment restarts a process
            assert await recv(a) == {"type": "peer-state", "peer_id": welcome_b["peer_id"],
                                     "state": "reconnecting"}
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(b.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == CloseCode.RESTARTING
    row = await CallParticipant.objects.aget(peer_id=welcome_b["peer_id"])
    assert row.left_at is None and row.suspend_reason == Reason.SERVER_SHUTDOWN


@pytest.fixture
def own_server(request, live_server_process):
    """A server process of the test's own, to stop (the session's one serves the other tests): a daphne, or the
    ServerProcess class the test is parametrized with."""
    with getattr(request, "param", DaphneServer)() as server:
        yield server


@pytest.mark.parametrize(("own_server", "code"), [
    # Parley closes with 4012 itself (daphne's WebSocket library cannot send 1012); uvicorn sends 1012 first.
    pytest.param(DaphneServer, CloseCode.RESTARTING, id="daphne"),
    pytest.param(UvicornServer, CloseCode.SERVICE_RESTART, id="uvicorn"),
], indirect=["own_server"])
async def test_a_stopping_server_closes_its_sockets_with_a_restart_code(own_server, code, public_room, alice):
    """docs/signaling.md: 4012 and 1012 tell a client to resume at once (a dropped connection: with backoff)."""
    async with websockets.connect(await ws_url(own_server, alice, public_room)) as ws:
        await recv(ws)
        await asyncio.to_thread(own_server.stop)  # SIGTERM, as a deployment restarts a process
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code


async def test_a_70_kib_frame_through_daphne_gets_too_large_and_the_socket_stays_open(live_server_process,
                                                                                       public_room, alice):
    """daphne's own cap (1 MiB) is above the protocol's 64 KiB, so the protocol's error is what clients see."""
    async with websockets.connect(await ws_url(live_server_process, alice, public_room), max_size=None) as ws:
        welcome = await recv(ws)
        await ws.send(json.dumps({"type": "offer", "to": welcome["peer_id"], "sdp": "x" * 70 * 1024}))
        assert (await recv(ws))["code"] == "too-large"
        await ws.send(json.dumps({"type": "ping"}))
        assert await recv(ws) == {"type": "pong"}


@pytest.mark.parametrize("own_server", [UvicornServer], indirect=True)
async def test_the_optional_uvicorn_server_connects_peers_and_records_its_shutdown(own_server, public_room, alice,
                                                                                  bob, monkeypatch):
    """The optional uvicorn server (docs/performance.md), on the same test database."""
    loopback_only(monkeypatch)
    async with WebRTCPeer(await ws_url(own_server, alice, public_room)) as a:
        async with WebRTCPeer(await ws_url(own_server, bob, public_room)) as b:
            await b.connected_to(a.peer_id)
            (await b.channel_open(a.peer_id)).send("over uvicorn")
            assert await asyncio.wait_for(a.messages.get(), 10) == (b.peer_id, "over uvicorn")
            await asyncio.to_thread(own_server.stop)  # SIGTERM: uvicorn closes every socket with 1012
            rows = [p async for p in CallParticipant.objects.filter(call_id=a.welcome["call_id"])]
    # Suspended, to resume on another process; the call goes on meanwhile.
    assert [(p.left_at, p.suspend_reason) for p in rows] == [(None, Reason.SERVER_SHUTDOWN)] * 2
    assert (await Call.objects.aget(pk=a.welcome["call_id"])).is_live
