#!/usr/bin/env python3
"""Join and reconnect-storm loads for Parley (issue 11).

joins: N sockets (N/2 rooms `bench-<i>` of 2 peers, each ticket minted just before its handshake) connect as
  fast as the loader allows, at most --concurrency handshakes in flight; each counts as joined when its
  `welcome` arrives. Reports joins/s, the time until all joined, p50/p99 join time, and then checks PostgreSQL:
  the live CallParticipant rows of the bench rooms must be N.

storm: the loader starts the server itself (--server-cmd), joins N peers, sends the server SIGTERM, starts it
  again on the same port, and every peer resumes with its `resume_token` and `last_seq` (docs/signaling.md) and
  the call page's backoff (first retry at once, then 0.5 s, 1 s, 2 s ... 10 s with jitter), giving up an
  attempt not welcomed within 10 s as the page does. Reports the time
  from SIGTERM until every peer is back in its call (`welcome`, resumed or a fresh join), resumed vs rejoined.

Needs the server's environment (DATABASE_URL, REDIS_URL, DJANGO_SECRET_KEY): it mints tickets with Parley's
models (fixtures.py). Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from procstat import ProcessSampler, check_pid
from report import percentile, rounded
from signal_load import event_loop_factory, origin_for, raise_open_files_limit
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Origin

PING_SECONDS = 10.0  # as static/js/signaling.js
FIRST_BACKOFF_S = 0.5  # static/js/signaling.js: after the first retry, which is immediate
MAX_BACKOFF_S = 10.0
WELCOME_S = 10.0  # static/js/signaling.js WELCOME_MS: a connection not welcomed by then is given up
CLOSE_TIMEOUT = 2.0


def backoff(attempt: int) -> float:
    """The call page's `backoff(attempt)`: 0 for the first retry, then 0.5 s doubling to 10 s, +-25 % jitter."""
    if attempt <= 1:
        return 0.0
    return min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (attempt - 2)) * (0.75 + random.random() / 2)


@dataclass
class Person:
    """One bench user in one room: mints its own tickets (signing only, no database)."""

    pair: int
    side: str
    user: Any
    room: Any

    def path(self, **extra: str | int) -> str:
        from calls.tickets import sign_ticket

        query = f"ticket={quote(sign_ticket(user=self.user, bound=self.room.slug), safe='')}"
        for key, value in extra.items():
            query += f"&{key}={quote(str(value), safe='')}"
        return f"/ws/rooms/{self.room.slug}/?{query}"


