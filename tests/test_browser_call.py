"""Calls between real Chromium pages through a real daphne process: media, chat, mute, leave, mesh, glare."""

import os

import pytest
from asgiref.sync import sync_to_async

from calls.models import Call, CallParticipant
from tests.browser import join_call, tile, wait_connected, wait_video_playing, within_viewport
from tests.helpers import eventually

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session"), pytest.mark.django_db(transaction=True)]


async def two_in_a_call(browsers, room, first, second, password):
    page_one = await browsers.logged_in(first, password, room.get_absolute_url())
    page_two = await browsers.logged_in(second, password, room.get_absolute_url())
    one = await join_call(page_one)
    two = await join_call(page_two)
    await wait_connected(page_one, two)
    await wait_connected(page_two, one)
    return page_one, one, page_two, two


async def test_two_people_see_each_other_chat_mute_and_leave(browsers, alice, bob, password, private_room):
    alice_page, alice_peer, bob_page, bob_peer = await two_in_a_call(browsers, private_room, alice, bob, password)

    await wait_video_playing(alice_page, bob_peer)
    await wait_video_playing(bob_page, alice_peer)
    assert await alice_page.text_content(f"{tile(bob_peer)} .tile-name") == "bob"
    assert await bob_page.text_content(f"{tile(alice_peer)} .tile-name") == "Alice A."

    await alice_page.get_by_role("textbox", name="Message").fill("Hello Bob")
    await alice_page.get_by_role("button", name="Send").click()
    await bob_page.wait_for_selector(f'#chat-log li[data-from="{alice_peer}"]:has-text("Hello Bob")')
    if os.environ.get("PARLEY_DOCS_SCREENSHOT"):  # regenerates the README's picture: docs/call-page.png
        await bob_page.screenshot(path=os.environ["PARLEY_DOCS_SCREENSHOT"])

    await bob_page.get_by_role("button", name="Mute microphone").click()
    await alice_page.wait_for_selector(f'{tile(bob_peer)}[data-audio="false"] .tile-muted:visible')
    await bob_page.get_by_role("button", name="Unmute microphone").click()
    await alice_page.wait_for_selector(f'{tile(bob_peer)}[data-audio="true"]')

    await bob_page.get_by_role("button", name="Leave").click()
    await bob_page.wait_for_selector("#call[data-state=ended]")
    await alice_page.wait_for_selector('#call-events li[data-type="peer-left"]', state="attached")
    assert await alice_page.locator(tile(bob_peer)).count() == 0

    await alice_page.get_by_role("button", name="Leave").click()
    await alice_page.wait_for_selector("#call[data-state=ended]")

    call_id = int(await alice_page.get_attribute("#call", "data-call-id"))
    # The server records the last leave just after the socket closes.
    call = await eventually(lambda: Call.objects.filter(pk=call_id, ended_at__isnull=False).afirst())
    participants = await sync_to_async(lambda: sorted(
        (p.user.username, p.leave_reason) for p in call.participants.select_related("user")))()
    assert participants == [("alice", "left"), ("bob", "left")]


async def test_three_people_form_a_full_mesh(browsers, alice, bob, carol, password, public_room):
    pages = [await browsers.logged_in(user, password, public_room.get_absolute_url()) for user in (alice, bob, carol)]
    peers = [await join_call(page) for page in pages]
    for page, me in zip(pages, peers, strict=True):
        for other in peers:
            if other != me:
                await wait_connected(page, other)
                await wait_video_playing(page, other)
        assert await page.locator(".tile").count() == 3


async def test_glare_when_both_renegotiate_at_once_is_resolved(browsers, alice, bob, password, private_room):
    alice_page, alice_peer, bob_page, bob_peer = await two_in_a_call(browsers, private_room, alice, bob, password)
    # Hold each side's incoming frames until both have sent their own offer: the offers cross for certain.
    await alice_page.evaluate("parley.holdFrames()")
    await bob_page.evaluate("parley.holdFrames()")
    for page, other in ((alice_page, bob_peer), (bob_page, alice_peer)):
        await page.evaluate("parley.renegotiateAll()")
        await page.wait_for_selector(f'{tile(other)}[data-signaling-state="have-local-offer"]')
    await alice_page.evaluate("parley.releaseFrames()")
    await bob_page.evaluate("parley.releaseFrames()")

    glare = {}
    for name, page in (("alice", alice_page), ("bob", bob_page)):
        glare[name] = await page.locator('#call-events li[data-type="glare"]').first.text_content(timeout=10_000)
    # Exactly one side yields: the polite one, which the server says is the later joiner (bob).
    assert "yielded" in glare["bob"] and "kept our offer" in glare["alice"]
    for page, other in ((alice_page, bob_peer), (bob_page, alice_peer)):
        await page.wait_for_selector(f'{tile(other)}[data-signaling-state="stable"][data-connection-state="connected"]')
    await bob_page.get_by_role("textbox", name="Message").fill("still here")
    await bob_page.get_by_role("button", name="Send").click()
    await alice_page.wait_for_selector(f'#chat-log li[data-from="{bob_peer}"]:has-text("still here")')
    await wait_video_playing(alice_page, bob_peer)


