"""The call page and the pages around it in real Chromium (fake devices), at 1280x800 and 390x844: pre-join, a call
alone, of 2 and of 4, a shared screen on the stage, the offline banner, a full room, shortcuts, devices remembered,
the call's page, My calls filters, times in the browser's zone and the error pages. Screenshots go to
test-artifacts/ (docs/ and the README take theirs from there). Several checks per page load: these are slow."""

import re
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from calls.models import CallParticipant, Room
from tests.browser import (
    DESKTOP,
    at_both_sizes,
    join_call,
    screenshot,
    tile,
    wait_connected,
    wait_video_playing,
)
from tests.helpers import a_past_call, in_call

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session"), pytest.mark.django_db(transaction=True)]

COUNT_CAMERA_STARTS = """(() => {
  window.cameraStarts = 0;
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (constraints) => { window.cameraStarts += 1; return original(constraints); };
})();"""
CONTROLS = ("#toggle-mic", "#toggle-camera", "#toggle-devices", "#toggle-chat", "#leave")


async def test_prejoin_alone_shortcuts_and_devices_remembered(browsers, bob, password, private_room):
    page = await browsers.logged_in(bob, password, private_room.get_absolute_url(), viewport=DESKTOP)
    await page.wait_for_selector("#call[data-ready=true]")
    # Pre-join: preview, a moving microphone level, device choices, who is there and whether there is room.
    await page.wait_for_selector("#preview-frame[data-video=true]")
    await page.wait_for_function("() => Number(document.querySelector('#mic-meter').dataset.level || 0) > 0.001")
    assert await page.text_content("#room-capacity") == "0 of 8"
    assert "Nobody is in the call yet." in await page.text_content("#call-presence")
    await page.wait_for_selector("#prejoin-mic:not([disabled])")
    await at_both_sizes(page, "prejoin", "#preview-frame", "#join-button", "#room-capacity")

    # The microphone chosen here is remembered across reloads (per browser) and used in the call.
    mics = await page.eval_on_selector_all("#prejoin-mic option", "options => options.map(o => o.value)")
    choice = mics[-1]
    await page.select_option("#prejoin-mic", choice)
    await page.reload()
    await page.wait_for_selector("#prejoin-mic:not([disabled])")
    assert await page.input_value("#prejoin-mic") == choice

    await join_call(page)
    assert await page.evaluate("parley.media.mic.getSettings().deviceId") == choice
    assert await page.get_attribute("#preview-frame video", "src") is None
    assert "You are the first one here" in await page.text_content("#call-status")
    await at_both_sizes(page, "call-alone", tile("local"), *CONTROLS)

    # Keyboard: m mutes, v turns the camera off, ? shows the help; not while typing in the chat.
    await page.keyboard.press("m")
    await page.wait_for_selector("#toggle-mic[aria-pressed=true]")
    await page.keyboard.press("v")
    await page.wait_for_selector("#toggle-camera[aria-pressed=true]")
    await page.wait_for_selector('.tile.local[data-video="false"][data-audio="false"]')
    await page.keyboard.press("?")
    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    assert await help_dialog.is_visible() and "Mute or unmute" in await help_dialog.text_content()
    await page.keyboard.press("Escape")
    await help_dialog.wait_for(state="hidden")
    await page.keyboard.press("c")  # the chat (closed when the page went phone-sized)
    await page.wait_for_selector("#toggle-chat[aria-expanded=true]")
    await page.get_by_role("textbox", name="Message").fill("m")
    await page.get_by_role("textbox", name="Message").press("m")
    assert await page.get_attribute("#toggle-mic", "aria-pressed") == "true"  # typing did not unmute
    await page.get_by_role("textbox", name="Message").blur()
    await page.keyboard.press("m")
    await page.wait_for_selector("#toggle-mic[aria-pressed=false]")


