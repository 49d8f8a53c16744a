"""Pages around the call, in real Chromium against a real daphne process."""

import re

import pytest
from asgiref.sync import sync_to_async

from calls import services

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session"), pytest.mark.django_db(transaction=True)]


async def test_room_page_offers_to_join_with_labelled_controls(browsers, alice, password, public_room):
    page = await browsers.logged_in(alice, password, public_room.get_absolute_url())
    await page.wait_for_selector("#call[data-ready=true]")
    join = page.get_by_role("button", name="Join call")
    assert await join.is_visible()
    assert await page.get_by_role("checkbox", name="Microphone").is_checked()
    assert await page.get_by_role("checkbox", name="Camera").is_checked()
