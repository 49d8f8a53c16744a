"""Issue 10, row 10: with debug off, unsafe hosts, origins or a missing secret key stop the server from starting;
the WebSocket origin check compares scheme, host and port."""

import asyncio
import json

import pytest
import websockets
from asgiref.sync import sync_to_async

from calls import tickets
from calls.routing import origin_allowed
from tests.servers import DaphneServer
from tests.test_settings import PRODUCTION, run_django

REFUSALS = {
    "a wildcard host": ({"DJANGO_ALLOWED_HOSTS": "*"}, "parley.E001"),
    "a leading-dot host": ({"DJANGO_ALLOWED_HOSTS": ".example.com"}, "parley.E002"),
    "a wildcard trusted origin": ({"DJANGO_CSRF_TRUSTED_ORIGINS": "https://*.example.com"}, "parley.E003"),
    "a plain-http trusted origin": ({"DJANGO_CSRF_TRUSTED_ORIGINS": "http://parley.example.com"}, "parley.E004"),
    "no secret key": ({"DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY must be set"),
}


def production_env(**changes) -> dict[str, str]:
    """The environment of tests/test_settings.py's production, minus what the test runner set for itself."""
    return {**PRODUCTION, "DJANGO_ALLOWED_HOSTS": "127.0.0.1", "DJANGO_CSRF_TRUSTED_ORIGINS": "https://127.0.0.1",
            **changes}


@pytest.mark.live
@pytest.mark.parametrize("case", list(REFUSALS))
def test_daphne_refuses_to_start_with_debug_off_and(case):
    changes, says = REFUSALS[case]
    server = DaphneServer(env=production_env(**changes))
    with pytest.raises(RuntimeError, match="exited with") as refused:
        server.start(timeout=60)
    assert says in str(refused.value)


@pytest.mark.parametrize("case", list(REFUSALS))
def test_manage_py_refuses_too(case):
    changes, says = REFUSALS[case]
    result = run_django("manage.py", "check", env={**PRODUCTION, **changes})
    assert result.returncode != 0
    assert says in result.stderr


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_daphne_starts_with_debug_off_and_a_safe_configuration():
    with DaphneServer(env=production_env()) as server:
        assert server.process.poll() is None


def test_the_same_settings_pass_with_debug_on():
    result = run_django("manage.py", "check", env={"DJANGO_DEBUG": "true", "DJANGO_ALLOWED_HOSTS": ".example.com",
                                                   "DJANGO_CSRF_TRUSTED_ORIGINS": "http://localhost:8000"})
    assert result.returncode == 0, result.stderr


def test_the_system_check_reports_settings_changed_after_loading(settings):
    from calls.checks import check_hosts_and_trusted_origins

    settings.DEBUG = False
    settings.ALLOWED_HOSTS = [".example.com"]
    settings.CSRF_TRUSTED_ORIGINS = ["http://parley.example.com", "https://*.example.com"]
    assert sorted(e.id for e in check_hosts_and_trusted_origins(None)) == ["parley.E002", "parley.E003",
                                                                           "parley.E004"]


# --- The WebSocket origin check: scheme, host and port ----------------------------------------------------------


@pytest.mark.parametrize(("origin", "host", "secure", "allowed"), [
    ("http://127.0.0.1:8000", "127.0.0.1:8000", False, True),
    ("http://localhost", "localhost", False, True),
    ("http://localhost:80", "localhost", False, True),  # the default port, spelled out
    ("http://127.0.0.1:9000", "127.0.0.1:8000", False, False),  # another port: another site
    ("https://127.0.0.1:8000", "127.0.0.1:8000", False, False),  # another scheme
    ("http://127.0.0.1", "127.0.0.1", True, False),  # a plain-http page on an https site
    ("https://127.0.0.1", "127.0.0.1", True, True),
    ("http://evil.example", "evil.example", False, False),  # a Host that is not allowed
    ("http://localhost:8000", "127.0.0.1:8000", False, False),  # another host than the request's
    ("null", "127.0.0.1", False, False),
    ("file://", "127.0.0.1", False, False),
    ("http://[::1]:8000", "[::1]:8000", False, True),
])
def test_origins_are_compared_by_scheme_host_and_port(settings, origin, host, secure, allowed):
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
    settings.CSRF_TRUSTED_ORIGINS = []
    assert origin_allowed(origin, host=host, secure=secure) is allowed


@pytest.mark.parametrize(("origin", "allowed"), [
    ("https://app.example", True), ("https://app.example:443", True), ("https://app.example/", True),
    ("http://app.example", False), ("https://app.example:8443", False), ("https://sub.app.example", False),
])
def test_a_trusted_origin_matches_by_scheme_host_and_port(settings, origin, allowed):
    settings.ALLOWED_HOSTS = ["parley.example"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example"]
    assert origin_allowed(origin, host="parley.example", secure=True) is allowed


async def close_or_welcome(url: str, origin: str, headers: dict | None = None) -> int | str:
    async with websockets.connect(url, additional_headers={"Origin": origin, **(headers or {})}) as ws:
        try:
            return json.loads(await asyncio.wait_for(ws.recv(), 10))["type"]
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_a_real_server_refuses_another_scheme_or_port(live_server_process, public_room, alice):
    server = live_server_process

    async def attempt(origin, headers=None):
        ticket = await sync_to_async(tickets.issue_ticket)(user=alice, room=public_room)
        return await close_or_welcome(f"{server.ws_url}/ws/rooms/{public_room.slug}/?ticket={ticket}", origin,
                                      headers)

    assert await attempt(f"https://127.0.0.1:{server.port}") == 4403
    assert await attempt(f"http://127.0.0.1:{server.port + 1}") == 4403
    assert await attempt("http://127.0.0.1") == 4403
    assert await attempt(f"http://localhost:{server.port}") == 4403  # Host says 127.0.0.1
    # Not behind a proxy: a client's own X-Forwarded-Proto does not make the connection https.
    assert await attempt(f"https://127.0.0.1:{server.port}", {"X-Forwarded-Proto": "https"}) == 4403
    assert await attempt(f"http://127.0.0.1:{server.port}") == "welcome"
