"""A Redis restart under two server processes: sockets stay open, nothing is lost silently, relay comes back
by itself. The test runs a Redis of its own on another port: the machine's Redis is never stopped."""

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.test import Client
from rest_framework.authtoken.models import Token

from calls.models import Call, CallParticipant
from calls.protocol import CloseCode
from tests.conftest import IN_CI
from tests.servers import PROJECT, DaphneServer, free_port
from tests.test_signaling_live import recv, ws_url

pytestmark = [pytest.mark.live, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

OFFER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


class OwnRedis:
    """redis-server on a free loopback port, stopped and started by the test."""

    def __init__(self):
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log = PROJECT / "test-artifacts" / f"redis-{self.port}.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "OwnRedis":
        self.log.parent.mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--logfile", str(self.log)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ping = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True)
            if ping.stdout.strip() == b"PONG":
                return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def own_redis():
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    redis = OwnRedis().start()
    yield redis
    redis.stop()


@pytest.fixture
def two_servers_on(own_redis, live_server_process):
    env = {"REDIS_URL": own_redis.url}
    with DaphneServer(env=env) as first, DaphneServer(env=env) as second:
        yield first, second


def session_cookie(user) -> str:
    """The Cookie header of a browser logged in as the user (sessions live in the database, not in Redis)."""
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def api_get(server, token: str, path: str) -> int:
    request = urllib.request.Request(f"{server.url}{path}", headers={"Authorization": f"Token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


async def next_of(ws, kind: str, timeout: float = 10) -> dict:
    async def wait():
        while True:
            frame = await recv(ws)
            if frame["type"] == kind:
                return frame
    return await asyncio.wait_for(wait(), timeout)


async def test_a_redis_restart_loses_nothing_and_relay_comes_back_by_itself(two_servers_on, own_redis, public_room,
                                                                            alice, bob, carol, mallory):
    first, second = two_servers_on
    token = (await sync_to_async(Token.objects.get_or_create)(user=alice))[0].key
    async with contextlib.AsyncExitStack() as sockets:
        async def joined(server, user):  # one after the other, so that each sees the later ones join
            ws = await sockets.enter_async_context(websockets.connect(await ws_url(server, user, public_room)))
            return ws, await recv(ws)

        (a, welcome_a), (b, welcome_b), (m, welcome_m) = [await joined(*who) for who in
                                                          ((first, alice), (first, bob), (second, mallory))]
        for ws in (a, a, b):
            await next_of(ws, "peer-joined")

        await asyncio.to_thread(own_redis.stop)
        # Peers of one process keep talking.
        await a.send(json.dumps({"type": "offer", "to": welcome_b["peer_id"], "sdp": OFFER}))
        assert (await next_of(b, "offer"))["from"] == welcome_a["peer_id"]
        # Across processes: not lost silently, the sender is told.
        await a.send(json.dumps({"type": "offer", "to": welcome_m["peer_id"], "sdp": OFFER}))
        error = await next_of(a, "error")
        assert error["code"] == "undeliverable"
        # The REST API answers (its rate limits are let through while the cache is away).
        assert await asyncio.to_thread(api_get, first, token, "/api/rooms/") == 200
        # A join that needs Redis (a ticket to redeem) is refused with a documented code, not 1011.
        async with websockets.connect(await ws_url(second, alice, public_room)) as late:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await recv(late)
            assert closed.value.rcvd.code == CloseCode.UNAVAILABLE

        # A join that needs no Redis (a browser's session) works, though the others cannot be told of it now.
        cookie = await sync_to_async(session_cookie)(carol)
        newcomer = await sockets.enter_async_context(websockets.connect(
            f"{second.ws_url}/ws/rooms/{public_room.slug}/", origin=websockets.Origin(second.url),
            additional_headers={"Cookie": cookie}))
        welcome_c = await recv(newcomer)
        assert welcome_c["type"] == "welcome"

        await asyncio.to_thread(own_redis.start)
        back = time.monotonic()
        delivered = None
        while time.monotonic() - back < 5 and delivered is None:
            await a.send(json.dumps({"type": "offer", "to": welcome_m["peer_id"], "sdp": OFFER}))
            try:
                delivered = await next_of(m, "offer", timeout=0.5)
            except TimeoutError:
                pass
        assert delivered is not None, "cross-process relay did not come back within 5 s"
        print(f"\ncross-process relay back {time.monotonic() - back:.2f} s after Redis returned")
        await m.send(json.dumps({"type": "answer", "to": welcome_a["peer_id"], "sdp": OFFER}))  # and back
        assert (await next_of(a, "answer"))["from"] == welcome_m["peer_id"]
        # The peer that joined during the outage is reachable from the other process all the same.
        await a.send(json.dumps({"type": "offer", "to": welcome_c["peer_id"], "sdp": OFFER}))
        assert (await next_of(newcomer, "offer"))["from"] == welcome_a["peer_id"]

    calls = [c async for c in Call.objects.filter(room=public_room)]
    assert len(calls) == 1
    rows = await sync_to_async(lambda: list(CallParticipant.objects.filter(call=calls[0])))()
    assert len(rows) == 4 and all(r.reconnects == 0 for r in rows)
