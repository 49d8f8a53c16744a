"""The admin's "Live now" page and dashboard in Chromium, as a superuser sees them: a call between two Chromium
pages appears on the live page by itself (static/js/admin-live.js polls the JSON view), its connection and
quality show once the pages report, removing someone there ends their call page, and the dashboard draws its
charts. With PARLEY_DOCS_SCREENSHOTS set, the pictures of docs/operations.md are saved in docs/img/."""

import os
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from calls.models import Call, CallParticipant, CallQuality
from calls.services import Reason
from tests.browser import join_call, wait_connected
from tests.test_security_browser import csp_violations

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session"), pytest.mark.django_db(transaction=True)]

DOCS_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "img"
LIVE = "/admin/calls/call/live/"
DASHBOARD = "/admin/calls/call/dashboard/"


def row(peer_id: str) -> str:
    return f'#live-calls tr[data-peer-id="{peer_id}"]'


async def test_a_superuser_sees_a_call_appear_removes_someone_and_reads_the_dashboard(browsers, admin_user, alice,
                                                                                      bob, password, private_room):
    docs = bool(os.environ.get("PARLEY_DOCS_SCREENSHOTS"))
    if docs:
        await sync_to_async(a_month_of_calls)(private_room, [alice, bob])
    admin = await browsers.logged_in(admin_user, password, LIVE, viewport={"width": 1400, "height": 800})
    await admin.wait_for_selector("#live-calls .live-none")
    assert (await admin.text_content("#live-counts")).split() == ["0", "live", "calls,", "0", "participants"]

    alice_page = await browsers.logged_in(alice, password, private_room.get_absolute_url())
    bob_page = await browsers.logged_in(bob, password, private_room.get_absolute_url())
    alice_peer = await join_call(alice_page)
    bob_peer = await join_call(bob_page)
    await wait_connected(alice_page, bob_peer)
    await wait_connected(bob_page, alice_peer)

    # The page was not reloaded: the call appears at one of its refreshes.
    await admin.wait_for_selector(row(alice_peer))
    await admin.wait_for_selector(row(bob_peer))
    assert await admin.title() == "Live now | Django site admin"
    assert "Board room" in await admin.text_content("#live-calls .live-call caption")
    assert await admin.text_content(f"{row(bob_peer)} .live-state") == "connected"
    # Both report their getStats now (the page would in 10 s); the next refresh shows how they connect.
    for page in (alice_page, bob_page):
        await page.evaluate("parley.quality.reporter.sampleAll()")
    await admin.wait_for_function(
        """(selector) => document.querySelector(selector)?.textContent.includes("host/udp")""", arg=row(bob_peer))
    assert "no reports" not in await admin.text_content(f"{row(bob_peer)} .live-quality")
    assert await admin.text_content("#live-counts") == "1 live call, 2 participants"
    if docs:
        DOCS_IMAGES.mkdir(exist_ok=True)
        await admin.screenshot(path=str(DOCS_IMAGES / "admin-live.png"), full_page=True)

    # Remove bob: a confirmation, then the same kick as the API's. His page ends, saying why.
    await admin.click(f"{row(bob_peer)} a.live-kick")
    await admin.wait_for_selector("text=Remove bob from the call?")
    await admin.get_by_role("button", name="Yes, remove bob").click()
    await admin.wait_for_selector("text=Bob was removed from the call in Board room.")
    await bob_page.wait_for_selector("#call[data-state=ended][data-close-code='4403']")
    await admin.wait_for_selector(row(alice_peer))
    assert await admin.locator(row(bob_peer)).count() == 0
    left = await CallParticipant.objects.aget(peer_id=bob_peer)
    assert left.leave_reason == "kicked"

    await admin.goto(DASHBOARD)
    assert await admin.locator("svg.chart").count() == 7
    today = timezone.localdate().isoformat()
    cells = await admin.locator("#activity-table tbody tr").last.locator("td").all_text_contents()
    assert cells[0] == today and int(cells[1]) >= 1 and int(cells[3]) >= 2
    if docs:
        await admin.screenshot(path=str(DOCS_IMAGES / "admin-dashboard.png"), full_page=True)
    assert csp_violations(browsers) == []  # the polling script, the stylesheet and the inline SVG are allowed
    assert not [line for line in browsers.console if "pageerror" in line or "admin-live" in line]


def a_month_of_calls(room, people) -> None:
    """For the docs' picture only: a month of calls of varying length and quality, as a real month would have."""
    now = timezone.now()
    reasons = [Reason.LEFT] * 6 + [Reason.DISCONNECTED, Reason.TIMED_OUT, Reason.KICKED]
    kinds = ["host"] * 5 + ["srflx"] * 3 + ["relay"]
    n = 0
    for day in range(1, 30):
        for number in range(day * 7 % 5 + (0 if day % 6 == 0 else 1)):
            n += 1
            start = now - timedelta(days=day, hours=number * 2 + 1)
            end = start + timedelta(minutes=5 + (n * 13) % 40)
            call = Call.objects.create(room=room, room_name=room.name, started_by=people[0], started_at=start,
                                       ended_at=end)
            for index, person in enumerate(people):
                participant = CallParticipant.objects.create(call=call, user=person, joined_at=start, left_at=end,
                                                             leave_reason=reasons[(n + index) % len(reasons)])
                CallQuality.objects.create(participant=participant, remote_peer_id=uuid.uuid4(), samples=6,
                                           candidate_type=kinds[(n + index) % len(kinds)], protocol="udp",
                                           connect_ms=400 + (n * 97 + index * 31) % 1500, poor=(n + index) % 7 == 0)
