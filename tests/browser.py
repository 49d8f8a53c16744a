"""Playwright fixtures: one Debian Chromium per test session, one browser context per user.

Registered from tests/conftest.py. Playwright is imported lazily, so the rest of the suite runs without it.
Tests using these fixtures are async and run on the session event loop:

    pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session"),
                  pytest.mark.django_db(transaction=True)]
"""

import asyncio
import json
import os
import re
import signal
from pathlib import Path

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.db import connections

from calls.models import CallParticipant
from tests.helpers import unavailable
from tests.servers import DaphneServer

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


DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


async def within_viewport(page, *selectors: str) -> None:
    """Each selector's first element is visible and wholly inside the viewport (no scrolling needed)."""
    size = page.viewport_size
    for selector in selectors:
        box = await page.locator(selector).first.bounding_box()
        assert box is not None, f"{selector} is not shown"
        assert box["x"] >= -0.5 and box["y"] >= -0.5, f"{selector} starts off screen: {box}"
        assert box["x"] + box["width"] <= size["width"] + 0.5, f"{selector} overflows to the right: {box} {size}"
        assert box["y"] + box["height"] <= size["height"] + 0.5, f"{selector} is below the fold: {box} {size}"


# Screenshots that docs/ keeps (the README shows call-page.png): PARLEY_DOCS_SCREENSHOTS=1 copies them there.
DOCS_SCREENSHOTS = {"call-of-2-desktop": "call-page.png", "prejoin-desktop": "prejoin.png",
                    "shared-screen-pinned-desktop": "shared-screen.png", "call-of-4-phone": "call-page-phone.png"}


async def screenshot(page, name: str) -> Path:
    """A screenshot of the viewport, kept in test-artifacts/ (the README's and docs' images come from there)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    if os.environ.get("PARLEY_DOCS_SCREENSHOTS") and name in DOCS_SCREENSHOTS:
        await page.screenshot(path=str(ARTIFACTS.parent / "docs" / DOCS_SCREENSHOTS[name]))
    return path


async def at_both_sizes(page, name: str, *selectors: str) -> None:
    """At 1280x800 and at 390x844: the selectors within the viewport, and a screenshot of each."""
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        await page.set_viewport_size(size)
        await page.wait_for_timeout(150)  # the layout follows the resize
        await screenshot(page, f"{name}-{label}")
        await within_viewport(page, *selectors)
    await page.set_viewport_size(DESKTOP)


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


async def frames_decoded(page, peer_id: str) -> int:
    """Video frames the peer's tile has decoded so far (keeps growing while their video reaches us)."""
    return await page.evaluate(
        """(selector) => { const v = document.querySelector(selector + " video");
                           return v ? v.getVideoPlaybackQuality().totalVideoFrames : -1; }""",
        tile(peer_id),
    )


async def wait_frames_grow(page, peer_id: str, *, beyond: int | None = None, timeout: float = TIMEOUT_MS):
    """Wait until the peer's video has decoded more frames than `beyond` (by default: than now)."""
    start = await frames_decoded(page, peer_id) if beyond is None else beyond
    await page.wait_for_function(
        """([selector, start]) => { const v = document.querySelector(selector + " video");
                                    return v && v.getVideoPlaybackQuality().totalVideoFrames > start; }""",
        arg=[tile(peer_id), start], timeout=timeout,
    )
    return await frames_decoded(page, peer_id)


async def wait_video_playing(page, peer_id: str):
    await page.wait_for_function(
        """(selector) => { const v = document.querySelector(selector + " video");
                           return v && v.videoWidth > 0 && v.readyState >= 2 && !v.paused; }""",
        arg=tile(peer_id),
    )


class SocketTap:
    """Routes one page's signaling sockets through the test (Playwright's routeWebSocket): frames go both ways as
    they are, and the test sees what the page sent and how it closed, can change or drop frames from the server
    (`rewrite(connection_index, frame) -> frame | None`), and can send frames or a close code to the page."""

    def __init__(self, rewrite=None):
        self.rewrite = rewrite or (lambda index, frame: frame)
        self.urls: list[str] = []                  # one per connection the page opened
        self.sent: list[tuple[int, dict]] = []     # (connection index, frame) sent by the page
        self.closed_by_page: dict[int, int | None] = {}  # connection index -> close code the page gave
        self.page_side = None                      # the latest connection, page side
        self.server_side = None

    async def attach(self, page) -> "SocketTap":
        await page.route_web_socket(re.compile(r"/ws/rooms/"), self.route)
        return self

    def route(self, ws):
        index = len(self.urls)
        self.urls.append(ws.url)
        server = ws.connect_to_server()
        self.page_side, self.server_side = ws, server

        def from_page(message):
            try:
                self.sent.append((index, json.loads(message)))
            except ValueError:
                self.sent.append((index, {"raw": message}))
            server.send(message)

        def from_server(message):
            frame = self.rewrite(index, json.loads(message))
            if frame is not None:
                ws.send(json.dumps(frame))

        async def page_closed(code, reason):
            self.closed_by_page.setdefault(index, code)
            await server.close(code=code if code and code != 1005 else 1000, reason=reason or "")

        ws.on_message(from_page)
        server.on_message(from_server)
        ws.on_close(page_closed)

    def types_sent(self, index: int | None = None) -> list[str]:
        return [frame.get("type") for i, frame in self.sent if index is None or i == index]

    def inject(self, frame: dict) -> None:
        """A frame to the page, as if from the server, on its current socket."""
        self.page_side.send(json.dumps(frame))

    async def close_page_side(self, code: int, reason: str = "") -> None:
        """Close the page's current socket with `code`, as if the server did, and the server side cleanly."""
        await self.page_side.close(code=code, reason=reason)
        await self.server_side.close(code=1000)


