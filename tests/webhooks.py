"""A real webhook receiver on 127.0.0.1 (a threaded http.server) that checks signatures the way
docs/webhooks.md tells receivers to, written from the spec rather than from webhooks/delivery.py; and the
worker as a real `manage.py deliver_webhooks` process."""

import base64
import hashlib
import hmac
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.servers import PROJECT, database_url_of_test_db


def signature_of(*, secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass
class Received:
    msg_id: str
    timestamp: str
    signature: str
    body: bytes
    verified: bool
    answered: int

    @property
    def event(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers each POST with `status` (or the status `respond(msg_id, attempt)` returns), records it and whether
    its signature and timestamp were good. `hold` (a msg_id) makes the first request of that id wait for
    `release` (set) before answering."""

    secret: str = ""
    status: int = 204
    respond: object = None
    hold: str | None = None
    received: list[Received] = field(default_factory=list)
    tolerance: int = 300
    tls: tuple[str, str] | None = None  # (certificate, key) files: serve https on "localhost"

    def __post_init__(self):
        self.lock = threading.Lock()
        self.holding = threading.Event()
        self.release = threading.Event()
        self.attempts: Counter = Counter()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                msg_id = self.headers.get("webhook-id", "")
                stamp = self.headers.get("webhook-timestamp", "0")
                given = self.headers.get("webhook-signature", "")
                with receiver.lock:
                    receiver.attempts[msg_id] += 1
                    attempt = receiver.attempts[msg_id]
                if receiver.hold == msg_id and attempt == 1:
                    receiver.holding.set()
                    receiver.release.wait(30)
                fresh = abs(time.time() - int(stamp)) <= receiver.tolerance
                expected = signature_of(secret=receiver.secret, msg_id=msg_id, timestamp=stamp, body=body)
                verified = fresh and any(hmac.compare_digest(expected, s) for s in given.split())
                status = receiver.respond(msg_id, attempt) if receiver.respond else receiver.status
                with receiver.lock:
                    receiver.received.append(Received(msg_id, stamp, given, body, verified, status))
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the worker died meanwhile: this answer reaches nobody

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"https://localhost:{self.server.server_address[1]}/hook?from=parley"
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def acknowledged(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if 200 <= r.answered < 300]

    def ids(self) -> Counter:
        with self.lock:
            return Counter(r.msg_id for r in self.received)


WORKER_ENV = {"PARLEY_WEBHOOK_ALLOW_PRIVATE": "true", "PARLEY_WEBHOOK_ALLOW_HTTP": "true",
              "PARLEY_WEBHOOK_RETRY_SCALE": "0.001", "PARLEY_WEBHOOK_POLL_SECONDS": "0.1"}


class Worker:
    """`manage.py deliver_webhooks` as a real process on the test database."""

    def __init__(self, *args: str, log_name: str = "worker"):
        self.args = args
        self.log_path = PROJECT / "test-artifacts" / f"{log_name}-{os.getpid()}-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Worker":
        self.log_path.parent.mkdir(exist_ok=True)
        env = {**os.environ, "DATABASE_URL": database_url_of_test_db(), "DJANGO_SETTINGS_MODULE": "config.settings",
               **WORKER_ENV}
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen([sys.executable, "manage.py", "deliver_webhooks", *self.args], cwd=PROJECT,
                                        env=env, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        """`kill -9`."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.log.close()

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.log.close()

    def output(self) -> str:
        return self.log_path.read_text()


def self_signed_certificate(directory) -> tuple[str, str]:
    """A certificate for "localhost" and its key, made by openssl; (certificate, key) paths."""
    from tests.helpers import unavailable

    if shutil.which("openssl") is None:
        unavailable("openssl is not installed")
    cert, key = str(directory / "cert.pem"), str(directory / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key
