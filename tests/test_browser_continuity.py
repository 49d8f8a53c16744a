"""Call continuity with the server's resume support (docs: issue "call continuity"), in real Chromium.

These need a server that speaks the continuity protocol: `resume_token` in the welcome, `seq` on every later frame,
`?resume=&last_seq=` honoured (also by a restarted process), `peer-state`. Against a server without it they fail:
a restarted server or a reloaded page then makes a fresh join with a new peer id, and the other page sees it leave.
"""

import asyncio

import pytest

from tests.browser import join_call, tile, wait_connected, wait_frames_grow, wait_video_playing

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session"), pytest.mark.django_db(transaction=True)]

# Counts removals of every remote tile and every "left" in the call events, from now on.
WATCH_FOR_LEAVES = """() => {
  window.tilesRemoved = [];
  new MutationObserver((changes) => {
    for (const change of changes) for (const node of change.removedNodes) {
      const id = node.dataset && node.dataset.peerId;
      if (id && id !== "local") window.tilesRemoved.push(id);
    }
  }).observe(document.querySelector("#tiles"), { childList: true });
}"""


async def two_in_a_call(browsers, room, first, second, password):
    page_one = await browsers.logged_in(first, password, room.get_absolute_url())
    page_two = await browsers.logged_in(second, password, room.get_absolute_url())
    one = await join_call(page_one)
    two = await join_call(page_two)
    await wait_connected(page_one, two)
    await wait_connected(page_two, one)
    await wait_video_playing(page_one, two)
    await wait_video_playing(page_two, one)
    return page_one, one, page_two, two


async def nobody_left(page) -> None:
    assert await page.evaluate("window.tilesRemoved") == []
    assert await page.locator('#call-events li[data-type="peer-left"]').count() == 0


async def test_a_killed_and_restarted_server_resumes_both_and_the_video_never_stops(
        own_browsers, own_server, alice, bob, password, private_room):
    alice_page, alice_peer, bob_page, bob_peer = await two_in_a_call(own_browsers, private_room, alice, bob,
                                                                     password)
    for page in (alice_page, bob_page):
        await page.evaluate(WATCH_FOR_LEAVES)

    await asyncio.to_thread(own_server.kill)
    await alice_page.wait_for_selector("#call-banner[data-state=reconnecting]")
    await bob_page.wait_for_selector("#call-banner[data-state=reconnecting]")
    # Peer to peer, the media does not need the server.
    alice_sees = await wait_frames_grow(alice_page, bob_peer)
    bob_sees = await wait_frames_grow(bob_page, alice_peer)

    await asyncio.to_thread(own_server.restart)
    for page, me in ((alice_page, alice_peer), (bob_page, bob_peer)):
        await page.wait_for_selector("#call[data-state=joined]", timeout=30_000)
        await page.locator("#call-banner").wait_for(state="hidden")
        assert await page.get_attribute("#call", "data-peer-id") == me, "not resumed: a fresh join"
        assert await page.get_attribute("#call", "data-resumed") == "true"

    alice_sees = await wait_frames_grow(alice_page, bob_peer, beyond=alice_sees)
    bob_sees = await wait_frames_grow(bob_page, alice_peer, beyond=bob_sees)
    await alice_page.wait_for_selector(f'{tile(bob_peer)}[data-state="connected"]')
    await bob_page.wait_for_selector(f'{tile(alice_peer)}[data-state="connected"]')
    await nobody_left(alice_page)
    await nobody_left(bob_page)
    # Signaling is relayed again: an ICE restart's offer goes out and its answer (held back here, so the test
    # sees the offer pending) comes back through the restarted server.
    await alice_page.evaluate("parley.holdFrames()")
    await alice_page.evaluate("parley.renegotiateAll()")
    await alice_page.wait_for_selector(f'{tile(bob_peer)}[data-signaling-state="have-local-offer"]')
    await alice_page.evaluate("parley.releaseFrames()")
    await alice_page.wait_for_selector(f'{tile(bob_peer)}[data-signaling-state="stable"][data-state="connected"]')
    await wait_frames_grow(bob_page, alice_peer, beyond=bob_sees)


async def test_a_reloaded_page_resumes_the_same_peer_and_the_other_never_sees_it_leave(
        browsers, alice, bob, password, private_room):
    alice_page, alice_peer, bob_page, bob_peer = await two_in_a_call(browsers, private_room, alice, bob, password)
    await alice_page.evaluate(WATCH_FOR_LEAVES)
    await alice_page.get_by_role("textbox", name="Message").fill("said before the reload")
    await alice_page.get_by_role("button", name="Send").click()
    await bob_page.wait_for_selector('#chat-log li:has-text("said before the reload")')

    await bob_page.reload()
    # No click: the page resumes its participation by itself, under the same peer id.
    await bob_page.wait_for_selector("#call[data-state=joined]")
    assert await bob_page.get_attribute("#call", "data-peer-id") == bob_peer
    assert await bob_page.get_attribute("#call", "data-resumed") == "true"
    assert await bob_page.locator('#chat-log li:has-text("said before the reload")').count() == 1

    # Bob's page has new connections; Alice's side takes them (she may have seen Bob "reconnecting" meanwhile).
    await wait_connected(bob_page, alice_peer)
    await alice_page.wait_for_selector(f'{tile(bob_peer)}[data-state="connected"]')
    await wait_video_playing(bob_page, alice_peer)
    await wait_frames_grow(alice_page, bob_peer)
    await wait_frames_grow(bob_page, alice_peer)
    await nobody_left(alice_page)
    assert await alice_page.locator(tile(bob_peer)).count() == 1
