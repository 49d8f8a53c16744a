"""The call page in SFU mode (docs/sfu.md): three Chromium pages in a `media: sfu` room, on a daphne process told
where the test Janus is, see each other's video through Janus and chat through the signaling socket.

ICE stays on 127.0.0.0/8. Chromium gathers on every interface it has, eth0's address (192.0.2.2) included, and with
only an address filter it still sends its ICE checks from that address to Janus (seen: over lo, from 192.0.2.2 to
127.0.0.2); no flag or policy of Chromium restricts it to some interfaces (WebRtcIPHandling only narrows it to the
default route's, eth0). So Chromium and Janus run in a network namespace of the tests' own, `parleysfu`
(tests/janus.py: its loopback and a veth with 127.0.0.2, nothing else), and reach daphne and Parley reaches Janus's
API through Unix-socket bridges. The test checks what Chromium gathered and which pairs it selected.
"""

import os
import time

import pytest
import pytest_asyncio

from calls.models import Room
from tests.browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    Browsers,
    frames_decoded,
    join_call,
    tile,
    wait_frames_grow,
    wait_video_playing,
)
from tests.helpers import unavailable
from tests.janus import IP, NETNS, Bridge, Janus, ensure_netns
from tests.servers import DaphneServer

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session"), pytest.mark.django_db(transaction=True)]

# Every RTCPeerConnection of the page, kept for the checks below (before the page's own scripts run).
KEEP_CONNECTIONS = """
(() => {
  const Native = window.RTCPeerConnection;
  window.__connections = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); window.__connections.push(this); }
  };
})();
"""

# [gathered local candidate addresses, [local, remote] of each selected pair] over the page's open connections.
CANDIDATES = """
async () => {
  const gathered = new Set();
  const pairs = [];
  let open = 0;
  for (const pc of window.__connections) {
    if (pc.connectionState === "closed") continue;
    open += 1;
    const stats = await pc.getStats();
    for (const report of stats.values()) {
      if (report.type === "local-candidate") gathered.add(report.address);
      if (report.type !== "transport" || !report.selectedCandidatePairId) continue;
      const pair = stats.get(report.selectedCandidatePairId);
      pairs.push([stats.get(pair.localCandidateId).address, stats.get(pair.remoteCandidateId).address]);
    }
  }
  return { gathered: [...gathered], pairs, open };
}
"""


@pytest.fixture(scope="module")
def janus():
    with Janus(netns=ensure_netns()) as server:
        yield server


@pytest.fixture(scope="module")
def sfu_server(janus, django_db_setup, django_db_blocker):
    """daphne here, told where Janus is, and reachable on the same port from inside the namespace. An `auto` room
    is a mesh up to two people (PARLEY_MESH_MAX=2), so that three pages show the move to the SFU."""
    with django_db_blocker.unblock():
        server = DaphneServer(env={"PARLEY_JANUS_URL": janus.url, "PARLEY_JANUS_API_SECRET": janus.api_secret,
                                   "PARLEY_JANUS_ADMIN_KEY": janus.admin_key, "PARLEY_MESH_MAX": "2"})
        server.start()
    bridge = Bridge(listen_port=server.port, listen_netns=NETNS, target_port=server.port, target_netns=None,
                    directory=janus.dir).start()
    yield server
    bridge.stop()
    server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def netns_browser(janus):
    """Debian's Chromium, started inside the namespace (Playwright drives it over a pipe, which needs no network)."""
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    launcher = janus.dir / "chromium-in-netns"
    launcher.write_text(f'#!/bin/sh\nexec {IP} netns exec {NETNS} {CHROMIUM} "$@"\n')
    launcher.chmod(0o755)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(launcher), headless=True, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest_asyncio.fixture(loop_scope="session")
async def sfu_browsers(netns_browser, sfu_server, request):
    opened = Browsers(netns_browser, sfu_server, request.node.name)
    yield opened
    report = getattr(request.node, "report_call", None)
    if report is None or report.failed:
        await opened.save_artifacts()
    await opened.close()


async def opened(browsers, room, user, password):
    page = await browsers.logged_in(user, password, room.get_absolute_url())
    await page.add_init_script(KEEP_CONNECTIONS)
    await page.reload()
    return page


async def in_the_call(browsers, room, users, password):
    pages = [await opened(browsers, room, user, password) for user in users]
    peers = [await join_call(page) for page in pages]
    return pages, peers


async def see_each_other(pages, peers) -> None:
    for page, me in zip(pages, peers, strict=True):
        for other in peers:
            if other == me:
                continue
            await wait_video_playing(page, other)
            assert await page.evaluate(f"document.querySelector('{tile(other)} video').videoWidth") > 0
            seen = await wait_frames_grow(page, other)
            await wait_frames_grow(page, other, beyond=seen)  # still decoding: the video goes on
        assert await page.locator(".tile").count() == len(pages)


async def only_loopback_to_janus(page) -> None:
    found = await page.evaluate(CANDIDATES)
    print("candidates", found)
    # Two connections, both to Janus (the publisher and the subscriber): no mesh.
    assert found["open"] == 2 and len(found["pairs"]) == 2, found
    assert all(local.startswith("127.") and remote == "127.0.0.2" for local, remote in found["pairs"]), found
    loopback = ("127.", "::1", "fe80:")  # and IPv6 link-local, inside the namespace too
    assert found["gathered"] and all(address.startswith(loopback) for address in found["gathered"]), found


