"""What the deployment tests share: the shipped units' commands, production-like settings, clients through nginx.

Servers run the command line of `deploy/systemd/parley@.service` itself (its ExecStart, and its ExecStartPre
check when asked), with the virtualenv of this test run in place of /srv/parley/venv.
"""

import asyncio
import itertools
import json
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import websockets

from tests.conftest import IN_CI
from tests.servers import PROJECT, ServerProcess
from tests.webrtc import WebRTCPeer

DEPLOY = PROJECT / "deploy"
UNITS = DEPLOY / "systemd"
VENV_BIN = Path(sys.executable).parent
SHIPPED_VENV_BIN = "/srv/parley/venv/bin/"
SHIPPED_APP = "/srv/parley/app"
TIMEOUT = 20

# Production settings, as deploy/systemd/parley.env.example sets them, for 127.0.0.1 behind the test's nginx.
PRODUCTION_ENV = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "deploy-tests-" + "k3y-0f-the-test-suite-" * 3,
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
    "DJANGO_BEHIND_PROXY": "true",
    "DJANGO_LOG_LEVEL": "INFO",
}


def require_binary(name: str, *candidates: str) -> str:
    """The path of a program the test drives; locally a missing one skips the test, in CI it fails it."""
    for candidate in (shutil.which(name), *candidates):
        if candidate and Path(candidate).exists():
            return candidate
    message = f"{name} is not installed (apt-get install nginx redis-sentinel; see .ci/run)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def unit_directives(path: Path) -> list[tuple[str, str]]:
    """(key, value) pairs of a unit file, continuation lines joined, comments left out."""
    text = path.read_text().replace("\\\n", " ")
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def unit_environment(name: str) -> dict[str, str]:
    """The variables a unit's Environment= lines set."""
    pairs = [pair for k, value in unit_directives(UNITS / name) if k == "Environment" for pair in value.split()]
    return dict(pair.split("=", 1) for pair in pairs)


def unit_command(value: str, *, port: int | None = None, environment: dict[str, str] | None = None) -> list[str]:
    """An Exec*= line of a shipped unit as this machine runs it: our virtualenv, the instance name a port, and
    ${VARIABLE} replaced as systemd does."""
    if port is not None:
        value = value.replace("%i", str(port))
    value = re.sub(r"\$\{([A-Z0-9_]+)\}", lambda m: (environment or {})[m.group(1)], value)
    args = shlex.split(value)
    assert args[0].startswith(SHIPPED_VENV_BIN), args[0]
    return [str(VENV_BIN / args[0].removeprefix(SHIPPED_VENV_BIN)), *args[1:]]


def unit_commands(name: str, key: str, *, port: int | None = None,
                  env: dict[str, str] | None = None) -> list[list[str]]:
    environment = {**unit_environment(name), **(env or {})}
    return [unit_command(value, port=port, environment=environment)
            for k, value in unit_directives(UNITS / name) if k == key]


class UnitServer(ServerProcess):
    """One `parley@<port>.service`: its ExecStart (and, with `checked`, its ExecStartPre first)."""

    name = "unit"

    def __init__(self, *, env: dict[str, str] | None = None, port: int | None = None, checked: bool = False):
        super().__init__(env=env, port=port)
        self.checked = checked

    def command(self) -> list[str]:
        [command] = unit_commands("parley@.service", "ExecStart", port=self.port, env=self.env)
        return command

    def start(self, timeout: float = 30.0) -> "UnitServer":
        if self.checked:
            from tests.servers import database_url_of_test_db

            env = {**subprocess_env(), "DATABASE_URL": database_url_of_test_db(), **self.env}
            for command in unit_commands("parley@.service", "ExecStartPre", port=self.port):
                result = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60)
                assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
        return super().start(timeout)

    def restart(self) -> None:
        """What `systemctl restart parley@<port>` does: SIGTERM, wait for the exit, start again on the port."""
        self.stop()
        self.start()


def subprocess_env() -> dict[str, str]:
    import os

    return {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}


# --- HTTP through nginx ---------------------------------------------------------------------------


def tls_context(certificate: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate))


def http(method: str, url: str, *, token: str | None = None, body: bytes | dict | None = None,
         headers: dict | None = None, context: ssl.SSLContext | None = None) -> tuple[int, dict, bytes]:
    """One request; answers (status, headers, body) without following redirects or raising on errors.
    The headers are looked up case-insensitively (uvicorn sends lower-case names, nginx its own capitalised)."""
    headers = dict(headers or {})
    if isinstance(body, dict):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    if token:
        headers["Authorization"] = f"Token {token}"

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirects, urllib.request.HTTPSHandler(context=context))
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with opener.open(request, timeout=TIMEOUT) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


async def ahttp(*args, **kwargs) -> tuple[int, dict, bytes]:
    return await asyncio.to_thread(http, *args, **kwargs)


class Site:
    """Parley as clients see it through nginx: https://127.0.0.1:<port>, trusted through the test's certificate."""

    def __init__(self, base: str, context: ssl.SSLContext):
        self.base = base
        self.context = context

    async def request(self, method: str, path: str, **kwargs) -> tuple[int, dict, bytes]:
        return await ahttp(method, self.base + path, context=self.context, **kwargs)

    async def ticket(self, token: str, slug: str) -> str:
        status, _, body = await self.request("POST", f"/api/rooms/{slug}/ticket/", token=token)
        assert status == 200, (status, body)
        return json.loads(body)["ticket"]

    def ws_base(self) -> str:
        return self.base.replace("https://", "wss://", 1)

    async def ws_url(self, token: str, slug: str, **query) -> str:
        params = "&".join(f"{k}={v}" for k, v in {"ticket": await self.ticket(token, slug), **query}.items())
        return f"{self.ws_base()}/ws/rooms/{slug}/?{params}"


