"""Pages around the call, in real Chromium against a real daphne process."""

import re
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async

from calls import services
from tests.helpers import a_past_call

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session"), pytest.mark.django_db(transaction=True)]


async def test_room_page_offers_to_join_with_labelled_controls(browsers, alice, password, public_room):
    page = await browsers.logged_in(alice, password, public_room.get_absolute_url())
    await page.wait_for_selector("#call[data-ready=true]")
    join = page.get_by_role("button", name="Join call")
    assert await join.is_visible()
    assert await page.get_by_role("checkbox", name="Microphone").is_checked()
    assert await page.get_by_role("checkbox", name="Camera").is_checked()


async def test_my_calls_lists_past_calls_with_duration_and_people(browsers, alice, bob, mallory, password,
                                                                   private_room):
    await sync_to_async(a_past_call)(private_room, [alice, bob], length=timedelta(minutes=5))
    other_room = await sync_to_async(services.create_room)(owner=mallory, name="Mallory's den")
    await sync_to_async(a_past_call)(other_room, [mallory], length=timedelta(minutes=1))  # not bob's: not listed

    page = await browsers.logged_in(bob, password, "/")
    await page.get_by_role("link", name="My calls").click()
    await page.wait_for_url(re.compile(r"/calls/$"))
    rows = page.locator("#call-history tbody tr")
    assert await rows.count() == 1
    cells = [text.strip() for text in await rows.first.locator("td").all_text_contents()]
    assert cells[0] == "Board room"
    assert cells[2] == "0:05:00"
    assert cells[3] == "Alice A., bob"


async def test_my_calls_page_fits_a_phone(browsers, bob, password):
    page = await browsers.logged_in(bob, password, "/calls/", viewport={"width": 375, "height": 700})
    assert "No calls yet" in await page.text_content("main")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
