"""Two daphne processes on Redis: Ana's /ws/me/ on one, Ben's on the other. Ana rings Ben through her process, Ben
answers through his, and both arrive in the same call; presence crosses the processes too."""

import asyncio
import contextlib
import json
import urllib.request
import uuid

import pytest
import websockets
from asgiref.sync import sync_to_async
from rest_framework.authtoken.models import Token

from calls import tickets
from calls.models import Room
from people.models import Ring
from tests.helpers import eventually
from tests.servers import DaphneServer
from tests.test_signaling_live import recv, ws_url

pytestmark = [pytest.mark.live, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def two_servers(redis_url, live_server_process):
    env = {"REDIS_URL": redis_url, "PARLEY_CHANNEL_PREFIX": f"parley-people-{uuid.uuid4().hex[:8]}"}
    with DaphneServer(env=env) as first, DaphneServer(env=env) as second:
        yield first, second


async def token_of(user) -> str:
    return (await sync_to_async(Token.objects.get_or_create)(user=user))[0].key


def post(server, token: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"{server.url}{path}", data=json.dumps(body or {}).encode(), method="POST",
                                     headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


async def me_url(server, user) -> str:
    ticket = await sync_to_async(tickets.issue_ticket)(user=user, target=tickets.ME)
    return f"{server.ws_url}/ws/me/?ticket={ticket}"


async def next_of(ws, kind: str, timeout: float = 10) -> dict:
    async def wait():
        while True:
            frame = await recv(ws)
            if frame["type"] == kind:
                return frame
    return await asyncio.wait_for(wait(), timeout)


async def test_a_ring_across_two_processes_ends_with_both_in_one_call(two_servers, alice, bob, room):
    first, second = two_servers
    ana_token, ben_token = await token_of(alice), await token_of(bob)
    async with contextlib.AsyncExitStack() as sockets:
        ana = await sockets.enter_async_context(websockets.connect(await me_url(first, alice)))
        assert (await recv(ana))["type"] == "welcome"
        ben = await sockets.enter_async_context(websockets.connect(await me_url(second, bob)))
        assert (await recv(ben))["type"] == "welcome"
        online = await next_of(ana, "presence")  # Ben's presence, from the other process
        assert online["user"]["username"] == "bob" and online["presence"] == "online"

        status, ring = await asyncio.to_thread(post, first, ana_token, "/api/rings/", {"callee": "bob"})
        assert status == 201, ring
        assert (await next_of(ben, "ring"))["ring"]["id"] == ring["id"]
        status, answered = await asyncio.to_thread(post, second, ben_token, f"/api/rings/{ring['id']}/accept/")
        assert status == 200 and answered["state"] == "answered"
        for ws in (ana, ben):
            assert (await next_of(ws, "ring-answered"))["ring"]["id"] == ring["id"]

        direct = await Room.objects.aget(slug=ring["room"]["slug"])
        ana_call = await sockets.enter_async_context(websockets.connect(await ws_url(first, alice, direct)))
        ana_welcome = await recv(ana_call)
        ben_call = await sockets.enter_async_context(websockets.connect(await ws_url(second, bob, direct)))
        ben_welcome = await recv(ben_call)
        assert ben_welcome["call_id"] == ana_welcome["call_id"]
        assert [p["peer_id"] for p in ben_welcome["peers"]] == [ana_welcome["peer_id"]]
        assert (await next_of(ana_call, "peer-joined"))["peer"]["peer_id"] == ben_welcome["peer_id"]
        assert (await next_of(ben, "presence"))["presence"] == "in-call"  # Ana, seen from Ben's process

        linked = await eventually(lambda: Ring.objects.filter(pk=ring["id"], call_id=ana_welcome["call_id"]).aexists())
        assert linked

        await ben.close()  # his page's socket; he is still in the call
        await ben_call.send(json.dumps({"type": "leave"}))
        seen = [(await next_of(ana, "presence"))["presence"]]
        while seen[-1] != "offline" and len(seen) < 4:
            seen.append((await next_of(ana, "presence"))["presence"])
        # His joining the call, then his leaving it with no socket open (an "online" between them when his
        # process handled the leave before the closed socket).
        assert seen[0] == "in-call" and seen[-1] == "offline", seen