# --- A WebRTC peer that resumes its signaling session (docs/signaling.md, resume) -------------------


class ResumingSocket:
    """The signaling socket of one participation: when it drops, it reconnects with `resume` and `last_seq`.

    It iterates over frames like a websockets connection, across reconnections; each resumed `welcome` is kept in
    `welcomes` rather than handed on. `url_for(resume, last_seq)` makes the URL of each attempt (a fresh ticket).
    """

    def __init__(self, url_for, ssl_context: ssl.SSLContext | None = None):
        self.url_for = url_for
        self.ssl = ssl_context
        self.ws = None
        self.welcomes: list[dict] = []
        self.closes: list[int | None] = []
        self.last_seq = 0
        self.closing = False

    async def _connect(self, url: str) -> dict:
        self.ws = await websockets.connect(url, open_timeout=TIMEOUT, ssl=self.ssl if url.startswith("wss") else None)
        welcome = json.loads(await asyncio.wait_for(self.ws.recv(), TIMEOUT))
        assert welcome["type"] == "welcome", welcome
        self.welcomes.append(welcome)
        return welcome

    async def open(self) -> dict:
        return await self._connect(await self.url_for(None, None))

    @property
    def token(self) -> str:
        return self.welcomes[-1]["resume_token"]

    def __aiter__(self):
        return self._frames()

    async def _frames(self):
        while True:
            try:
                async for text in self.ws:
                    frame = json.loads(text)
                    if isinstance(frame.get("seq"), int):
                        self.last_seq = frame["seq"]
                    yield text
                code = self.ws.close_code
            except websockets.ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
            if self.closing:
                return
            self.closes.append(code)
            await self._resume()

    async def _resume(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                await self._connect(await self.url_for(self.token, self.last_seq))
                return
            except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake, websockets.ConnectionClosed,
                    AssertionError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def send(self, text: str) -> None:
        await self.ws.send(text)

    async def close(self) -> None:
        self.closing = True
        await self.ws.close()


class ResumingPeer(WebRTCPeer):
    """tests.webrtc.WebRTCPeer over a ResumingSocket: its RTCPeerConnections outlive signaling outages."""

    def __init__(self, url_for, *, ssl_context: ssl.SSLContext | None = None, offer_channel: bool = True):
        super().__init__("", offer_channel=offer_channel)
        self.socket = ResumingSocket(url_for, ssl_context)

    async def __aenter__(self) -> "ResumingPeer":
        self.ws = self.socket
        self.welcome = await self.socket.open()
        self._task = asyncio.create_task(self._listen())
        for peer in self.welcome["peers"]:
            await self._offer_to(peer["peer_id"])
        return self


class Chatter:
    """Data-channel messages both ways every `interval` seconds, to show media-path continuity."""

    def __init__(self, a: WebRTCPeer, b: WebRTCPeer, interval: float = 0.1):
        self.a, self.b, self.interval = a, b, interval
        self.received: list[tuple[float, str]] = []  # (monotonic time, which side got it)
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "Chatter":
        self.channels = (await self.a.channel_open(self.b.peer_id), await self.b.channel_open(self.a.peer_id))
        for peer, side in ((self.a, "a"), (self.b, "b")):
            peer.channels[(self.b if side == "a" else self.a).peer_id].on(
                "message", lambda message, side=side: self.received.append((time.monotonic(), side)))
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        n = 0
        while True:
            n += 1
            self.channels[0].send(f"a{n}")
            self.channels[1].send(f"b{n}")
            await asyncio.sleep(self.interval)

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()

    def longest_gap(self, since: float) -> float:
        """The longest time either side went without a message since `since` (until now)."""
        gaps = []
        for side in ("a", "b"):
            times = [since] + [t for t, s in self.received if s == side and t >= since] + [time.monotonic()]
            gaps.append(max(later - earlier for earlier, later in itertools.pairwise(times)))
        return max(gaps)


# --- The deployment: N unit servers behind nginx --------------------------------------------------

_static_collected = False


def collect_static() -> Path:
    """`manage.py collectstatic` with production settings (hashed, compressed names), once per test run."""
    global _static_collected
    if not _static_collected:
        result = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=PROJECT,
                                env={**subprocess_env(), **PRODUCTION_ENV}, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr
        _static_collected = True
    return PROJECT / "staticfiles"


class Deployment:
    """`count` parley@<port> servers sharing Redis and the test database, behind the shipped nginx config."""

    def __init__(self, *, count: int = 2, env: dict[str, str] | None = None, checked: bool = True):
        from tests.nginx import Nginx

        self.servers = [UnitServer(env={**PRODUCTION_ENV, **(env or {})}, checked=checked) for _ in range(count)]
        self.nginx = Nginx(upstream_ports=[s.port for s in self.servers], static_root=collect_static())
        self.site = Site(self.nginx.url, tls_context(self.nginx.certificate))

    def __enter__(self) -> "Deployment":
        try:
            for server in self.servers:
                server.start()
            self.nginx.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.nginx.stop()
        for server in self.servers:
            server.stop()
