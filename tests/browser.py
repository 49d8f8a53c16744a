"""Playwright fixtures: one Debian Chromium per test session, one browser context per user.

Registered from tests/conftest.py. Playwright is imported lazily, so the rest of the suite runs without it.
Tests using these fixtures are async and run on the session event loop:

    pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session"),
                  pytest.mark.django_db(transaction=True)]
"""

import asyncio
import os
import re
from pathlib import Path

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.db import connections

from calls.models import CallParticipant
from tests.helpers import unavailable

CHROMIUM = os.environ.get("PARLEY_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# Measured on these machines (docs in ../shared/TESTING-WEBRTC.md): fake camera and microphone, granted without a
# prompt, loopback ICE candidates allowed, autoplay allowed, nothing downloaded in the background.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
    # getDisplayMedia: capture this tab instead of asking which screen.
    "--auto-accept-this-tab-capture", "--auto-select-tab-capture-source-by-title=Parley",
]
TIMEOUT_MS = 15_000  # the longest any single wait in a browser test may take


# --- Helpers for call pages -------------------------------------------------------------------------


async def join_call(page, *, audio: bool = True, video: bool = True):
    await page.wait_for_selector("#call[data-ready=true]")
    if not audio:
        await page.get_by_role("checkbox", name="Microphone").uncheck()
    if not video:
        await page.get_by_role("checkbox", name="Camera").uncheck()
    await page.get_by_role("button", name="Join call").click()
    await page.wait_for_selector("#call[data-state=joined]")
    return await page.get_attribute("#call", "data-peer-id")


def tile(peer_id: str) -> str:
    return f'.tile[data-peer-id="{peer_id}"]'


async def wait_connected(page, peer_id: str):
    await page.wait_for_selector(f'{tile(peer_id)}[data-connection-state="connected"]')


async def wait_video_playing(page, peer_id: str):
    await page.wait_for_function(
        """(selector) => { const v = document.querySelector(selector + " video");
                           return v && v.videoWidth > 0 && v.readyState >= 2 && !v.paused; }""",
        arg=tile(peer_id),
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser():
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"{CHROMIUM} is missing: apt-get install -y chromium")
    try:
        from playwright.async_api import async_playwright
    except ImportError as error:
        unavailable(f"playwright is not installed: {error}")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


class Browsers:
    """Opens pages as given users, each in its own context (its own cookies), logged in through the login page."""

    def __init__(self, browser, server, test_name: str):
        self.browser = browser
        self.server = server
        self.test_name = test_name
        self.contexts = []
        self.pages = []  # (label, page)
        self.console = []

    async def new_page(self, label: str, *, viewport=None):
        context = await self.browser.new_context(
            base_url=self.server.url, viewport=viewport or {"width": 1100, "height": 800},
            permissions=["camera", "microphone"],
        )
        context.set_default_timeout(TIMEOUT_MS)
        self.contexts.append(context)
        page = await context.new_page()
        page.on("console", lambda message: self.console.append(f"[{label}] {message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.console.append(f"[{label}] pageerror: {error}"))
        self.pages.append((label, page))
        return page

    async def logged_in(self, user, password: str, next_path: str = "/", *, lands_on: str | None = None,
                        viewport=None):
        """A page of `user`, logged in through the real login form, showing next_path (or `lands_on`, the path
        that next_path redirects to, such as the room an invite link leads to)."""
        page = await self.new_page(user.username, viewport=viewport)
        await page.goto(f"/accounts/login/?next={next_path}")
        await page.fill("#id_username", user.username)
        await page.fill("#id_password", password)
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_url(re.compile(re.escape(lands_on or next_path) + r"$"))
        return page

    async def save_artifacts(self) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        safe = re.sub(r"[^\w.-]+", "_", self.test_name)
        for index, (label, page) in enumerate(self.pages):
            if page.is_closed():
                continue
            try:
                await page.screenshot(path=str(ARTIFACTS / f"{safe}-{index}-{label}.png"), full_page=True)
            except Exception as error:  # a crashed page must not hide the test's own failure
                self.console.append(f"[{label}] screenshot failed: {error}")
        (ARTIFACTS / f"{safe}-console.log").write_text("\n".join(self.console) + "\n")

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()
        await self.wait_for_server_to_record_leaves()
        # The test's sync_to_async calls ran in asgiref's executor thread, whose connection pytest-django does not
        # close: left open, PostgreSQL refuses to drop the test database at the end ("accessed by other users").
        await sync_to_async(connections.close_all)()

    async def wait_for_server_to_record_leaves(self, timeout: float = 10.0) -> None:
        """Closing the pages makes the server record their leaves; the database flush after the test must not
        race those writes (on PostgreSQL, TRUNCATE against a leave holding row locks deadlocks)."""
        still_live = sync_to_async(CallParticipant.objects.filter(left_at__isnull=True).exists)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await still_live() and loop.time() < deadline:
            await asyncio.sleep(0.1)


@pytest_asyncio.fixture(loop_scope="session")
async def browsers(browser, live_server_process, request):
    """Per test: contexts for its users; on failure, screenshots of every page and the console in test-artifacts/."""
    opened = Browsers(browser, live_server_process, request.node.name)
    yield opened
    report = getattr(request.node, "report_call", None)
    if report is None or report.failed:
        await opened.save_artifacts()
    await opened.close()
