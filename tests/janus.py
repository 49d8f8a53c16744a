"""Debian's Janus (package `janus`: the server, its VideoRoom plugin and WebSocket transport) on loopback, started and
stopped by the tests; its configuration, written here, and its log under test-artifacts/janus-<port>/.

Only what Parley uses is loaded: the VideoRoom plugin (with an admin key, so rooms are created by Parley only) and the
WebSocket transport on a free 127.0.0.1 port (with an API secret). No STUN, no TURN, no 1:1 NAT, RTP on a small port
range of its own.

ICE stays on 127.0.0.0/8. Janus never gathers on a loopback interface (its ice.c skips IFF_LOOPBACK interfaces, so
`ice_enforce_list = "lo"` leaves it with none and libnice then takes every other address, the host's eth0 among
them). The fixture therefore makes a veth pair, `parleysfu0` (127.0.0.2/32) and `parleysfu1`, if it is not there
(`ensure_ice_interface()`: root and /usr/sbin/ip needed; failing, the test fails under CI=true and skips locally), and
enforces Janus's ICE on `parleysfu0`: a veth is not loopback-flagged, so Janus and libnice gather on it, and the
address is in the loopback range, so the kernel delivers its packets locally. The aiortc peers gather on 127.0.0.2
only (`same_host_only`). No packet leaves the machine, none uses eth0's address.

Chromium gathers on every interface whatever its flags, and sends ICE checks from eth0's address even when those
candidates are never signalled: tests/test_browser_sfu.py therefore runs Janus and Chromium in a network namespace of
its own (`ensure_netns`: loopback and a `parleysfu0` of its own, nothing else), with `Bridge`s (Unix sockets) to
Janus's API port and to daphne's port.
"""
import asyncio
import json
import os
import secrets
import select
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

import pytest

from tests.helpers import IN_CI
from tests.servers import PROJECT, free_port, terminate

PLUGINS = Path("/usr/lib/x86_64-linux-gnu/janus/plugins")
TRANSPORTS = Path("/usr/lib/x86_64-linux-gnu/janus/transports")
# Everything else Debian ships in those folders stays unloaded (each would read its own configuration, or listen).
OTHER_PLUGINS = ["audiobridge", "duktape", "echotest", "lua", "nosip", "recordplay", "sip", "streaming", "textroom",
                 "videocall", "voicemail"]
OTHER_TRANSPORTS = ["http", "mqtt", "nanomsg", "pfunix", "rabbitmq"]

JANUS_CONF = """\
general: {{
    configs_folder = "{dir}"
    plugins_folder = "{plugins}"
    transports_folder = "{transports}"
    debug_level = 4
    debug_timestamps = true
    log_to_stdout = false
    log_to_file = "{dir}/janus.log"
    api_secret = "{api_secret}"
    admin_secret = "{admin_secret}"
    session_timeout = 60
    server_name = "parley-test"
}}
media: {{
    rtp_port_range = "{rtp_min}-{rtp_max}"
}}
nat: {{
    nice_debug = false
    ice_enforce_list = "{ice_interface}"
    ignore_mdns = true
}}
plugins: {{
    disable = "{disable_plugins}"
}}
transports: {{
    disable = "{disable_transports}"
}}
loggers: {{
    disable = "libjanus_jsonlog.so"
}}
events: {{
    broadcast = false
}}
"""

WEBSOCKETS_CONF = """\
general: {{
    json = "compact"
    ws = true
    ws_port = {port}
    ws_ip = "127.0.0.1"
    wss = false
}}
admin: {{
    admin_ws = false
    admin_wss = false
}}
"""

VIDEOROOM_CONF = """\
general: {{
    admin_key = "{admin_key}"
    lock_rtp_forward = true
}}
"""


ICE_INTERFACE = "parleysfu0"
ICE_PEER_INTERFACE = "parleysfu1"
ICE_ADDRESS = "127.0.0.2"
NETNS = "parleysfu"  # the browser test's namespace: Janus and Chromium in it, nothing but loopback ranges
IP = "/usr/sbin/ip"


