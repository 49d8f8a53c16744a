"""Issue 10, row 7: under the Content-Security-Policy, the call page, the settings page, the admin and the API docs
still work in real Chromium against a real daphne process, and Chromium reports no violation."""

import pytest
from asgiref.sync import sync_to_async

from calls.models import Call
from tests.browser import join_call, tile, wait_connected, wait_video_playing

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session"), pytest.mark.django_db(transaction=True)]


# ReDoc's sidebar shows a "powered by" logo from its vendor's CDN: the policy blocks it, as it should (nothing is
# loaded from elsewhere), and the page works without it.
THIRD_PARTY_BLOCKED_ON_PURPOSE = ("https://cdn.redoc.ly/",)


def csp_violations(browsers) -> list[str]:
    """What Chromium printed about the policy: every refused script, style, socket or frame is reported there."""
    return [line for line in browsers.console
            if ("Content Security Policy" in line or "Content-Security-Policy" in line)
            and not any(url in line for url in THIRD_PARTY_BLOCKED_ON_PURPOSE)]


async def headers_of(page, path: str) -> dict[str, str]:
    response = await page.goto(path)
    assert response.ok, (path, response.status)
    return await response.all_headers()


async def test_every_page_carries_the_policies(browsers, alice, password, public_room):
    page = await browsers.logged_in(alice, password, "/")
    for path in ("/", public_room.get_absolute_url(), "/calls/", "/accounts/profile/", "/api/docs/"):
        headers = await headers_of(page, path)
        policy = headers["content-security-policy"]
        for directive in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'"):
            assert directive in policy, (path, policy)
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert headers["permissions-policy"] == "camera=(self), microphone=(self), display-capture=(self)"
        assert headers["referrer-policy"] == "same-origin"


async def test_a_call_connects_with_media_under_the_policy(browsers, alice, bob, password, private_room):
    alice_page = await browsers.logged_in(alice, password, private_room.get_absolute_url())
    bob_page = await browsers.logged_in(bob, password, private_room.get_absolute_url())
    alice_peer = await join_call(alice_page)
    bob_peer = await join_call(bob_page)
    await wait_connected(alice_page, bob_peer)
    await wait_connected(bob_page, alice_peer)
    await wait_video_playing(alice_page, bob_peer)
    await wait_video_playing(bob_page, alice_peer)
    await alice_page.get_by_role("textbox", name="Message").fill("under CSP")
    await alice_page.get_by_role("button", name="Send").click()
    await bob_page.wait_for_selector(f'#chat-log li[data-from="{alice_peer}"]:has-text("under CSP")')
    assert await alice_page.locator(tile(bob_peer)).count() == 1
    assert csp_violations(browsers) == []
    await bob_page.get_by_role("button", name="Leave").click()
    await alice_page.get_by_role("button", name="Leave").click()
    await alice_page.wait_for_selector("#call[data-state=ended]")
    assert await sync_to_async(Call.objects.filter(room=private_room).count)() == 1


async def test_the_settings_page_works_under_the_policy(browsers, alice, bob, password, public_room):
    page = await browsers.logged_in(alice, password, f"/rooms/{public_room.slug}/settings/")
    await page.wait_for_selector("#room-settings[data-ready=true]")
    await page.get_by_label("Username").fill("bob")
    await page.get_by_role("button", name="Add member").click()
    await page.wait_for_selector('#members li[data-username="bob"]')
    await page.get_by_role("button", name="Create invite link").click()
    await page.wait_for_selector("#invites .invite-url")
    assert csp_violations(browsers) == []


async def test_the_admin_works_under_the_policy(browsers, admin_user, alice, password, private_room):
    page = await browsers.logged_in(admin_user, password, "/admin/")
    assert await page.get_by_role("link", name="Rooms").count() >= 1
    await page.goto(f"/admin/calls/room/{private_room.pk}/change/")
    # The inline's "Add another" link and the autocomplete widget are the admin's own scripts.
    await page.get_by_text("Add another Room membership").click()
    assert await page.locator(".dynamic-memberships").count() == 4  # alice, carol and bob, and the new row
    assert await page.locator(".select2-container").count() >= 1
    await page.goto("/admin/calls/call/")
    await page.wait_for_selector("#changelist")
    await page.goto(f"/admin/accounts/user/{alice.pk}/change/")
    await page.wait_for_selector("#user_form")
    assert csp_violations(browsers) == []


async def test_the_api_docs_render_under_the_policy(browsers, alice, password):
    page = await browsers.logged_in(alice, password, "/api/docs/")
    await page.wait_for_selector(".swagger-ui .opblock", timeout=15_000)  # Swagger UI ran and read the schema
    assert await page.locator(".opblock").count() > 10
    await page.goto("/api/redoc/")
    await page.wait_for_selector("redoc [role=navigation], redoc .menu-content", timeout=15_000)
    assert csp_violations(browsers) == []