async def test_three_people_in_an_sfu_call_see_each_other_and_chat(sfu_browsers, alice, bob, carol, password,
                                                                    public_room):
    public_room.media = Room.Media.SFU
    await public_room.asave(update_fields=["media"])
    pages, peers = await in_the_call(sfu_browsers, public_room, [alice, bob, carol], password)

    for page in pages:
        assert await page.get_attribute("#call", "data-media") == "sfu"
    await see_each_other(pages, peers)
    for page in pages:
        await only_loopback_to_janus(page)

    await pages[0].get_by_role("textbox", name="Message").fill("Hello through the SFU")
    await pages[0].get_by_role("button", name="Send").click()
    for page in pages[1:]:
        await page.wait_for_selector(f'#chat-log li[data-from="{peers[0]}"]:has-text("Hello through the SFU")')
    assert await pages[0].locator('#chat-log li[data-from="local"]:has-text("Hello through the SFU")').count() == 1

    # Mute and camera as in a mesh: the others' tiles say so; Bob's camera comes back.
    await pages[1].get_by_role("button", name="Mute microphone").click()
    await pages[1].get_by_role("button", name="Turn camera off").click()
    for page in (pages[0], pages[2]):
        await page.wait_for_selector(f'{tile(peers[1])}[data-audio="false"][data-video="false"]')
    await pages[1].get_by_role("button", name="Turn camera on").click()
    await pages[0].wait_for_selector(f'{tile(peers[1])}[data-video="true"]')
    await wait_frames_grow(pages[0], peers[1])

    # Alice (the owner) removes Carol: Carol's page ends, her tile and stream go from the others.
    await pages[0].get_by_role("button", name="Options for carol").click()
    await pages[0].get_by_role("menuitem", name="Remove carol from the call…").click()
    dialog = pages[0].get_by_role("dialog", name="Remove carol from the call?")
    await dialog.get_by_role("button", name="Remove").click()
    await pages[2].wait_for_selector("#call[data-state=ended][data-close-code='4403']")
    for page in pages[:2]:
        await page.wait_for_selector(tile(peers[2]), state="detached")
    await see_each_other(pages[:2], peers[:2])

    for page in pages[:2]:
        await page.get_by_role("button", name="Leave").click()
        await page.wait_for_selector("#call[data-state=ended]")



async def test_a_mesh_call_that_grows_past_the_limit_moves_to_the_sfu_by_itself(sfu_browsers, alice, bob, carol,
                                                                              password, public_room):
    assert public_room.media == Room.Media.AUTO
    pages, peers = await in_the_call(sfu_browsers, public_room, [alice, bob], password)
    for page in pages:
        assert await page.get_attribute("#call", "data-media") == "mesh"
    await see_each_other(pages, peers)
    # Alice pins Bob's tile: the same tile, pinned still, shows Bob through the SFU afterwards.
    await pages[0].dblclick(tile(peers[1]))
    await pages[0].evaluate(f"document.querySelector('{tile(peers[1])}').dataset.marker = 'mesh'")

    carol_page = await opened(sfu_browsers, public_room, carol, password)
    carol_peer = await join_call(carol_page)
    # The freeze: from the page's move to the SFU to Bob's picture moving again in Alice's tile.
    await pages[0].wait_for_selector("#call[data-media=sfu]")
    moved_at = time.monotonic()
    at_move = await frames_decoded(pages[0], peers[1])
    await pages[0].wait_for_function(  # counted on from there, or afresh for the new stream: either way, moving
        """([selector, before]) => { const n = document.querySelector(selector + " video")
                                       .getVideoPlaybackQuality().totalVideoFrames;
                                     return n > before + 2 || (n < before && n > 2); }""",
        arg=[tile(peers[1]), at_move])
    print(f"mesh -> SFU: Bob's video moves again in Alice's tile {time.monotonic() - moved_at:.2f} s after the move")
    pages, peers = [*pages, carol_page], [*peers, carol_peer]
    for page in pages:
        await page.wait_for_selector("#call[data-media=sfu]")
    await see_each_other(pages, peers)
    for page in pages:
        await only_loopback_to_janus(page)
    moved = pages[0].locator(tile(peers[1]))
    assert await moved.get_attribute("data-marker") == "mesh" and await moved.get_attribute("data-pinned") == "true"
    assert await pages[0].locator('#call-events li[data-type="media-mode"]').count() == 1

    await pages[2].get_by_role("button", name="Leave").click()
    for page in pages[:2]:
        await page.wait_for_selector(tile(peers[2]), state="detached")
    await see_each_other(pages[:2], peers[:2])  # still through the SFU: a call does not move back
    for page in pages[:2]:
        await page.get_by_role("button", name="Leave").click()
        await page.wait_for_selector("#call[data-state=ended]")


async def test_a_page_whose_socket_drops_in_an_sfu_call_resumes_and_is_seen_again(sfu_browsers, alice, bob,
                                                                                  password, public_room):
    public_room.media = Room.Media.SFU
    await public_room.asave(update_fields=["media"])
    pages, peers = await in_the_call(sfu_browsers, public_room, [alice, bob], password)
    await see_each_other(pages, peers)
    # Bob's socket drops: his Janus session goes with it; the resumed socket starts both connections afresh.
    await pages[1].evaluate("parley.dropSignaling()")
    await pages[1].wait_for_selector("#call[data-reconnects='1'][data-state=joined][data-resumed=true]")
    assert await pages[1].get_attribute("#call", "data-peer-id") == peers[1]
    await see_each_other(pages, peers)
    for page in pages:
        await only_loopback_to_janus(page)  # the old connections are closed: two, both to Janus
    for page in pages:
        await page.get_by_role("button", name="Leave").click()
        await page.wait_for_selector("#call[data-state=ended]")
