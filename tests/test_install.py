"""The production servers install: a fresh virtualenv made from requirements.txt only runs the documented
daphne command (README) and the shipped unit's uvicorn command (deploy/systemd/parley@.service), and each
answers HTTP (the login page) and a WebSocket join with a ticket."""

import asyncio
import json
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import websockets
from asgiref.sync import sync_to_async

from calls import tickets
from tests.deploy import UNITS, unit_directives
from tests.helpers import unavailable
from tests.servers import PROJECT, ServerProcess

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

WS_MAX_BYTES = "1048576"  # daphne's default message limit, which the unit gives uvicorn too
INSTALL_TIMEOUT = 900


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    """`python -m venv` and `pip install -r requirements.txt`, nothing else; the bin directory."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    try:
        result = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "--no-input",
             "-r", str(PROJECT / "requirements.txt")],
            capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired:
        unavailable(f"pip install -r requirements.txt took over {INSTALL_TIMEOUT} s")
    if result.returncode != 0:
        if "No matching distribution" in result.stderr or "Could not find a version" in result.stderr \
                or "Failed to establish a new connection" in result.stderr:
            unavailable(f"the package index cannot serve requirements.txt: {result.stderr[-1500:]}")
        pytest.fail(f"pip install -r requirements.txt failed: {result.stderr[-3000:]}")
    return venv / "bin"


def daphne_command(bin_dir: Path, port: int) -> list[str]:
    """The README's daphne command, with the fresh virtualenv's daphne."""
    return [str(bin_dir / "daphne"), "-b", "127.0.0.1", "-p", str(port), "--websocket-max-message-size",
            WS_MAX_BYTES, "config.asgi:application"]


def unit_uvicorn_command(bin_dir: Path, port: int) -> list[str]:
    """The shipped unit's ExecStart, with the fresh virtualenv in place of /srv/parley/venv."""
    [value] = [v for k, v in unit_directives(UNITS / "parley@.service") if k == "ExecStart"]
    value = value.replace("%i", str(port)).replace("${PARLEY_WS_MAX_BYTES}", WS_MAX_BYTES)
    program, *args = shlex.split(value)
    assert program == "/srv/parley/venv/bin/uvicorn", program
    return [str(bin_dir / "uvicorn"), *args]


class FreshServer(ServerProcess):
    def __init__(self, name: str, command, bin_dir: Path):
        self.name = name
        super().__init__(env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
        self._command = command(bin_dir, self.port)

    def command(self) -> list[str]:
        return self._command


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=20) as response:
        return response.status, response.read().decode()


@pytest.mark.parametrize("name, command", [("daphne", daphne_command), ("uvicorn", unit_uvicorn_command)])
async def test_a_server_from_requirements_txt_only_serves_pages_and_joins(fresh_venv, name, command, public_room,
                                                                          alice):
    server = FreshServer(f"fresh-{name}", command, fresh_venv)
    await asyncio.to_thread(server.start)
    try:
        status, page = await asyncio.to_thread(get, f"{server.url}/accounts/login/")
        assert status == 200 and 'name="password"' in page

        ticket = await sync_to_async(tickets.issue_ticket)(user=alice, room=public_room)
        async with websockets.connect(f"{server.ws_url}/ws/rooms/{public_room.slug}/?ticket={ticket}",
                                      origin=websockets.Origin(server.url), open_timeout=20) as ws:
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 20))
            assert welcome["type"] == "welcome" and welcome["resumed"] is False
    finally:
        await asyncio.to_thread(server.stop)
        log = server.log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