class RestartableServer:
    """A daphne of the test's own, which the test may kill (SIGKILL: no goodbye to anyone) and start again on the
    same port. Rows of the participants it held stay live in the database, as after a real crash."""

    def __init__(self):
        self.server = DaphneServer()
        self.port = self.server.port
        self.url = self.server.url
        self.ws_url = self.server.ws_url
        self.generation = 0

    def start(self) -> "RestartableServer":
        self.server.log_path = self.server.log_path.with_name(f"daphne-{self.port}-{self.generation}.log")
        self.server.start()
        return self

    def kill(self) -> None:
        process = self.server.process
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        self.server.log.close()

    def restart(self) -> "RestartableServer":
        self.generation += 1
        self.server = DaphneServer(port=self.port)
        return self.start()

    def stop(self) -> None:
        self.server.stop()


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

    async def new_page(self, label: str, *, viewport=None, **context_options):
        context = await self.browser.new_context(
            base_url=self.server.url, viewport=viewport or {"width": 1100, "height": 800},
            permissions=["camera", "microphone"], **context_options,
        )
        context.set_default_timeout(TIMEOUT_MS)
        self.contexts.append(context)
        page = await context.new_page()
        page.on("console", lambda message: self.console.append(f"[{label}] {message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.console.append(f"[{label}] pageerror: {error}"))
        self.pages.append((label, page))
        return page

    async def logged_in(self, user, password: str, next_path: str = "/", *, lands_on: str | None = None,
                        viewport=None, **context_options):
        """A page of `user`, logged in through the real login form, showing next_path (or `lands_on`, the path
        that next_path redirects to, such as the room an invite link leads to)."""
        page = await self.new_page(user.username, viewport=viewport, **context_options)
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
        """Closing the pages makes the server record their suspensions (a closed page may still resume); the
        database flush after the test must not race those writes (on PostgreSQL, TRUNCATE against a write holding
        row locks deadlocks)."""
        still_live = sync_to_async(CallParticipant.objects.filter(left_at__isnull=True,
                                                                  suspended_at__isnull=True).exists)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await still_live() and loop.time() < deadline:
            await asyncio.sleep(0.1)


@pytest_asyncio.fixture(loop_scope="session")
async def own_server(transactional_db):
    """A server process of this test's own (see RestartableServer); stopped at the end."""
    server = await asyncio.to_thread(RestartableServer().start)
    yield server
    await asyncio.to_thread(server.stop)


@pytest_asyncio.fixture(loop_scope="session")
async def own_browsers(browser, own_server, request):
    """As `browsers`, on the test's own server. Participants that a killed server left live are recorded as timed
    out once the pages are closed, as the reaper would after a while."""
    opened = Browsers(browser, own_server, request.node.name)
    yield opened
    report = getattr(request.node, "report_call", None)
    if report is None or report.failed:
        await opened.save_artifacts()
    for context in opened.contexts:
        await context.close()
    await opened.wait_for_server_to_record_leaves(timeout=3)
    await asyncio.to_thread(own_server.stop)
    await sync_to_async(_time_out_live_participants)()
    await sync_to_async(connections.close_all)()


def _time_out_live_participants() -> None:
    from django.utils import timezone

    CallParticipant.objects.filter(left_at__isnull=True).update(left_at=timezone.now(), leave_reason="timed-out",
                                                                    suspended_at=None)


@pytest_asyncio.fixture(loop_scope="session")
async def browsers(browser, live_server_process, request):
    """Per test: contexts for its users; on failure, screenshots of every page and the console in test-artifacts/."""
    opened = Browsers(browser, live_server_process, request.node.name)
    yield opened
    report = getattr(request.node, "report_call", None)
    if report is None or report.failed:
        await opened.save_artifacts()
    await opened.close()
