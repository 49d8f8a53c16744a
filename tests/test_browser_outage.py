"""The call page through signaling trouble, in real Chromium against today's server: Leave, a reload, a killed
server process, a silent socket, a replaced session, another peer reconnecting, and the resume parameters.

Where the server does not speak the continuity protocol yet (resume tokens, seq, peer-state, 4410), the test puts
those frames on the wire itself through a SocketTap; tests/test_browser_continuity.py needs the real thing.
"""

import asyncio
import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from asgiref.sync import sync_to_async

from calls.models import CallParticipant
from tests.browser import SocketTap, join_call, tile, wait_connected, wait_frames_grow, wait_video_playing

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session"), pytest.mark.django_db(transaction=True)]

STATIC_JS = Path(__file__).resolve().parent.parent / "static" / "js"
STORED = "parley.call."  # sessionStorage key of the participation, per room slug


async def two_in_a_call(browsers, room, first, second, password, *, tap_second: SocketTap | None = None):
    page_one = await browsers.logged_in(first, password, room.get_absolute_url())
    page_two = await browsers.logged_in(second, password, room.get_absolute_url())
    if tap_second:
        await tap_second.attach(page_two)
    one = await join_call(page_one)
    two = await join_call(page_two)
    await wait_connected(page_one, two)
    await wait_connected(page_two, one)
    return page_one, one, page_two, two


async def stored_participation(page, room):
    text = await page.evaluate("(key) => sessionStorage.getItem(key)", STORED + room.slug)
    return json.loads(text) if text else None


def speaks_continuity():
    """A rewrite for SocketTap: today's frames dressed as the continuity protocol's (a token per connection in the
    welcome, which does not resume; a seq on every later frame but errors and pongs)."""
    counters: dict[int, int] = {}

    def rewrite(index, frame):
        if frame["type"] == "welcome":
            counters[index] = 0
            return {**frame, "resume_token": f"token-{index}", "resume_seconds": 30, "resumed": False}
        if frame["type"] in ("error", "pong"):
            return frame
        counters[index] += 1
        return {**frame, "seq": counters[index]}

    return rewrite


def imports_of(path: Path) -> set[str]:
    return set(re.findall(r'^import .* from "\./([\w-]+\.js)";$', path.read_text(), re.M))