def _ip(netns: str | None, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([IP, *(["-n", netns] if netns else []), *args], capture_output=True, text=True)


def _ice_interface_ready(netns: str | None) -> bool:
    address = _ip(netns, "-4", "-o", "addr", "show", "dev", ICE_INTERFACE)
    link = _ip(netns, "-o", "link", "show", "dev", ICE_INTERFACE)
    return address.returncode == 0 and f" {ICE_ADDRESS}/" in address.stdout and "state DOWN" not in link.stdout


def _cannot(what: str, error: Exception) -> NoReturn:
    message = (f"cannot make {what}: {error}; it needs root and {IP}. By hand: {IP} link add {ICE_INTERFACE} type "
               f"veth peer name {ICE_PEER_INTERFACE}; {IP} addr add {ICE_ADDRESS}/32 dev {ICE_INTERFACE}; "
               f"{IP} link set {ICE_INTERFACE} up; {IP} link set {ICE_PEER_INTERFACE} up")
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def ensure_ice_interface(netns: str | None = None) -> str:
    """The veth `parleysfu0` with 127.0.0.2/32, up (made if missing; idempotent), in this network namespace or in
    `netns`: the only interface Janus gathers ICE on. Returns the address. Cannot be made (no `ip`, not root): the
    test fails under CI and is skipped locally."""
    try:
        if _ice_interface_ready(netns):
            return ICE_ADDRESS
        steps = []
        if _ip(netns, "link", "show", "dev", ICE_INTERFACE).returncode != 0:
            steps.append(["link", "add", ICE_INTERFACE, "type", "veth", "peer", "name", ICE_PEER_INTERFACE])
        steps += [["addr", "replace", f"{ICE_ADDRESS}/32", "dev", ICE_INTERFACE],
                  ["link", "set", ICE_INTERFACE, "up"], ["link", "set", ICE_PEER_INTERFACE, "up"]]
        for step in steps:
            done = _ip(netns, *step)
            if done.returncode != 0:
                raise OSError(f"ip {' '.join(step)}: {done.stderr.strip() or done.returncode}")
        if not _ice_interface_ready(netns):
            raise OSError(f"{ICE_INTERFACE} is not up with {ICE_ADDRESS} after making it")
    except OSError as error:  # FileNotFoundError: no ip tool
        _cannot(f"the veth {ICE_INTERFACE} ({ICE_ADDRESS}/32) that Janus gathers ICE on", error)
    return ICE_ADDRESS


def ensure_netns(name: str = NETNS) -> str:
    """A network namespace of the tests' own (made if missing; idempotent) with its loopback up and its own
    `parleysfu0` (127.0.0.2): no other interface, so whatever runs in it (Janus, Chromium) can only use
    127.0.0.0/8. Processes in it are reached from here through `Bridge`s (Unix sockets, which namespaces share)."""
    try:
        if name not in _ip(None, "netns", "list").stdout.split():
            done = _ip(None, "netns", "add", name)
            if done.returncode != 0:
                raise OSError(f"ip netns add {name}: {done.stderr.strip()}")
        done = _ip(name, "link", "set", "lo", "up")
        if done.returncode != 0:
            raise OSError(f"ip -n {name} link set lo up: {done.stderr.strip()}")
    except OSError as error:
        _cannot(f"the network namespace {name}", error)
    ensure_ice_interface(name)
    return name


def in_netns(netns: str | None, command: list[str]) -> list[str]:
    return [IP, "netns", "exec", netns, *command] if netns else command


# A TCP <-> Unix socket relay, run as `python -c BRIDGE <listen> <target>` (each `tcp:<port>` on 127.0.0.1, or
# `unix:<path>`), in this namespace or in another one: a TCP port in one namespace is reachable from another
# through it, and no packet leaves either loopback.
BRIDGE = """
import asyncio, sys

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()

async def connect(spec):
    kind, _, where = spec.partition(":")
    if kind == "unix":
        return await asyncio.open_unix_connection(where)
    return await asyncio.open_connection("127.0.0.1", int(where))

async def main(listen, target):
    async def handle(reader, writer):
        try:
            target_reader, target_writer = await connect(target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, target_writer), pipe(target_reader, writer))
    kind, _, where = listen.partition(":")
    if kind == "unix":
        server = await asyncio.start_unix_server(handle, where)
    else:
        server = await asyncio.start_server(handle, "127.0.0.1", int(where))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


class Bridge:
    """`tcp:<port>` of one namespace reachable as `tcp:<port>` of another: two relays meeting at a Unix socket."""

    def __init__(self, *, listen_port: int, listen_netns: str | None, target_port: int, target_netns: str | None,
                 directory: Path):
        self.path = directory / f"bridge-{listen_port}-{target_port}.sock"
        self.path.unlink(missing_ok=True)
        self.ends = [(target_netns, f"unix:{self.path}", f"tcp:{target_port}"),
                     (listen_netns, f"tcp:{listen_port}", f"unix:{self.path}")]
        self.processes: list[subprocess.Popen] = []

    def start(self) -> "Bridge":
        for netns, listen, target in self.ends:
            process = subprocess.Popen(in_netns(netns, [sys.executable, "-c", BRIDGE, listen, target]),
                                       stdout=subprocess.PIPE, text=True)
            self.processes.append(process)
            ready, _, _ = select.select([process.stdout], [], [], 10)
            if not ready or process.stdout.readline().strip() != "ready":
                self.stop()
                raise RuntimeError(f"the relay {listen} -> {target} did not start")
        return self

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=5)
        self.processes = []
        self.path.unlink(missing_ok=True)


def same_host_only(monkeypatch, address: str) -> None:
    """aiortc's ICE gathers on `address` only (127.0.0.2, the one Janus uses): no other interface, no STUN."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: [address])


def require_janus() -> str:
    """The janus binary, with the VideoRoom plugin and WebSocket transport; missing: skipped locally, failed in CI."""
    binary = shutil.which("janus") or "/usr/bin/janus"
    if Path(binary).exists() and (PLUGINS / "libjanus_videoroom.so").exists() \
            and (TRANSPORTS / "libjanus_websockets.so").exists():
        return binary
    message = "janus with its VideoRoom plugin is not installed (apt-get install janus; see .ci/run)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


class Janus:
    """`url`, `api_secret` and `admin_key` are what Parley's PARLEY_JANUS_* settings would be. With `netns`, Janus runs
    in that network namespace (ensure_netns) and `url` is a bridge to its API port there."""

    def __init__(self, directory: Path | None = None, *, netns: str | None = None):
        self.binary = require_janus()
        self.netns = netns
        self.port = free_port()
        self.api_port = free_port() if netns else self.port  # where Parley reaches it, here
        self.bridge: Bridge | None = None
        self.dir = directory or PROJECT / "test-artifacts" / f"janus-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.api_secret = secrets.token_urlsafe(16)
        self.admin_secret = secrets.token_urlsafe(16)
        self.admin_key = secrets.token_urlsafe(16)
        if netns:
            ensure_netns(netns)
            self.ice_address = ICE_ADDRESS
        else:
            self.ice_address = ensure_ice_interface()
        self.ice_interface = ICE_INTERFACE
        self.rtp_min = 20000 + (self.port % 400) * 100
        self.rtp_max = self.rtp_min + 99
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.api_port}"

    @property
    def log(self) -> Path:
        return self.dir / "janus.log"

    def write(self) -> None:
        (self.dir / "janus.jcfg").write_text(JANUS_CONF.format(
            dir=self.dir, plugins=PLUGINS, transports=TRANSPORTS, api_secret=self.api_secret,
            admin_secret=self.admin_secret, ice_interface=self.ice_interface, rtp_min=self.rtp_min,
            rtp_max=self.rtp_max,
            disable_plugins=",".join(f"libjanus_{name}.so" for name in OTHER_PLUGINS),
            disable_transports=",".join(f"libjanus_{name}.so" for name in OTHER_TRANSPORTS)))
        (self.dir / "janus.transport.websockets.jcfg").write_text(WEBSOCKETS_CONF.format(port=self.port))
        (self.dir / "janus.plugin.videoroom.jcfg").write_text(VIDEOROOM_CONF.format(admin_key=self.admin_key))

    def start(self, timeout: float = 20.0) -> "Janus":
        self.write()
        self.process = subprocess.Popen(in_netns(self.netns, [
            self.binary, "--config", str(self.dir / "janus.jcfg"), "--configs-folder", str(self.dir),
            "--disable-colors", "--interface", "127.0.0.1"]),
            cwd=self.dir, stdout=subprocess.DEVNULL, stderr=open(self.dir / "stderr.log", "w"))
        if self.netns:
            self.bridge = Bridge(listen_port=self.api_port, listen_netns=None, target_port=self.port,
                                 target_netns=self.netns, directory=self.dir).start()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"janus exited with {self.process.returncode}: {self.log_text()[-3000:]}")
            try:
                if asyncio.run(self._info()).get("janus") == "server_info":
                    return self
            except (OSError, asyncio.TimeoutError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"janus did not answer within {timeout} s: {self.log_text()[-3000:]}")
            time.sleep(0.1)

    async def _info(self) -> dict:
        """Janus's `info` request over its WebSocket API: it answers once its plugins and transports are up."""
        import websockets

        socket.create_connection(("127.0.0.1", self.api_port), timeout=0.5).close()
        async with websockets.connect(self.url, subprotocols=["janus-protocol"], open_timeout=2) as ws:
            await ws.send(json.dumps({"janus": "info", "transaction": "ready", "apisecret": self.api_secret}))
            return json.loads(await asyncio.wait_for(ws.recv(), 2))

    def log_text(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        stderr = self.dir / "stderr.log"
        return text + (stderr.read_text(errors="replace") if stderr.exists() else "")

    def stop(self) -> None:
        terminate(self.process)
        if self.bridge:
            self.bridge.stop()

    def __enter__(self) -> "Janus":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ColourTrack:
    """A small video source for aiortc (320x240, 15 fps, one flat colour given as Y, U, V), so that a receiver can
    tell whose video it decodes; built lazily so that importing this module needs no aiortc."""

    def __new__(cls, yuv: tuple[int, int, int], *, width: int = 320, height: int = 240, fps: int = 15,
                noise: bool = False):
        """`noise`: random brightness (the colour stays in U and V), so that the encoder spends its whole bitrate
        as on a real camera's picture, for measurements."""
        import fractions

        import av
        from aiortc.mediastreams import VideoStreamTrack

        class Track(VideoStreamTrack):
            def __init__(self):
                super().__init__()
                self.started: float | None = None
                self.count = 0

            async def recv(self):
                loop = asyncio.get_running_loop()
                if self.started is None:
                    self.started = loop.time()
                self.count += 1
                wait = self.started + self.count / fps - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                frame = av.VideoFrame(width, height, "yuv420p")
                for n, (plane, value) in enumerate(zip(frame.planes, yuv, strict=True)):
                    plane.update(os.urandom(plane.buffer_size) if noise and n == 0
                                 else bytes([value]) * plane.buffer_size)
                frame.pts, frame.time_base = self.count * (90000 // fps), fractions.Fraction(1, 90000)
                return frame

        return Track()


def mean_yuv(frame) -> tuple[int, int, int]:
    """The average Y, U and V of a decoded aiortc frame (each plane's rows without their padding)."""
    frame = frame.reformat(format="yuv420p")
    means = []
    for plane in frame.planes:
        data = bytes(plane)
        rows = [data[n:n + plane.width] for n in range(0, plane.height * plane.line_size, plane.line_size)]
        means.append(sum(map(sum, rows)) // (plane.width * plane.height))
    return tuple(means)


def near(colour: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 24) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))