async def test_calls_of_two_and_four_and_a_shared_screen_on_the_stage(browsers, alice, bob, carol, another_member,
                                                                      password, private_room):
    url = private_room.get_absolute_url()
    alice_page = await browsers.logged_in(alice, password, url, viewport=DESKTOP)
    bob_page = await browsers.logged_in(bob, password, url, viewport=DESKTOP)
    alice_peer = await join_call(alice_page)
    # Bob's pre-join says who is in the call before he asks for anything.
    await bob_page.wait_for_function("() => document.querySelector('#room-capacity').textContent === '1 of 8'")
    assert "In the call now: Alice A." in await bob_page.text_content("#call-presence")
    bob_peer = await join_call(bob_page)
    await wait_connected(alice_page, bob_peer)
    await wait_video_playing(alice_page, bob_peer)
    await wait_video_playing(bob_page, alice_peer)
    await at_both_sizes(alice_page, "call-of-2", tile("local"), tile(bob_peer), *CONTROLS)

    others = []
    for person in (carol, another_member):  # camera off: two more pages with video would crowd 2 cores
        page = await browsers.logged_in(person, password, url, viewport=DESKTOP)
        others.append(await join_call(page, video=False))
    for peer in others:
        await wait_connected(alice_page, peer)
    assert await alice_page.get_attribute("#tiles", "data-count") == "4"
    await at_both_sizes(alice_page, "call-of-4", tile("local"), tile(bob_peer), *(tile(p) for p in others),
                        *CONTROLS)

    # Bob shares his screen: it takes Alice's main stage by itself.
    await bob_page.get_by_role("button", name="Share screen").click()
    await alice_page.wait_for_selector(f'{tile(bob_peer)}[data-screen="true"][data-pinned="true"]')
    assert await alice_page.get_attribute("#tiles", "data-layout") == "stage"
    stage = await alice_page.locator(tile(bob_peer)).bounding_box()
    small = await alice_page.locator(tile(others[0])).bounding_box()
    assert stage["width"] * stage["height"] > 4 * small["width"] * small["height"]
    await at_both_sizes(alice_page, "shared-screen-pinned", tile(bob_peer), *CONTROLS)
    # Unpin it from its menu, pin another tile, then full screen.
    await alice_page.get_by_role("button", name="Options for bob").click()
    await alice_page.get_by_role("menuitem", name="Unpin").click()
    await alice_page.wait_for_selector("#tiles[data-layout=grid]")
    await alice_page.get_by_role("button", name="Options for carol").click()
    await alice_page.get_by_role("menuitem", name="Pin").click()
    await alice_page.wait_for_selector(f'{tile(others[0])}[data-pinned="true"]')
    await alice_page.get_by_role("button", name="Options for carol").click()
    await alice_page.get_by_role("menuitem", name="Full screen").click()
    await alice_page.wait_for_function("() => document.fullscreenElement?.matches('.tile')")
    await alice_page.keyboard.press("Escape")
    assert await bob_page.locator("#toggle-screen").is_visible()  # desktop Chromium can share


async def test_the_offline_banner_and_a_truthful_status(browsers, alice, bob, password, private_room):
    url = private_room.get_absolute_url()
    alice_page = await browsers.logged_in(alice, password, url, viewport=DESKTOP)
    bob_page = await browsers.logged_in(bob, password, url, viewport=DESKTOP)
    alice_peer = await join_call(alice_page)
    bob_peer = await join_call(bob_page)
    await wait_connected(bob_page, alice_peer)
    assert await bob_page.text_content("#call-status") == "In the call with 1 other person."
    # Per tile, from getStats: a poor connection (here forced, as loss over the threshold would) says so.
    await alice_page.evaluate("(id) => { parley.peers.get(id).forcedQuality = 'poor'; }", bob_peer)
    await alice_page.wait_for_selector(f'{tile(bob_peer)}[data-quality="poor"]')
    assert await alice_page.text_content(f"{tile(bob_peer)} .tile-state") == "Connection unstable"
    assert "unstable" in await alice_page.text_content("#call-status")
    await alice_page.evaluate("(id) => { parley.peers.get(id).forcedQuality = null; }", bob_peer)
    await alice_page.wait_for_selector(f'{tile(bob_peer)}[data-quality="good"]')
    assert await alice_page.text_content("#call-status") == "In the call with 1 other person."

    await bob_page.context.set_offline(True)
    await bob_page.evaluate("parley.dropSignaling()")
    banner = bob_page.locator("#call-banner[data-offline=true]")
    await banner.wait_for(state="visible")
    assert "You are offline" in await banner.text_content()
    assert "nobody can hear or see you" in await bob_page.text_content("#call-status")
    await at_both_sizes(bob_page, "offline-banner", "#call-banner", *CONTROLS)

    await bob_page.context.set_offline(False)
    await bob_page.wait_for_selector("#call[data-state=joined]")
    await banner.wait_for(state="hidden")
    await wait_connected(alice_page, await bob_page.get_attribute("#call", "data-peer-id"))
    assert "offline" not in await bob_page.text_content("#call-status")
    assert bob_peer


