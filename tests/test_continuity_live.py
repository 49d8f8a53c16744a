"""Call continuity through real server processes: aiortc peers keep their media while signaling drops, a server
process dies, or Redis restarts (docs/signaling.md, "Resume")."""

import asyncio
import os
import time
from contextlib import asynccontextmanager

import pytest
from asgiref.sync import sync_to_async

from calls.models import Call, CallParticipant
from tests.helpers import eventually
from tests.servers import DaphneServer
from tests.test_signaling_live import ws_url
from tests.webrtc import WebRTCPeer, loopback_only

pytestmark = [pytest.mark.live, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

CANDIDATE = "candidate:{n} 1 udp 2122260223 127.0.0.1 {port} typ host"


@pytest.fixture
def two_servers(redis_url, live_server_process):
    """Two daphne processes sharing Redis and the database, as behind a load balancer."""
    env = {"REDIS_URL": redis_url, "PARLEY_CHANNEL_PREFIX": f"parley-continuity-{os.getpid()}"}
    with DaphneServer(env=env) as first, DaphneServer(env=env) as second:
        yield first, second


class Chatter:
    """Data-channel messages from one aiortc peer to another every 50 ms: the media path, never the server's."""

    def __init__(self, sender: WebRTCPeer, receiver: WebRTCPeer):
        self.sender, self.receiver = sender, receiver
        self.arrivals: list[float] = []
        self.tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> "Chatter":
        channel = await self.sender.channel_open(self.receiver.peer_id)

        async def send():
            for n in range(100_000):
                channel.send(f"tick {n}")
                await asyncio.sleep(0.05)

        async def receive():
            while True:
                peer_id, _message = await self.receiver.messages.get()
                if peer_id == self.sender.peer_id:
                    self.arrivals.append(time.monotonic())

        self.tasks = [asyncio.create_task(send()), asyncio.create_task(receive())]
        return self

    async def __aexit__(self, *exc) -> None:
        for task in self.tasks:
            task.cancel()

    def longest_gap(self) -> float:
        return max(b - a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False))


async def send_candidates(sender: WebRTCPeer, to: str, n: int) -> list[dict]:
    sent = []
    for i in range(n):
        candidate = {"candidate": CANDIDATE.format(n=i, port=40000 + i), "sdpMid": "0", "sdpMLineIndex": 0,
                     "usernameFragment": None}
        await sender.send({"type": "candidate", "to": to, "candidate": candidate})
        sent.append(candidate)
    return sent


async def peer_states(peer: WebRTCPeer, of: str) -> list[str]:
    return [e["state"] for e in peer.events if e["type"] == "peer-state" and e["peer_id"] == of]


async def replayed_in_order(peer: WebRTCPeer, sent: list[dict], *, after: int) -> None:
    """The candidates sent while the peer was away reach it after its resume, in order, numbered on."""
    await eventually(lambda: len([f for f in peer.received if f["type"] == "candidate"]) >= len(sent), timeout=10)
    replayed = [f for f in peer.received if f["type"] == "candidate"]
    assert [f["candidate"] for f in replayed] == sent
    assert [f["seq"] for f in replayed] == [after + 1 + i for i in range(len(sent))]


async def assert_one_participation_each(call_id: int, users, *, reconnects: dict) -> None:
    rows = await sync_to_async(lambda: list(CallParticipant.objects.filter(call_id=call_id).select_related("user")))()
    assert sorted(r.user.username for r in rows) == sorted(u.username for u in users)
    assert {r.user.username: r.reconnects for r in rows} == reconnects
    assert await Call.objects.filter(pk=call_id).acount() == 1


@asynccontextmanager
async def a_call_across(first, second, room, alice, bob):
    """Alice on the first process, Bob on the second, their data channel chattering; afterwards the record
    shows one participation each, Alice's resumed once."""
    async with WebRTCPeer(await ws_url(first, alice, room)) as a, WebRTCPeer(await ws_url(second, bob, room)) as b:
        await b.connected_to(a.peer_id)
        async with Chatter(a, b) as chatter:
            yield a, b, chatter
        await assert_one_participation_each(a.welcome["call_id"], [alice, bob], reconnects={"alice": 1, "bob": 0})


async def test_a_dropped_connection_resumes_on_the_other_process_and_media_never_stops(
        two_servers, public_room, alice, bob, monkeypatch):
    loopback_only(monkeypatch)
    first, second = two_servers
    async with a_call_across(first, second, public_room, alice, bob) as (a, b, chatter):
        await a.drop()
        lost = time.monotonic()
        await eventually(lambda: peer_states(b, a.peer_id), timeout=10)
        sent = await send_candidates(b, a.peer_id, 3)  # accepted meanwhile, kept for the replay
        seen = a.last_seq
        welcome = await a.resume(await ws_url(second, alice, public_room))
        resumed_in = time.monotonic() - lost
        assert welcome["resumed"] is True and welcome["peer_id"] == a.peer_id
        await replayed_in_order(a, sent, after=seen)
        await eventually(lambda: len(b.events) and b.events[-1]["type"] == "peer-state"
                         and b.events[-1]["state"] == "connected")
        assert await peer_states(b, a.peer_id) == ["reconnecting", "connected"]
        assert not [e for e in b.events if e["type"] == "peer-left"]
        await asyncio.sleep(1)
        assert chatter.longest_gap() < 1.0
        print(f"\nresumed {resumed_in:.2f} s after the drop; longest media gap {chatter.longest_gap():.3f} s")


async def test_a_killed_process_is_noticed_within_10_s_and_its_peer_resumes_on_the_survivor(
        two_servers, public_room, alice, bob, monkeypatch):
    loopback_only(monkeypatch)
    first, second = two_servers
    async with a_call_across(first, second, public_room, alice, bob) as (a, b, chatter):
        killed = time.monotonic()
        await asyncio.to_thread(first.kill)  # kill -9: nothing recorded, nothing announced
        await eventually(lambda: peer_states(b, a.peer_id), timeout=10)
        noticed_in = time.monotonic() - killed
        assert noticed_in < 10
        sent = await send_candidates(b, a.peer_id, 3)
        seen = a.last_seq
        welcome = await a.resume(await ws_url(second, alice, public_room))
        assert welcome["resumed"] is True and welcome["peer_id"] == a.peer_id
        assert welcome["replay"] == "partial"  # the dead process's last frames died with it
        await replayed_in_order(a, sent, after=seen)
        await eventually(lambda: b.events[-1].get("state") == "connected", timeout=10)
        assert await peer_states(b, a.peer_id) == ["reconnecting", "connected"]
        assert not [e for e in b.events if e["type"] == "peer-left"]
        # Signaling works again across the survivor.
        await b.send({"type": "media-state", "audio": True, "video": False, "screen": False})
        await eventually(lambda: any(f["type"] == "media-state" for f in a.received), timeout=10)
        assert chatter.longest_gap() < 1.0
        print(f"\ndead process noticed after {noticed_in:.2f} s; longest media gap "
              f"{chatter.longest_gap():.3f} s")
