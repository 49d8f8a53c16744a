"""TURN credentials from /api/ice-servers/: checked by recomputing them, and by a real coturn (Debian's `coturn`)
that two aiortc peers, restricted to relay candidates, connect through."""

import asyncio
import base64
import hashlib
import hmac
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from asgiref.sync import sync_to_async

from tests.helpers import api_as, unavailable
from tests.servers import PROJECT

pytestmark = pytest.mark.django_db

SECRET = "test-turn-secret-of-the-suite"
REALM = "parley.test"


def independent_credential(secret: str, username: str) -> str:
    """The TURN REST API credential, written out again here rather than imported from calls.ice."""
    return base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def turn_settings(settings):
    def configure(*, port: int = 3478, ttl: int = 600):
        settings.PARLEY_STUN_URLS = []
        settings.PARLEY_TURN_URLS = [f"turn:127.0.0.1:{port}?transport=udp"]
        settings.PARLEY_TURN_SECRET = SECRET
        settings.PARLEY_TURN_TTL = ttl

    return configure


def fetch_ice_servers(user) -> dict:
    response = api_as(user).get("/api/ice-servers/")
    assert response.status_code == 200
    return response.json()


def test_the_turn_credential_matches_an_independent_computation(alice, turn_settings):
    turn_settings(ttl=600)
    before = int(time.time())
    body = fetch_ice_servers(alice)
    after = int(time.time())
    assert body["ttl"] == 600
    [turn] = body["ice_servers"]
    assert turn["urls"] == ["turn:127.0.0.1:3478?transport=udp"]
    expiry, user_id = turn["username"].split(":")
    assert user_id == str(alice.pk)
    assert before + 600 <= int(expiry) <= after + 600
    assert turn["credential"] == independent_credential(SECRET, turn["username"])


def test_stun_urls_come_before_turn(alice, turn_settings, settings):
    turn_settings()
    settings.PARLEY_STUN_URLS = ["stun:stun.example.org"]
    servers = fetch_ice_servers(alice)["ice_servers"]
    assert servers[0] == {"urls": "stun:stun.example.org"} and "credential" in servers[1]


# --- A real coturn ----------------------------------------------------------------------------------


@pytest.fixture
def coturn(tmp_path):
    """turnserver on a free loopback port with the TURN REST API secret; stopped by pid at teardown."""
    binary = shutil.which("turnserver") or ("/usr/bin/turnserver" if Path("/usr/bin/turnserver").exists() else None)
    if binary is None:
        unavailable("coturn's turnserver is not installed (apt-get install coturn)")
    port = free_udp_port()
    relay_low = 50000 + (port % 1000) * 10  # a small relay port range of its own
    log_path = PROJECT / "test-artifacts" / f"turnserver-{port}.log"
    log_path.parent.mkdir(exist_ok=True)
    log = open(log_path, "w")
    process = subprocess.Popen(
        [binary, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
         f"--min-port={relay_low}", f"--max-port={relay_low + 9}", "--use-auth-secret",
         f"--static-auth-secret={SECRET}", f"--realm={REALM}", "--no-tls", "--no-dtls", "--no-tcp",
         "--allow-loopback-peers", "--no-cli", "--no-software-attribute", f"--db={tmp_path / 'turndb'}",
         f"--pidfile={tmp_path / 'turnserver.pid'}", "--log-file=stdout", "--simple-log"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while "Total General servers" not in log_path.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"turnserver did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        time.sleep(0.2)  # the listeners open right after
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


async def allocate(port: int, username: str, password: str) -> None:
    """One TURN allocation on coturn with these credentials; raises stun.TransactionFailed when refused."""
    transport, _ = await asyncio.wait_for(
        create_turn_endpoint(asyncio.DatagramProtocol, server_addr=("127.0.0.1", port), username=username,
                             password=password),
        timeout=10,
    )
    transport.close()


async def assert_refused(port: int, username: str, password: str) -> None:
    with pytest.raises(stun.TransactionFailed) as refusal:
        await allocate(port, username, password)
    assert refusal.value.response.error_code == 401


def relay_only(ice: dict) -> RTCConfiguration:
    servers = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
               for s in ice["ice_servers"]]
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=RTCIceTransportPolicy.RELAY)


def candidate_types(sdp: str) -> set[str]:
    return {line.split(" typ ")[1].split()[0] for line in sdp.splitlines() if line.startswith("a=candidate:")}


@pytest.mark.timeout(60)
async def test_two_relay_only_peers_connect_through_coturn_with_the_api_credentials(alice, bob, coturn,
                                                                                    turn_settings):
    turn_settings(port=coturn)
    alice_ice, bob_ice = await sync_to_async(fetch_ice_servers)(alice), await sync_to_async(fetch_ice_servers)(bob)
    caller, callee = RTCPeerConnection(relay_only(alice_ice)), RTCPeerConnection(relay_only(bob_ice))
    received = asyncio.get_running_loop().create_future()
    try:
        channel = caller.createDataChannel("chat")
        channel.on("open", lambda: channel.send("hello through the relay"))

        @callee.on("datachannel")
        def on_datachannel(incoming):
            incoming.on("message", lambda message: received.done() or received.set_result(message))

        await asyncio.wait_for(caller.setLocalDescription(await caller.createOffer()), 20)
        assert candidate_types(caller.localDescription.sdp) == {"relay"}
        await callee.setRemoteDescription(caller.localDescription)
        await asyncio.wait_for(callee.setLocalDescription(await callee.createAnswer()), 20)
        assert candidate_types(callee.localDescription.sdp) == {"relay"}
        await caller.setRemoteDescription(callee.localDescription)

        assert await asyncio.wait_for(received, 20) == "hello through the relay"
        assert caller.iceConnectionState in ("connected", "completed")
    finally:
        await asyncio.wait_for(caller.close(), 10)
        await asyncio.wait_for(callee.close(), 10)


@pytest.mark.timeout(60)
async def test_coturn_refuses_a_wrong_credential(alice, coturn, turn_settings):
    turn_settings(port=coturn)
    [turn] = (await sync_to_async(fetch_ice_servers)(alice))["ice_servers"]
    await allocate(coturn, turn["username"], turn["credential"])  # the real one works
    await assert_refused(coturn, turn["username"], independent_credential("another-secret", turn["username"]))
    forged_user = f"{turn['username'].split(':')[0]}:{alice.pk + 1}"  # someone else's name, alice's credential
    await assert_refused(coturn, forged_user, turn["credential"])


@pytest.mark.timeout(60)
async def test_coturn_refuses_the_credential_once_its_ttl_has_passed(alice, coturn, turn_settings):
    turn_settings(port=coturn, ttl=2)
    [turn] = (await sync_to_async(fetch_ice_servers)(alice))["ice_servers"]
    await allocate(coturn, turn["username"], turn["credential"])
    expiry = int(turn["username"].split(":")[0])
    await asyncio.sleep(max(expiry - time.time(), 0) + 1.5)
    await assert_refused(coturn, turn["username"], turn["credential"])