@dataclass
class Socket:
    """One bench peer's connection and what it kept to resume."""

    person: Person
    base_url: str
    ws: ClientConnection | None = None
    peer_id: str = ""
    resume_token: str = ""
    last_seq: int = 0
    close_code: int | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def join(self, path: str, timeout: float) -> dict[str, Any]:
        """Connect and return the welcome; raises on any failure (the caller counts it)."""
        self.closed = asyncio.Event()
        self.close_code = None
        self.ws = None
        try:
            async with asyncio.timeout(timeout):
                self.ws = await connect(self.base_url + path, origin=Origin(origin_for(self.base_url)),
                                        compression=None, proxy=None, ping_interval=None, close_timeout=CLOSE_TIMEOUT,
                                        open_timeout=None, user_agent_header="parley-bench")
                welcome = json.loads(await self.ws.recv())
            if not isinstance(welcome, dict) or welcome.get("type") != "welcome":
                raise ValueError(f"first frame was {str(welcome)[:60]}")
        except BaseException:
            if self.ws is not None:
                self.ws.transport.abort()  # no close handshake: the failed attempt must not hold the loader
                self.ws = None
            raise
        self.peer_id = str(welcome["peer_id"])
        self.resume_token = str(welcome.get("resume_token", ""))
        self.tasks = [asyncio.create_task(self._receive(self.ws)), asyncio.create_task(self._ping(self.ws))]
        return welcome

    async def _receive(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                try:
                    seq = json.loads(raw).get("seq")
                except (ValueError, AttributeError):
                    continue
                if type(seq) is int:
                    self.last_seq = seq
        except ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code if ws.close_code is not None else 1006
            self.closed.set()

    async def _ping(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(PING_SECONDS)
            try:
                await ws.send(json.dumps({"type": "ping", "last_seq": self.last_seq}))
            except ConnectionClosed:
                return

    async def close(self) -> None:
        for task in self.tasks[1:]:
            task.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


def failure_reason(error: BaseException) -> str:
    if isinstance(error, InvalidStatus):
        return f"http {error.response.status_code}"
    if isinstance(error, ConnectionClosed):
        return f"closed {error.rcvd.code if error.rcvd else 1006} before welcome"
    if isinstance(error, TimeoutError):
        return "timed out before welcome"
    if isinstance(error, (OSError, InvalidHandshake, ValueError, KeyError)):
        return f"{type(error).__name__}: {str(error)[:80]}"
    raise error


def people(count: int) -> list[Person]:
    """Fixtures for count/2 rooms (2 peers each), made before the event loop starts."""
    import fixtures
    from django.contrib.auth import get_user_model

    from calls.models import Room

    pairs = (count + 1) // 2
    fixtures.ensure_pairs(pairs)
    users = {user.username: user for user in get_user_model().objects.filter(username__startswith="bench-")}
    rooms = {room.slug: room for room in Room.objects.filter(slug__in=[f"bench-{i}" for i in range(pairs)])}
    return [Person(pair, side, users[f"bench-{pair}-{side}"], rooms[f"bench-{pair}"])
            for pair in range(pairs) for side in "ab"][:count]


def live_rows(count: int) -> int:
    """Live CallParticipant rows in the bench rooms of a count-peer run."""
    from calls.models import CallParticipant

    slugs = [f"bench-{i}" for i in range((count + 1) // 2)]
    return CallParticipant.objects.live().filter(call__room__slug__in=slugs).count()


async def rows_settle(count: int, expected: int, timeout: float) -> int:
    """The live row count, polled until it is `expected` or `timeout` passes (recording may trail welcome)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await asyncio.to_thread(live_rows, count)
        if rows == expected or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.25)


async def join_everyone(sockets: Sequence[Socket], args: argparse.Namespace,
                        failures: Counter[str]) -> tuple[list[float], float]:
    """Connect all, --concurrency at a time; returns (join times in ms of those that joined, last welcome).

    Each socket's ticket is minted just before its handshake starts, outside the time measured (signing only:
    tens of microseconds): minted all at once, tickets would expire (60 s) before a slow run got to them."""
    gate = asyncio.Semaphore(args.concurrency)
    join_ms: list[float] = []
    last = 0.0

    async def one(sock: Socket) -> None:
        nonlocal last
        async with gate:
            path = sock.person.path()
            started = time.monotonic()
            try:
                await sock.join(path, args.join_timeout)
            except Exception as error:  # noqa: BLE001 - counted by reason; loader bugs re-raise
                failures[failure_reason(error)] += 1
                return
            now = time.monotonic()
            join_ms.append((now - started) * 1000)
            last = max(last, now)

    await asyncio.gather(*(one(sock) for sock in sockets))
    return join_ms, last


async def close_everyone(sockets: Sequence[Socket]) -> None:
    await asyncio.wait_for(asyncio.gather(*(s.close() for s in sockets), return_exceptions=True),
                           CLOSE_TIMEOUT + 20)


def join_summary(join_ms: list[float], started: float, last: float) -> dict[str, Any]:
    ordered = sorted(join_ms)
    all_s = last - started if ordered else None
    return {
        "joined": len(ordered),
        "all_joined_s": rounded(all_s),
        "joins_per_s": round(len(ordered) / all_s, 1) if all_s else None,
        "join_p50_ms": rounded(percentile(ordered, 50), 1),
        "join_p99_ms": rounded(percentile(ordered, 99), 1),
        "join_max_ms": rounded(ordered[-1] if ordered else None, 1),
    }


async def run_joins(args: argparse.Namespace, cast: list[Person]) -> dict[str, Any]:
    url = args.url.rstrip("/")
    sockets = [Socket(person, url) for person in cast]
    samplers = [ProcessSampler(pid) for pid in args.server_pid]
    stop = asyncio.Event()
    sampling = [asyncio.create_task(sampler.run(stop)) for sampler in samplers]
    failures: Counter[str] = Counter()
    try:
        for sampler in samplers:
            sampler.mark()
        rss_before = [sampler.rss_now_mb() for sampler in samplers]
        started = time.monotonic()
        join_ms, last = await join_everyone(sockets, args, failures)
        for sampler in samplers:
            sampler.mark()
        rows = await rows_settle(len(cast), len(join_ms), args.settle)
        await asyncio.sleep(2)  # every socket joined and idle: what each costs the server
        rss_joined = [sampler.rss_now_mb() for sampler in samplers]
    finally:
        await close_everyone(sockets)
        stop.set()
        await asyncio.gather(*sampling)
    return {"load": "joins", "url": url, "peers": len(cast), "concurrency": args.concurrency,
            **join_summary(join_ms, started, last), "failures": dict(failures),
            "live_rows": rows, "rows_ok": rows == len(cast) == len(join_ms),
            "servers": [{"pid": s.pid, "cpu_mean_pct": rounded(s.cpu_mean_pct, 1),
                         "cpu_ms_per_join": round(1000 * s.cpu_seconds / len(join_ms), 2) if join_ms else None,
                         "rss_peak_mb": rounded(s.rss_peak_mb, 1),
                         "rss_before_mb": rounded(before, 1), "rss_joined_mb": rounded(joined, 1),
                         "kb_per_idle_socket": round(1024 * (joined - before) / len(join_ms), 1)
                         if join_ms and before and joined else None}
                        for s, before, joined in zip(samplers, rss_before, rss_joined, strict=True)]}


class Server:
    """The storm's server process: started from --server-cmd, stopped with SIGTERM, by its own pid."""

    def __init__(self, command: str, url: str, log: Path):
        self.argv = shlex.split(command)
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> float:
        """Start and wait until it listens; returns when it did (time.monotonic())."""
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}; see {self.log}")
            try:
                socket.create_connection(self.address, timeout=0.5).close()
                return time.monotonic()
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the server did not listen within {timeout} s; see {self.log}")

    def stop(self, timeout: float = 45.0) -> float:
        """SIGTERM, then wait (SIGKILL after `timeout`); returns when it exited."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return time.monotonic()


class Restart:
    """What the storm's peers know of the restart: when the old process had exited."""

    def __init__(self) -> None:
        self.exited_at: float | None = None

    def is_new(self, when: float) -> bool:
        """A welcome at `when` came from the new process (the old one had exited by then)."""
        return self.exited_at is not None and when > self.exited_at


async def come_back(sock: Socket, args: argparse.Namespace, restart: Restart, deadline: float,
                    outcome: Counter[str], failures: Counter[str], close_codes: Counter[str]) -> float | None:
    """Each time the socket closes, resume as the page does, until a welcome from the new process; returns
    when it came (None if it did not by the deadline). A welcome from the old process while it stops does
    not count: that socket closes again when the process exits, and the peer resumes once more."""
    old_peer = sock.peer_id
    attempts = 0
    while time.monotonic() < deadline:
        try:
            await asyncio.wait_for(sock.closed.wait(), max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            break
        close_codes[str(sock.close_code)] += 1
        for task in sock.tasks:
            task.cancel()
        retry = 0
        while time.monotonic() < deadline:
            retry += 1
            attempts += 1
            await asyncio.sleep(backoff(retry))
            path = sock.person.path(resume=sock.resume_token, last_seq=sock.last_seq)
            try:
                welcome = await sock.join(path, min(WELCOME_S, max(0.1, deadline - time.monotonic())))
            except Exception as error:  # noqa: BLE001 - counted by reason; loader bugs re-raise
                failures[failure_reason(error)] += 1
                continue
            now = time.monotonic()
            if not restart.is_new(now):
                outcome["welcomed by the stopping process"] += 1
                break  # wait for this socket to close too
            resumed = welcome.get("resumed") is True and sock.peer_id == old_peer
            outcome["resumed" if resumed else "rejoined"] += 1
            outcome[f"back after {min(attempts, 6)}{'+' if attempts >= 6 else ''} attempts"] += 1
            return now
    outcome["not back"] += 1
    return None


async def run_storm(args: argparse.Namespace, cast: list[Person]) -> dict[str, Any]:
    url = args.url.rstrip("/")
    server = Server(args.server_cmd, url, args.server_log)
    server.start()
    sockets = [Socket(person, url) for person in cast]
    failures: Counter[str] = Counter()
    reconnect_failures: Counter[str] = Counter()
    outcome: Counter[str] = Counter()
    close_codes: Counter[str] = Counter()
    try:
        started = time.monotonic()
        join_ms, last = await join_everyone(sockets, args, failures)
        before = join_summary(join_ms, started, last)
        rows_before = await rows_settle(len(cast), len(join_ms), args.settle)
        joined = [sock for sock in sockets if sock.ws is not None and not sock.closed.is_set()]
        await asyncio.sleep(args.hold)

        sigterm = time.monotonic()
        deadline = sigterm + args.storm_timeout
        restart = Restart()
        returns = [asyncio.create_task(come_back(sock, args, restart, deadline, outcome, reconnect_failures,
                                                 close_codes)) for sock in joined]
        exited = restart.exited_at = await asyncio.to_thread(server.stop)
        listening = await asyncio.to_thread(server.start)
        back = [when for when in await asyncio.gather(*returns) if when is not None]
        rows_after = await rows_settle(len(cast), len(back), args.settle)
    finally:
        await close_everyone(sockets)
        server.stop()
    back_s = (max(back) - sigterm) if back else None
    ordered = sorted(when - sigterm for when in back)
    return {"load": "storm", "url": url, "peers": len(cast), "concurrency": args.concurrency,
            "first_join": before, "failures": dict(failures), "live_rows_before": rows_before,
            "in_calls": len(joined), "stopped_s": rounded(exited - sigterm),
            "listening_s": rounded(listening - sigterm),
            "all_back_s": rounded(back_s), "back_p50_s": rounded(percentile(ordered, 50)),
            "back_p99_s": rounded(percentile(ordered, 99)), "back": len(back),
            "resumed": outcome.pop("resumed", 0), "rejoined": outcome.pop("rejoined", 0),
            "not_back": outcome.pop("not back", 0), "attempts": dict(outcome),
            "close_codes": dict(close_codes), "reconnect_failures": dict(reconnect_failures),
            "live_rows_after": rows_after}


def format_summary(s: dict[str, Any]) -> str:
    def joins(j: dict[str, Any]) -> str:
        return (f"{j['joined']} joined in {j['all_joined_s']} s ({j['joins_per_s']} joins/s), "
                f"join p50 {j['join_p50_ms']} ms, p99 {j['join_p99_ms']} ms, max {j['join_max_ms']} ms")

    if s["load"] == "joins":
        lines = [f"joins: {s['peers']} sockets on {s['url']}, {s['concurrency']} handshakes in flight",
                 "  " + joins(s),
                 f"  failures: {s['failures'] or 'none'}",
                 f"  live CallParticipant rows of the bench rooms: {s['live_rows']} "
                 f"({'= N' if s['rows_ok'] else 'NOT N'})"]
        lines += [f"  server {x['pid']}: CPU {x['cpu_mean_pct']} % mean, {x['cpu_ms_per_join']} ms per join, "
                  f"RSS peak {x['rss_peak_mb']} MB; {x['rss_before_mb']} MB before the joins, "
                  f"{x['rss_joined_mb']} MB with all joined and idle: {x['kb_per_idle_socket']} KB per socket"
                  for x in s["servers"]]
        return "\n".join(lines)
    return "\n".join([
        f"storm: {s['peers']} peers on {s['url']}; first join: " + joins(s["first_join"]),
        f"  failures joining: {s['failures'] or 'none'}; live rows before: {s['live_rows_before']}",
        f"  SIGTERM to {s['in_calls']} peers in calls: old process exited after {s['stopped_s']} s, "
        f"new one listening after {s['listening_s']} s",
        f"  every peer back after {s['all_back_s']} s (p50 {s['back_p50_s']} s, p99 {s['back_p99_s']} s): "
        f"{s['back']} back, {s['resumed']} resumed, {s['rejoined']} rejoined, {s['not_back']} not back",
        f"  close codes seen: {s['close_codes']}; attempts: {s['attempts']}",
        f"  failed attempts: {s['reconnect_failures'] or 'none'}; live rows after: {s['live_rows_after']}",
    ])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("load", choices=("joins", "storm"))
    parser.add_argument("--url", default="ws://127.0.0.1:8000", help="the server's base URL (127.0.0.1)")
    parser.add_argument("--peers", type=int, default=1000, help="sockets, 2 per room")
    parser.add_argument("--concurrency", type=int, default=100,
                        help="WebSocket handshakes in flight at most (daphne drops a handshake not accepted in 5 s)")
    parser.add_argument("--join-timeout", type=float, default=60.0, help="seconds one socket may take to welcome")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds to wait for the database to show every join")
    parser.add_argument("--server-pid", type=int, action="append", default=[], help="joins: sample this server")
    parser.add_argument("--server-cmd", help="storm: the command that starts the server (it is started twice)")
    parser.add_argument("--server-log", type=Path, default=Path(tempfile.gettempdir()) / "parley-bench-storm.log")
    parser.add_argument("--hold", type=float, default=2.0, help="storm: seconds in calls before the restart")
    parser.add_argument("--storm-timeout", type=float, default=120.0,
                        help="storm: seconds after SIGTERM a peer may take to come back")
    parser.add_argument("--project-dir", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--json", action="store_true", help="also print the summary as one JSON line")
    args = parser.parse_args(argv)
    if urlsplit(args.url).hostname != "127.0.0.1":
        parser.error("--url must be on 127.0.0.1")
    if args.peers < 1 or args.concurrency < 1:
        parser.error("--peers and --concurrency must be at least 1")
    if args.load == "storm" and not args.server_cmd:
        parser.error("storm needs --server-cmd")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    raise_open_files_limit(args.peers + 256)
    import fixtures

    fixtures.setup_django(args.project_dir)
    for pid in args.server_pid:
        check_pid(pid)
    cast = people(args.peers)
    run = run_joins if args.load == "joins" else run_storm
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        summary = runner.run(run(args, cast))
    print(format_summary(summary))
    if args.json:
        print(json.dumps(summary))
    if args.load == "joins":
        return 0 if summary["rows_ok"] else 1
    return 0 if summary["back"] == summary["in_calls"] == args.peers else 1


if __name__ == "__main__":
    sys.exit(main())
