"""GET /metrics: protected, in Prometheus text format, and correct across two real daphne processes sharing
PROMETHEUS_MULTIPROC_DIR while a call goes on across them."""

import asyncio
import json
import os
import urllib.request
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from prometheus_client.parser import text_string_to_metric_families

from calls import tickets
from tests.servers import DaphneServer

TOKEN = "s3cret-metrics-token"


def samples(text: str) -> dict:
    """{(name, frozenset(labels)): value} of a scrape."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(scrape: dict, name: str, **labels) -> float:
    return scrape.get((name, frozenset(labels.items())), 0.0)


# --- access -----------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_metrics_are_not_found_unless_configured(client, settings):
    settings.PARLEY_METRICS_TOKEN, settings.PARLEY_METRICS_ALLOW = "", []
    assert client.get("/metrics").status_code == 404


@pytest.mark.django_db
def test_metrics_need_the_bearer_token(client, settings):
    settings.PARLEY_METRICS_TOKEN, settings.PARLEY_METRICS_ALLOW = TOKEN, []
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Token {TOKEN}").status_code == 403
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain; version=")
    assert value(samples(response.content.decode()), "parley_live_calls") == 0


@pytest.mark.django_db
def test_metrics_allow_listed_addresses_without_a_token(client, settings):
    import ipaddress

    settings.PARLEY_METRICS_TOKEN = ""
    settings.PARLEY_METRICS_ALLOW = [ipaddress.ip_network("10.0.0.0/8")]
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200


@pytest.mark.django_db
def test_api_requests_are_counted_by_status(client, settings, public_room, alice):
    settings.PARLEY_METRICS_TOKEN = TOKEN

    def scrape():
        return samples(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())

    before = scrape()
    client.get("/api/me/")  # anonymous
    client.get("/api/rooms/")
    client.force_login(alice)
    client.get("/api/me/")
    after = scrape()
    for status, more in [("200", 1), ("401", 2)]:
        assert value(after, "parley_api_requests_total", status=status) - value(
            before, "parley_api_requests_total", status=status) == more, status


# --- two processes, a live call -----------------------------------------------------------------------

@pytest.fixture
def two_processes(tmp_path, transactional_db, redis_url):
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PARLEY_METRICS_TOKEN": TOKEN, "REDIS_URL": redis_url}
    servers = [DaphneServer(env=env), DaphneServer(env=env)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def scrape_text(server) -> str:
    request = urllib.request.Request(f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def scrape(server) -> dict:
    return samples(scrape_text(server))


async def receive_type(ws, kind: str) -> dict:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["type"] == kind:
            return frame


def moved(before: dict, after: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.mark.asyncio
async def test_a_scrape_of_either_process_counts_a_call_across_both(two_processes, public_room, alice, bob):
    import websockets

    first, second = two_processes
    before = await asyncio.to_thread(scrape, first)
    assert value(before, "parley_open_sockets", kind="room") == 0

    async def socket_on(server, user):
        ticket = await sync_to_async(tickets.issue_ticket)(user=user, room=public_room)
        return await websockets.connect(f"{server.ws_url}/ws/rooms/{public_room.slug}/?ticket={ticket}")

    a = await socket_on(first, alice)
    a_id = (await receive_type(a, "welcome"))["peer_id"]
    b = await socket_on(second, bob)
    b_id = (await receive_type(b, "welcome"))["peer_id"]
    await receive_type(a, "peer-joined")
    try:
        for _ in range(16):  # from the second process to the first
            await b.send(json.dumps({"type": "offer", "to": a_id, "sdp": "v=0\r\n"}))
        for _ in range(16):
            await receive_type(a, "offer")
        await a.send(json.dumps({"type": "candidate", "to": b_id, "candidate": None}))
        await receive_type(b, "candidate")
        await a.send("{not json")
        assert (await receive_type(a, "error"))["code"] == "bad-json"
        await a.send(json.dumps({"type": "stats", "peer": b_id, "rtt_ms": 20}))
        await a.send(json.dumps({"type": "stats", "peer": b_id, "rtt_ms": 20}))  # within 5 s: refused
        assert (await receive_type(a, "error"))["code"] == "rate-limited"
        await b.send(json.dumps({"type": "offer", "to": a_id}))  # no sdp
        assert (await receive_type(b, "error"))["code"] == "bad-message"

        # The other process sees the first one's counts too: relayed frames from its next heartbeat on (2 s).
        async def settled():
            for _ in range(100):
                during = await asyncio.to_thread(scrape, second)
                if moved(before, during, "parley_frames_relayed_total", type="offer") >= 16 and moved(
                        before, during, "parley_frames_relayed_total", type="candidate") >= 1:
                    return during
                await asyncio.sleep(0.1)
            return during

        during = await settled()
        assert value(during, "parley_open_sockets", kind="room") == 2
        assert value(during, "parley_live_calls") == 1
        assert value(during, "parley_live_participants", state="connected") == 2
        assert moved(before, during, "parley_frames_relayed_total", type="offer") == 16
        assert moved(before, during, "parley_frames_relayed_total", type="candidate") == 1
        assert moved(before, during, "parley_frames_relayed_total", type="media-state") == 0
        assert moved(before, during, "parley_frames_refused_total", type="other", reason="bad-json") == 1
        assert moved(before, during, "parley_frames_refused_total", type="stats", reason="rate-limited") == 1
        assert moved(before, during, "parley_frames_refused_total", type="offer", reason="bad-message") == 1
        assert moved(before, during, "parley_rate_limit_hits_total", limit="stats") == 1
        assert moved(before, during, "parley_stats_reports_total") == 1
        assert moved(before, during, "parley_join_seconds_count") == 2
        assert moved(before, during, "parley_relay_seconds_count") == 1  # one frame in 16 is timed
        assert 0 < moved(before, during, "parley_relay_seconds_sum") < 1
        assert moved(before, during, "parley_resumes_total") == 0
        assert value(during, "parley_db_thread_queue_depth") == 0
        if os.environ.get("PARLEY_DOCS_SCREENSHOTS"):  # regenerates docs/metrics-sample.txt (docs/operations.md)
            text = await asyncio.to_thread(scrape_text, second)
            lines = [line for line in text.splitlines() if line.startswith("parley_") and "_created" not in line]
            Path(os.environ["PARLEY_DOCS_SCREENSHOTS"], "metrics-sample.txt").write_text("\n".join(lines) + "\n")
    finally:
        await a.close()
        await b.close()

    async def all_closed():
        for _ in range(100):
            after = await asyncio.to_thread(scrape, first)
            if value(after, "parley_open_sockets", kind="room") == 0 and value(after, "parley_live_calls") == 0:
                return after
            await asyncio.sleep(0.1)
        return after

    after = await all_closed()
    assert value(after, "parley_open_sockets", kind="room") == 0 and value(after, "parley_live_calls") == 0
    assert moved(before, after, "parley_frames_relayed_total", type="offer") == 16


@pytest.mark.django_db
def test_rings_are_counted_by_outcome(client, settings, alice, bob, private_room):
    from people import services

    settings.PARLEY_METRICS_TOKEN = TOKEN  # alice and bob share private_room: they may ring each other

    def scrape():
        return samples(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())

    before = scrape()
    declined = services.start_ring(caller=alice, callee_username="bob")
    services.decline_ring(by=bob, ring_id=declined.pk)
    missed = services.start_ring(caller=alice, callee_username="bob")
    services.expire_rings(now=missed.expires_at)
    cancelled = services.start_ring(caller=alice, callee_username="bob")
    services.cancel_ring(by=alice, ring_id=cancelled.pk)
    after = scrape()
    for outcome in ("declined", "missed", "cancelled"):
        assert moved(before, after, "parley_rings_total", outcome=outcome) == 1, outcome
    assert moved(before, after, "parley_rings_total", outcome="answered") == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_resumes_and_joins_are_counted(peers, public_room, alice, bob):
    from prometheus_client import REGISTRY

    def count(name):
        return REGISTRY.get_sample_value(name) or 0

    resumes, joins = count("parley_resumes_total"), count("parley_join_seconds_count")
    first, second = await peers.together(public_room, alice, bob)
    await second.drop()  # a lost connection: the participation waits for a resume
    again = await peers(bob, public_room, resume=second)
    assert again.welcome["resumed"] is True
    assert count("parley_resumes_total") - resumes == 1
    assert count("parley_join_seconds_count") - joins == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_rate_limit_hits_are_counted_once_per_refused_frame(peers, public_room, alice):
    from prometheus_client import REGISTRY

    def hits():
        return REGISTRY.get_sample_value("parley_rate_limit_hits_total", {"limit": "frames"}) or 0

    before = hits()
    me = await peers(alice, public_room)
    for _ in range(130):  # a burst of 100 is allowed
        await me.send({"type": "ping"})
    answers = [(await me.receive())["type"] for _ in range(130)]
    refused = answers.count("error")
    assert refused >= 20 and answers.count("pong") == 130 - refused
    assert hits() - before == refused
