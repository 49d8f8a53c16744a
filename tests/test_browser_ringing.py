"""Calling a person between real Chromium pages, logged in through the login page, on a real daphne process (Redis
channel layer): Ana presses Call on the People page, Ben's home page rings, he answers and both see each other's
video; a declined and a missed ring in both users' My calls; Ben's unseen count; presence going offline."""

import asyncio
import re
import time

import pytest
import pytest_asyncio

from people.models import Ring
from tests.browser import Browsers, wait_connected, wait_video_playing
from tests.helpers import eventually
from tests.servers import DaphneServer

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session"), pytest.mark.django_db(transaction=True)]

RING_SECONDS = 4


@pytest_asyncio.fixture(loop_scope="session")
async def browsers(browser, transactional_db, request):
    """Pages on a server of this test's own, whose rings run out after RING_SECONDS."""
    server = DaphneServer(env={"PARLEY_RING_SECONDS": str(RING_SECONDS)})
    await asyncio.to_thread(server.start)
    opened = Browsers(browser, server, request.node.name)
    yield opened
    report = getattr(request.node, "report_call", None)
    if report is None or report.failed:
        await opened.save_artifacts()
    await opened.close()
    await asyncio.to_thread(server.stop)


async def ana_and_ben(browsers, alice, bob, password):
    ana = await browsers.logged_in(alice, password, "/people/")
    ben = await browsers.logged_in(bob, password, "/")
    await ben.wait_for_selector("body[data-me=connected]")
    await ana.wait_for_selector('li[data-contact="bob"] .presence-dot[data-presence="online"]')
    return ana, ben


async def ana_calls_ben(ana, ben):
    await ana.get_by_role("button", name="Call bob").click()
    await ana.wait_for_selector('#ring-outgoing[open][data-state="calling"]')
    assert await ana.text_content("#ring-outgoing-title") == "Calling bob…"
    await ben.wait_for_selector("#ring-incoming[open]")
    assert await ben.text_content("#ring-incoming-name") == "Alice A."


async def test_ana_calls_ben_he_answers_and_they_see_each_other(browsers, alice, bob, password, room):
    ana, ben = await ana_and_ben(browsers, alice, bob, password)
    await ana_calls_ben(ana, ben)
    assert await ben.get_attribute("body", "data-tone") == "playing"  # the ringtone
    await ben.get_by_role("button", name="Accept").click()

    for page in (ana, ben):
        await page.wait_for_url(re.compile(r"/rooms/direct-[\w-]+/$"))
        await page.wait_for_selector("#call[data-state=joined]")
    ana_peer = await ana.get_attribute("#call", "data-peer-id")
    ben_peer = await ben.get_attribute("#call", "data-peer-id")
    await wait_connected(ana, ben_peer)
    await wait_connected(ben, ana_peer)
    await wait_video_playing(ana, ben_peer)
    await wait_video_playing(ben, ana_peer)

    ring = await eventually(lambda: Ring.objects.filter(state="answered", call__isnull=False).afirst())
    assert ring.call_id == int(await ana.get_attribute("#call", "data-call-id"))


async def test_a_declined_and_a_missed_ring_are_in_both_call_logs(browsers, alice, bob, password, room):
    ana, ben = await ana_and_ben(browsers, alice, bob, password)
    await ana_calls_ben(ana, ben)
    await ben.get_by_role("button", name="Decline").click()
    await ana.wait_for_selector('#ring-outgoing[data-state="declined"]')
    assert await ana.text_content("#ring-outgoing-title") == "bob declined."
    await ana.get_by_role("button", name="Close").click()

    await ana_calls_ben(ana, ben)
    started = time.monotonic()
    await ana.wait_for_selector('#ring-outgoing[data-state="missed"]', timeout=(RING_SECONDS + 5) * 1000)
    print(f"\nmissed after {time.monotonic() - started:.1f} s (PARLEY_RING_SECONDS={RING_SECONDS})")
    assert await ana.text_content("#ring-outgoing-title") == "No answer."
    await ben.wait_for_selector("#ring-incoming:not([open])", state="attached")
    assert await ben.get_attribute("body", "data-tone") is None  # the ringtone stopped
    assert await ben.text_content("#missed-count") == "1"  # live, on the page he is on

    await ben.reload()
    assert await ben.text_content("#missed-count") == "1"
    for page, texts in ((ana, ["Call to bob, no answer", "bob declined"]),
                        (ben, ["Missed call from Alice A.", "You declined a call from Alice A."])):
        await page.goto("/calls/")
        rows = page.locator("tr.ring-row")
        assert await rows.count() == 2
        assert [await rows.nth(i).get_attribute("data-outcome") for i in range(2)] == ["missed", "declined"]
        shown = await page.locator("#call-history").text_content()
        for text in texts:
            assert text in shown
    assert await ben.locator("#missed-count").count() == 0  # seen now
    await ben.goto("/")
    assert await ben.locator("#missed-count").count() == 0


async def test_ben_closing_his_last_tab_shows_him_offline_within_5_s(browsers, alice, bob, password, room):
    ana, ben = await ana_and_ben(browsers, alice, bob, password)
    other_tab = await browsers.logged_in(bob, password, "/calls/")
    await other_tab.wait_for_selector("body[data-me=connected]")
    await ben.close()
    await asyncio.sleep(1)
    assert await ana.get_attribute('li[data-contact="bob"] .presence-dot', "data-presence") == "online"

    closed = time.monotonic()
    await other_tab.close()
    await ana.wait_for_selector('li[data-contact="bob"] .presence-dot[data-presence="offline"]', timeout=5000)
    print(f"\nBen offline on Ana's page {time.monotonic() - closed:.2f} s after his last tab closed")