async def test_a_dropped_signaling_socket_reconnects_and_rejoins(browsers, alice, bob, password, private_room):
    alice_page, alice_peer, bob_page, bob_peer = await two_in_a_call(browsers, private_room, alice, bob, password)
    await bob_page.evaluate("parley.dropSignaling()")
    # The first attempt is immediate: the page may be back before a test could see "reconnecting", so count drops.
    await bob_page.wait_for_selector("#call[data-reconnects='1'][data-state=joined]")
    new_bob_peer = await bob_page.get_attribute("#call", "data-peer-id")
    if new_bob_peer != bob_peer:  # a fresh join (a server without resume): Alice's page drops the old peer
        await alice_page.wait_for_selector(tile(bob_peer), state="detached")
    await wait_connected(alice_page, new_bob_peer)
    await wait_connected(bob_page, alice_peer)
    await wait_video_playing(alice_page, new_bob_peer)


async def test_joining_without_a_camera_or_with_none_found_still_joins(browsers, alice, bob, password, private_room):
    alice_page = await browsers.logged_in(alice, password, private_room.get_absolute_url())
    # Bob's browser finds no device at all.
    bob_page = await browsers.logged_in(bob, password, private_room.get_absolute_url())
    await bob_page.evaluate("""() => { navigator.mediaDevices.getUserMedia = async () => {
        throw new DOMException("Requested device not found", "NotFoundError"); }; }""")
    alice_peer = await join_call(alice_page, video=False)  # audio only
    bob_peer = await join_call(bob_page)
    assert "No camera or microphone was found" in await bob_page.text_content("#call-alert")
    await wait_connected(alice_page, bob_peer)
    await wait_connected(bob_page, alice_peer)
    await bob_page.wait_for_selector(f'{tile(alice_peer)}[data-video="false"] .avatar:visible')
    await alice_page.wait_for_selector(f'{tile(bob_peer)}[data-audio="false"][data-video="false"]')


async def test_the_call_page_works_at_phone_width(browsers, alice, bob, password, private_room):
    phone = {"width": 375, "height": 740}
    alice_page = await browsers.logged_in(alice, password, private_room.get_absolute_url(), viewport=phone)
    bob_page = await browsers.logged_in(bob, password, private_room.get_absolute_url(), viewport=phone)
    alice_peer = await join_call(alice_page)
    bob_peer = await join_call(bob_page)
    await wait_connected(alice_page, bob_peer)
    await wait_video_playing(bob_page, alice_peer)
    assert await alice_page.evaluate("document.documentElement.scrollWidth") <= phone["width"]
    # Both tiles and the controls on screen without scrolling, the tiles not overlapping.
    mine, theirs = [await alice_page.locator(tile(peer)).bounding_box() for peer in ("local", bob_peer)]
    assert mine["y"] + mine["height"] <= theirs["y"] or mine["x"] + mine["width"] <= theirs["x"]
    await within_viewport(alice_page, tile("local"), tile(bob_peer), "#leave", "#toggle-mic")
    for name in ("Mute microphone", "Turn camera off", "Share screen", "Devices", "Leave"):
        assert await alice_page.get_by_role("button", name=name).is_visible()
    # Keyboard: tab to the mute button and press it.
    await alice_page.get_by_role("button", name="Mute microphone").focus()
    await alice_page.keyboard.press("Enter")
    await bob_page.wait_for_selector(f'{tile(alice_peer)}[data-audio="false"]')


async def test_the_owner_removes_someone_from_the_call(browsers, alice, bob, password, private_room):
    alice_page, alice_peer, bob_page, bob_peer = await two_in_a_call(browsers, private_room, alice, bob, password)
    assert await bob_page.locator(f"{tile(alice_peer)} .tile-kick").is_hidden()  # bob is a plain member

    # Remove is in the tile's menu, behind a confirmation.
    await alice_page.get_by_role("button", name="Options for bob").click()
    await alice_page.get_by_role("menuitem", name="Remove bob from the call…").click()
    dialog = alice_page.get_by_role("dialog", name="Remove bob from the call?")
    assert "cannot join this call again for 5 minutes" in await dialog.text_content()
    await dialog.get_by_role("button", name="Cancel").click()
    await alice_page.wait_for_timeout(300)
    assert await bob_page.get_attribute("#call", "data-state") == "joined"  # cancelled: nothing happened
    await alice_page.get_by_role("button", name="Options for bob").click()
    await alice_page.get_by_role("menuitem", name="Remove bob from the call…").click()
    await dialog.get_by_role("button", name="Remove").click()

    await bob_page.wait_for_selector("#call[data-state=ended][data-close-code='4403']")
    alert = bob_page.get_by_role("alert")
    assert await alert.is_visible() and "You were removed from the call" in await alert.text_content()
    # Told why, and for how long: the ban is read from the call log.
    await bob_page.wait_for_selector("#call[data-refusal]")
    assert "You can join it again in 5 min" in await alert.text_content()
    # "Join again" is refused before the camera starts, saying so; no new participation.
    await bob_page.get_by_role("button", name="Join again").click()
    await bob_page.wait_for_timeout(500)
    assert await bob_page.get_attribute("#call", "data-state") == "ended"
    assert "You were removed from this call. You can join it again in" in await alert.text_content()
    await alice_page.wait_for_selector(tile(bob_peer), state="detached")
    await alice_page.wait_for_selector('#call-events li[data-type="peer-left"]:has-text("was removed")',
                                       state="attached")
    # Bob's page does not try again: after longer than its first reconnection delay it is still out.
    await bob_page.wait_for_timeout(1500)
    assert await bob_page.get_attribute("#call", "data-state") == "ended"
    bob_rows = await sync_to_async(lambda: list(
        CallParticipant.objects.filter(user=bob).values_list("peer_id", "leave_reason")))()
    assert [(str(peer), reason) for peer, reason in bob_rows] == [(bob_peer, "kicked")]
    assert await alice_page.get_attribute("#call", "data-state") == "joined"
