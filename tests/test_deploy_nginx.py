"""The shipped nginx config in front of two shipped server units (production settings, shared Redis and database).

Everything goes through nginx over TLS (a certificate made by the test), as browsers and programs reach Parley.
"""

import asyncio
import gzip
import json
import re

import pytest
import websockets
from asgiref.sync import sync_to_async
from rest_framework.authtoken.models import Token

from calls.models import CallParticipant
from tests.deploy import Deployment, ResumingPeer, ahttp
from tests.webrtc import loopback_only

pytestmark = [pytest.mark.live, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def deployment(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), Deployment(count=2, env={"PARLEY_THROTTLE_LOGIN_FAILURES": "3/minute"}) as d:
        yield d


@pytest.fixture
def site(deployment, redis_url):
    return deployment.site


async def token_of(user) -> str:
    return (await sync_to_async(Token.objects.create)(user=user)).key


def peer_through(site, token: str, slug: str) -> ResumingPeer:
    """An aiortc peer whose signaling goes through nginx (it resumes if its socket drops)."""

    async def url_for(resume, last_seq):
        query = {} if resume is None else {"resume": resume, "last_seq": last_seq}
        return await site.ws_url(token, slug, **query)

    return ResumingPeer(url_for, ssl_context=site.context)


async def test_http_redirects_to_https_keeping_the_path(deployment):
    status, headers, _ = await ahttp("GET", f"{deployment.nginx.http_url}/rooms/design/?from=mail")
    assert status == 301
    assert headers["Location"] == "https://127.0.0.1/rooms/design/?from=mail"


async def test_pages_are_served_over_https_with_the_proxy_headers_honoured(site):
    """DEBUG is off and SECURE_SSL_REDIRECT on: only X-Forwarded-Proto from nginx keeps this from redirecting."""
    status, headers, body = await site.request("GET", "/accounts/login/")
    assert status == 200, body[:500]
    assert headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert "Secure" in headers["Set-Cookie"]  # the CSRF cookie: Django believes the request came over https
    assert re.search(rb'href="/static/css/parley\.[0-9a-f]{12}\.css"', body)


async def test_static_files_come_from_nginx_hashed_ones_cached_for_a_year(site, deployment):
    hashed = next((deployment.nginx.static_root / "css").glob("parley.*.css")).name
    status, headers, body = await site.request("GET", f"/static/css/{hashed}")
    assert status == 200 and b"{" in body
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"  # nginx's value, not WhiteNoise's

    status, headers, _ = await site.request("GET", "/static/js/peer.js")  # imported by name from call.js
    assert status == 200 and headers["Cache-Control"] == "public, max-age=60"

    status, headers, body = await site.request("GET", "/static/js/peer.js", headers={"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip" and b"RTCPeerConnection" in gzip.decompress(body)

    status, _, body = await site.request("GET", "/static/js/no-such-file.js")
    assert status == 404 and b"<center>nginx</center>" in body  # nginx answered, no server process was asked


async def test_request_bodies_over_parleys_1_mib_are_refused_by_nginx(site, alice):
    status, _, _ = await site.request("POST", "/api/rooms/", token=await token_of(alice),
                                      body=b"x" * (1024 * 1024 + 1), headers={"Content-Type": "application/json"})
    assert status == 413


async def test_a_forged_x_forwarded_for_does_not_escape_the_login_throttle(site):
    """The throttle counts failures per client address: nginx sets X-Forwarded-For, it does not append to it."""
    statuses = []
    for n in range(5):
        status, _, _ = await site.request("POST", "/api/auth/token/", body={"username": "alice", "password": "no"},
                                          headers={"X-Forwarded-For": f"198.51.100.{n}"})
        statuses.append(status)
    assert statuses == [400, 400, 400, 429, 429]  # PARLEY_THROTTLE_LOGIN_FAILURES=3/minute, shared by both processes


async def test_a_70_kib_frame_through_nginx_gets_too_large_and_the_socket_stays_open(site, alice, public_room):
    url = await site.ws_url(await token_of(alice), public_room.slug)
    async with websockets.connect(url, ssl=site.context, max_size=None) as ws:
        welcome = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "offer", "to": welcome["peer_id"], "sdp": "x" * 70 * 1024}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["code"] == "too-large"
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "pong"


async def test_two_peers_through_nginx_land_on_different_processes_and_talk(site, public_room, alice, bob,
                                                                            monkeypatch):
    loopback_only(monkeypatch)
    async with peer_through(site, await token_of(alice), public_room.slug) as a:
        async with peer_through(site, await token_of(bob), public_room.slug) as b:
            await b.connected_to(a.peer_id)
            await a.connected_to(b.peer_id)
            nodes = {p.relay_node async for p in CallParticipant.objects.filter(call_id=a.welcome["call_id"])}
            assert len(nodes) == 2, "least_conn should put the second socket on the other process"
            (await b.channel_open(a.peer_id)).send("through nginx, across processes")
            assert await asyncio.wait_for(a.messages.get(), 10) == (b.peer_id, "through nginx, across processes")
            (await a.channel_open(b.peer_id)).send("and back")
            assert await asyncio.wait_for(b.messages.get(), 10) == (a.peer_id, "and back")
    assert a.socket.closes == [] and b.socket.closes == []  # no socket dropped on the way


async def close_code(ws) -> int:
    while True:
        try:
            await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else 1006


async def test_a_kick_through_the_api_reaches_a_peer_on_either_process_and_both_see_one_roster(
        site, deployment, public_room, alice, bob, carol):
    owner = await token_of(alice)
    async with websockets.connect(await site.ws_url(await token_of(bob), public_room.slug), ssl=site.context) as b, \
            websockets.connect(await site.ws_url(await token_of(carol), public_room.slug), ssl=site.context) as c:
        bob_id, carol_id = json.loads(await b.recv())["peer_id"], json.loads(await c.recv())["peer_id"]
        rows = {str(p.peer_id): p.relay_node async for p in CallParticipant.objects.filter(left_at__isnull=True)}
        assert rows.keys() == {bob_id, carol_id} and len(set(rows.values())) == 2  # one on each process

        rosters = []
        for server in deployment.servers:  # each process directly, as nginx would pick either
            status, _, body = await ahttp("GET", f"{server.url}/api/rooms/{public_room.slug}/participants/",
                                          token=owner, headers={"X-Forwarded-Proto": "https"})
            assert status == 200, body
            rosters.append(sorted(p["peer_id"] for p in json.loads(body)))
        assert rosters == [sorted([bob_id, carol_id])] * 2

        for peer_id in (bob_id, carol_id):
            status, _, body = await site.request(
                "POST", f"/api/rooms/{public_room.slug}/participants/{peer_id}/kick/", token=owner)
            assert status == 204, body
        assert await close_code(b) == 4403
        assert await close_code(c) == 4403
    reasons = [p.leave_reason async for p in CallParticipant.objects.filter(peer_id__in=[bob_id, carol_id])]
    assert reasons == ["kicked", "kicked"]