async def test_a_full_room_is_refused_before_the_camera_starts(browsers, alice, bob, carol, password, private_room):
    await sync_to_async(Room.objects.filter(pk=private_room.pk).update)(max_participants=2)
    await sync_to_async(in_call)(private_room, alice)
    await sync_to_async(in_call)(private_room, carol)
    page = await browsers.new_page("bob", viewport=DESKTOP)
    await page.add_init_script(COUNT_CAMERA_STARTS)
    await page.goto(f"/accounts/login/?next={private_room.get_absolute_url()}")
    await page.fill("#id_username", "bob")
    await page.fill("#id_password", password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_selector("#call[data-ready=true]")
    assert await page.text_content("#room-capacity") == "2 of 2, full"
    assert "The call is full (2 people)" in await page.text_content("#prejoin-refusal")
    assert "In the call now: Alice A., carol" in await page.text_content("#call-presence")
    assert await page.is_disabled("#join-button")
    await page.wait_for_timeout(500)
    assert await page.evaluate("window.cameraStarts") == 0
    assert await page.get_attribute("#call", "data-state") == "idle"
    assert await sync_to_async(CallParticipant.objects.filter(user=bob).count)() == 0


async def test_call_page_my_calls_filters_local_times_and_error_pages(browsers, alice, bob, carol, mallory, password,
                                                                     private_room, public_room):
    started = timezone.now().replace(hour=15, minute=30, second=0, microsecond=0) - timedelta(days=1)
    with_bob = await sync_to_async(a_past_call)(private_room, [alice, bob], length=timedelta(minutes=7),
                                                minutes_ago=(timezone.now() - started).total_seconds() / 60)
    await sync_to_async(a_past_call)(public_room, [alice, carol], minutes_ago=3 * 24 * 60)
    page = await browsers.logged_in(alice, password, "/calls/", viewport=DESKTOP, timezone_id="America/New_York")
    await page.wait_for_selector("html[data-local-times=done]")
    assert await page.locator("#call-history tbody tr").count() == 2
    assert await page.text_content(".tz-note [data-tz-name]") == "America/New_York"
    local = with_bob.started_at.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
    row = page.locator(f'#call-history tr[data-call-id="{with_bob.pk}"]')
    assert await row.locator("time").text_content() == f"{local:%Y-%m-%d %H:%M} EST"
    # Filters: by person, then by room; the browser's zone is what the server filters dates in.
    await page.fill("#id_with", "Bob")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url(re.compile(r"with=Bob"))
    assert [await r.get_attribute("data-call-id") for r in await page.locator("#call-history tbody tr").all()] == [
        str(with_bob.pk)]
    await page.goto(f"/calls/?room={public_room.slug}&since={local:%Y-%m-%d}")
    assert await page.locator("#no-match").is_visible()

    await page.goto(f"/calls/{with_bob.pk}/")
    await page.wait_for_selector("html[data-local-times=done]")
    assert await page.text_content("#call-started") == f"{local:%Y-%m-%d %H:%M} EST"
    assert await page.text_content("#call-duration") == "0:07:00"
    assert await page.locator("#participants tbody tr").count() == 2
    await at_both_sizes(page, "call-detail", "#call-detail h1", "#call-started", "#call-detail .table-scroll")

    outsider = await browsers.logged_in(mallory, password, "/", viewport=DESKTOP)
    await outsider.goto(private_room.get_absolute_url())
    assert "does not exist, or you do not have access" in await outsider.text_content("h1")
    await at_both_sizes(outsider, "error-404-room", "#error-page h1", "#error-page .error-actions")
    await outsider.goto(f"/calls/{with_bob.pk}/")
    await at_both_sizes(outsider, "error-404-call", "#error-page h1", "#error-page .error-actions")
    await screenshot(outsider, "error-404-call-desktop")