async def test_the_call_page_loads_its_modules_one_topic_each_without_cycles(browsers, alice, password,
                                                                               public_room):
    graph = {path.name: imports_of(path) for path in STATIC_JS.glob("*.js")}
    visiting, done = set(), set()

    def visit(name, trail):
        assert name not in visiting, f"circular import: {' -> '.join([*trail, name])}"
        if name in done:
            return
        visiting.add(name)
        for imported in graph[name]:
            visit(imported, [*trail, name])
        visiting.discard(name)
        done.add(name)

    visit("call.js", [])
    assert {"tiles.js", "controls.js", "chat.js", "signaling.js", "peer.js", "media.js", "api.js"} <= done
    visit("me.js", [])  # every page of a logged-in user: the per-user socket and ringing (issue 12)
    for name in done:
        assert len((STATIC_JS / name).read_text().splitlines()) <= 420, f"{name} is growing past one topic"

    page = await browsers.new_page("alice")
    loaded = []
    page.on("response", lambda response: loaded.append(response) if "/static/js/" in response.url else None)
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    await page.goto(f"/accounts/login/?next={public_room.get_absolute_url()}")
    await page.fill("#id_username", alice.username)
    await page.fill("#id_password", password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_selector("#call[data-ready=true]")
    assert {Path(urlparse(r.url).path).name for r in loaded if r.ok} == done
    assert errors == []
    assert await page.locator("#call-banner").is_hidden()


async def test_leave_sends_leave_then_closes_cleanly_and_the_other_sees_left(browsers, alice, bob, password,
                                                                            private_room):
    tap = SocketTap()
    alice_page, alice_peer, bob_page, bob_peer = await two_in_a_call(browsers, private_room, alice, bob, password,
                                                                     tap_second=tap)
    await bob_page.get_by_role("button", name="Leave").click()
    await bob_page.wait_for_selector("#call[data-state=ended][data-close-code='1000']")

    await alice_page.wait_for_selector('#call-events li[data-type="peer-left"]:has-text("bob left.")',
                                       state="attached")
    await alice_page.wait_for_selector(tile(bob_peer), state="detached")
    assert tap.types_sent()[-1] == "leave"
    assert tap.closed_by_page == {0: 1000}
    reason = await sync_to_async(lambda: CallParticipant.objects.get(peer_id=bob_peer).leave_reason)()
    assert reason == "left"
    assert await stored_participation(bob_page, private_room) is None
    await bob_page.wait_for_timeout(1000)  # and no reconnection after a Leave
    assert len(tap.urls) == 1


async def test_a_reload_resumes_the_same_participation(browsers, alice, bob, password, private_room):
    tap = SocketTap()
    alice_page, alice_peer, bob_page, bob_peer = await two_in_a_call(browsers, private_room, alice, bob, password,
                                                                     tap_second=tap)
    await bob_page.reload()
    await bob_page.wait_for_selector("#call[data-state=joined]", timeout=30_000)
    assert await bob_page.get_attribute("#call", "data-peer-id") == bob_peer  # the same participation
    assert "leave" not in tap.types_sent()
    await wait_connected(alice_page, bob_peer)
    await wait_connected(bob_page, alice_peer)
    assert await alice_page.locator('#call-events li[data-type="peer-left"]').count() == 0  # never "left"
    assert await alice_page.locator(tile(bob_peer)).count() == 1
    rows = await sync_to_async(lambda: list(CallParticipant.objects.filter(user=bob)))()
    assert len(rows) == 1 and rows[0].reconnects == 1


async def test_a_killed_server_shows_the_banner_and_the_call_resumes(own_browsers, own_server, alice, bob,
                                                                         password, private_room):
    alice_page, alice_peer, bob_page, bob_peer = await two_in_a_call(own_browsers, private_room, alice, bob,
                                                                     password)
    await wait_video_playing(alice_page, bob_peer)

    await asyncio.to_thread(own_server.kill)
    for page in (alice_page, bob_page):
        banner = page.locator("#call-banner[data-state=reconnecting]")
        await banner.wait_for(state="visible")
        assert "Reconnecting to the server" in await banner.text_content()
        assert await page.get_attribute("#call", "data-state") == "reconnecting"
        assert "In the call" not in await page.text_content("#call-status")
    # The attempts go on (and are counted) while nobody answers; media still flows peer to peer meanwhile.
    await alice_page.wait_for_selector("#call-banner[data-attempt='3']")
    assert "attempt 3" in await alice_page.text_content("#call-banner")
    await wait_frames_grow(alice_page, bob_peer)
    await wait_frames_grow(bob_page, alice_peer)

    await asyncio.to_thread(own_server.restart)
    for page in (alice_page, bob_page):
        await page.wait_for_selector("#call[data-state=joined]", timeout=30_000)
        await page.locator("#call-banner").wait_for(state="hidden")
    # Both resumed their participations: the same peer ids, and nobody was ever shown as having left.
    assert await alice_page.get_attribute("#call", "data-peer-id") == alice_peer
    assert await bob_page.get_attribute("#call", "data-peer-id") == bob_peer
    await wait_connected(alice_page, bob_peer)
    await wait_connected(bob_page, alice_peer)
    await wait_frames_grow(alice_page, bob_peer)
    await wait_frames_grow(bob_page, alice_peer)
    for page in (alice_page, bob_page):
        assert await page.locator('#call-events li[data-type="peer-left"]').count() == 0


async def test_a_socket_that_goes_silent_is_given_up_and_replaced(browsers, alice, bob, password, private_room):
    silent = {"on": False}
    tap = SocketTap(rewrite=lambda index, frame: None if index == 0 and silent["on"] else frame)
    alice_page, alice_peer, bob_page, bob_peer = await two_in_a_call(browsers, private_room, alice, bob, password,
                                                                     tap_second=tap)
    silent["on"] = True  # a hung server: the socket stays open, nothing comes back, not even a pong
    loop = asyncio.get_running_loop()
    started = loop.time()
    await bob_page.wait_for_selector("#call[data-reconnects='1']", timeout=20_000)
    # A ping within 10 s, no answer within 5 s of it: the page closed the socket itself.
    assert loop.time() - started < 17
    assert tap.closed_by_page[0] == 4000
    assert "ping" in tap.types_sent(0)
    await bob_page.wait_for_selector("#call[data-state=joined]")
    new_bob = await bob_page.get_attribute("#call", "data-peer-id")
    await wait_connected(alice_page, new_bob)
    await wait_video_playing(bob_page, alice_peer)


async def test_a_session_replaced_elsewhere_ends_this_page_for_good(browsers, alice, bob, password, private_room):
    tap = SocketTap(rewrite=speaks_continuity())
    alice_page, alice_peer, bob_page, bob_peer = await two_in_a_call(browsers, private_room, alice, bob, password,
                                                                     tap_second=tap)
    assert (await stored_participation(bob_page, private_room))["token"] == "token-0"

    await tap.close_page_side(4410, "replaced")

    await bob_page.wait_for_selector("#call[data-state=ended][data-close-code='4410']")
    alert = bob_page.get_by_role("alert")
    assert "another tab or device" in await alert.text_content()
    assert await stored_participation(bob_page, private_room) is None
    await bob_page.wait_for_timeout(1500)  # longer than the first retries would take
    assert len(tap.urls) == 1
    assert await bob_page.get_attribute("#call", "data-state") == "ended"


async def test_a_peer_reconnecting_keeps_its_tile_and_media(browsers, alice, bob, password, private_room):
    tap = SocketTap()
    bob_page, bob_peer, alice_page, alice_peer = await two_in_a_call(browsers, private_room, bob, alice, password,
                                                                     tap_second=tap)
    await wait_video_playing(alice_page, bob_peer)

    tap.inject({"type": "peer-state", "peer_id": bob_peer, "state": "reconnecting"})
    bob_tile = alice_page.locator(tile(bob_peer))
    await alice_page.wait_for_selector(f'{tile(bob_peer)}[data-state="reconnecting"]')
    assert await bob_tile.locator(".tile-state").text_content() == "reconnecting"
    assert await bob_tile.get_attribute("data-connection-state") == "connected"  # the connection stays
    await wait_frames_grow(alice_page, bob_peer)  # and so does the video
    assert await alice_page.text_content("#call-status") == "Connection lost, waiting for others…"
    assert await alice_page.get_attribute("#call", "data-peers-lost") == "true"

    tap.inject({"type": "peer-state", "peer_id": bob_peer, "state": "connected"})
    await alice_page.wait_for_selector(f'{tile(bob_peer)}[data-state="connected"]')
    assert await bob_tile.locator(".tile-state").text_content() == ""
    assert "Connection lost" not in await alice_page.text_content("#call-status")
    assert await alice_page.locator('#call-events li[data-type="peer-left"]').count() == 0


async def test_the_page_asks_to_resume_with_its_token_and_last_seq_and_a_reload_rejoins(
        browsers, alice, bob, password, private_room):
    tap = SocketTap(rewrite=speaks_continuity())
    alice_page, alice_peer, bob_page, bob_peer = await two_in_a_call(browsers, private_room, alice, bob, password,
                                                                     tap_second=tap)
    stored = await stored_participation(bob_page, private_room)
    assert stored["token"] == "token-0" and stored["peerId"] == bob_peer and stored["lastSeq"] > 0
    assert parse_qs(urlparse(tap.urls[0]).query) == {}

    await bob_page.evaluate("parley.dropSignaling()")
    await bob_page.wait_for_selector("#call[data-reconnects='1'][data-state=joined]")
    last_seq = stored["lastSeq"]
    query = parse_qs(urlparse(tap.urls[1]).query)
    assert query["resume"] == ["token-0"] and int(query["last_seq"][0]) >= last_seq
    # Today's server cannot resume: a fresh join, new token, new peer id, seq counted afresh; the call goes on.
    new_bob = await bob_page.get_attribute("#call", "data-peer-id")
    assert new_bob != bob_peer and await bob_page.get_attribute("#call", "data-resumed") == "false"
    await wait_connected(alice_page, new_bob)
    await wait_connected(bob_page, alice_peer)
    stored = await stored_participation(bob_page, private_room)
    assert stored["token"] == "token-1" and stored["peerId"] == new_bob

    await alice_page.get_by_role("textbox", name="Message").fill("before the reload")
    await alice_page.get_by_role("button", name="Send").click()
    await bob_page.wait_for_selector('#chat-log li:has-text("before the reload")')

    await bob_page.reload()
    # No click: the reloaded page rejoins by itself, asking to resume its participation, and gets its chat back.
    await bob_page.wait_for_selector("#call[data-state=joined]")
    assert len(tap.urls) == 3
    assert parse_qs(urlparse(tap.urls[2]).query)["resume"] == ["token-1"]
    assert await bob_page.locator('#chat-log li:has-text("before the reload")').count() == 1
    newest_bob = await bob_page.get_attribute("#call", "data-peer-id")
    await wait_connected(alice_page, newest_bob)
    await wait_video_playing(alice_page, newest_bob)

    await bob_page.get_by_role("button", name="Leave").click()
    assert await stored_participation(bob_page, private_room) is None


# Two Peer objects in one page, their frames handed over directly (by peer id, as the server routes them): what the
# page does when the other side starts over with a new RTCPeerConnection, which today's server cannot make happen
# (a reloaded page there is a new peer). `reloader_polite`: the side that starts over is the later joiner.
PEERS_HARNESS = """async ({ reloaderPolite, oldSideRestarts }) => {
  const base = document.querySelector('script[src*="call.js"]').src;
  const { Peer } = await import(new URL("peer.js", base));
  const { LocalMedia } = await import(new URL("media.js", base));
  const media = new LocalMedia();
  await media.start({ audio: true, video: true });
  const peers = {};
  const deliver = (to, frame) => setTimeout(() => {
    const peer = peers[to];
    if (frame.type === "candidate") peer.enqueue(() => peer.handleCandidate(frame.candidate));
    else peer.enqueue(() => peer.handleDescription(frame.type, frame.sdp));
  }, 5);
  // "stayer" keeps its page; "reloader" is the one whose page goes away and comes back with a new connection.
  const make = (name, other, polite, initiator) => {
    peers[name] = new Peer({ peerId: other, user: null, polite, initiator, iceServers: [], local: media,
                             send: (frame) => deliver(other, frame) });
    return peers[name];
  };
  const decoded = async (peer) => {
    let frames = 0;
    for (const report of (await peer.pc.getStats()).values()) {
      if (report.type === "inbound-rtp" && report.kind === "video") frames += report.framesDecoded || 0;
    }
    return frames;
  };
  const until = async (what, test, seconds = 15) => {
    for (let i = 0; i < seconds * 10; i += 1) {
      if (await test()) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`timed out waiting for ${what}`);
  };
  const flowing = async (peer) => { const start = await decoded(peer);
                                    await until("video frames", async () => (await decoded(peer)) > start + 5); };
  // The later joiner offers first (the join convention) and is the polite one.
  const stayer = make("stayer", "reloader", reloaderPolite ? false : true, reloaderPolite ? false : true);
  make("reloader", "stayer", reloaderPolite, reloaderPolite);
  await until("the first connection", () => stayer.connectionState === "connected"
                                          && peers.reloader.connectionState === "connected");
  await flowing(stayer);
  const first = stayer.pc;

  peers.reloader.close();                                    // the page goes away...
  if (oldSideRestarts) stayer.restartIce("test");            // (...while the other side happens to renegotiate)
  const fresh = make("reloader", "stayer", reloaderPolite, true);  // ...and comes back: it offers afresh
  await until("the new connection", () => fresh.connectionState === "connected"
                                          && stayer.connectionState === "connected" && stayer.pc !== first, 20);
  await flowing(stayer);
  await flowing(fresh);
  const states = [stayer.pc.signalingState, fresh.pc.signalingState];
  const sameVideo = stayer.remoteStream.getVideoTracks().length === 1
                    && stayer.remoteStream.getVideoTracks()[0].readyState === "live";
  stayer.close(); fresh.close(); media.stopAll();
  return { states, sameVideo, rebuilds: stayer.rebuilds.length + fresh.rebuilds.length };
}"""


@pytest.mark.parametrize("reloader_polite", [True, False], ids=["later-joiner-reloads", "earlier-joiner-reloads"])
@pytest.mark.parametrize("old_side_restarts", [False, True], ids=["quiet", "other-side-renegotiating"])
async def test_a_peer_starting_over_with_a_new_connection_is_answered_from_a_new_one(
        browsers, alice, password, public_room, reloader_polite, old_side_restarts):
    page = await browsers.logged_in(alice, password, public_room.get_absolute_url())
    await page.wait_for_selector("#call[data-ready=true]")
    result = await page.evaluate(PEERS_HARNESS, {"reloaderPolite": reloader_polite,
                                                 "oldSideRestarts": old_side_restarts})
    assert result["states"] == ["stable", "stable"]
    assert result["sameVideo"]  # one live video track in the stayer's (unchanged) media stream
    assert 1 <= result["rebuilds"] <= 4
