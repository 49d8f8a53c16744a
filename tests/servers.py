"""Real server processes for live tests: daphne, as production runs it, and the optional uvicorn."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

PROJECT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def terminate(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within `timeout` seconds; nothing if it is gone."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def database_url_of_test_db() -> str:
    """The URL of the database pytest-django created, so a server process sees what the test wrote."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


class ServerProcess:
    """An ASGI server serving `config.asgi:application` on a free loopback port, stopped by pid at the end.

    Subclasses say which server (`name`) and how it is started (`command`).
    """

    name = ""

    def __init__(self, *, env: dict[str, str] | None = None, port: int | None = None):
        self.port = port or free_port()
        self.env = env or {}
        self.process: subprocess.Popen | None = None
        self.log_path = PROJECT / "test-artifacts" / f"{self.name}-{self.port}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def ws_max_bytes(self) -> str:
        """The edge limit, from the one setting, as the documented commands pass it."""
        return self.env.get("PARLEY_WS_MAX_BYTES") or str(settings.PARLEY_SIGNALING["WS_MAX_BYTES"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "ServerProcess":
        self.log_path.parent.mkdir(exist_ok=True)
        env = {**os.environ, "DATABASE_URL": database_url_of_test_db(), "DJANGO_SETTINGS_MODULE": "config.settings",
               **self.env}
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(self.command(), cwd=PROJECT, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log_path.read_text()[-2000:]
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen on {self.port} within {timeout} s")

    def stop(self) -> None:
        terminate(self.process)
        if getattr(self, "log", None):
            self.log.close()

    def rss_kib(self) -> int:
        """The process's resident memory, in KiB."""
        with open(f"/proc/{self.process.pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

    def kill(self) -> None:
        """`kill -9`: the process dies with its sockets, recording nothing."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class DaphneServer(ServerProcess):
    """`daphne config.asgi:application`: the default server."""

    name = "daphne"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port),
                "--websocket-max-message-size", self.ws_max_bytes, "config.asgi:application"]


class UvicornServer(ServerProcess):
    """The optional uvicorn server, with uvloop and httptools (docs/performance.md)."""

    name = "uvicorn"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
                "--port", str(self.port), "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio",
                "--ws-max-size", self.ws_max_bytes]


def as_in_production() -> dict[str, str]:
    """A server's environment with DEBUG off, as production runs it. With DEBUG on, Django keeps the last 9,000
    queries of every database connection (`queries_log`): about 40 KB per join, which memory figures must not count.
    The test process's secret key, so that the tickets it issues are valid there."""
    return {"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": settings.SECRET_KEY, "DJANGO_ALLOWED_HOSTS": "127.0.0.1"}


def each_server(env: dict[str, str]):
    """A module fixture `server`: a daphne process, then a uvicorn one, with `env`, for tests to run against each."""
    @pytest.fixture(scope="module", params=[DaphneServer, UvicornServer], ids=["daphne", "uvicorn"])
    def server(request, django_db_setup, django_db_blocker):
        with django_db_blocker.unblock():
            process = request.param(env=env)
            process.start()
        yield process
        process.stop()
    return server
