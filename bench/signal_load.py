#!/usr/bin/env python3
"""Signaling load generator for Parley.

Drives N rooms x 2 peers through a running signaling server: in every round peer A sends an offer (~3 KB of
SDP) and 10 candidates, peer B answers with an answer and 10 candidates. The report says how many frames the
server relayed, how fast, how late, and whether any were lost, duplicated or misrouted. README-bench.md has
the commands for Parley and for the baseline relays.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import resource
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pairs import CLOSE_TIMEOUT, Pair, Peer, Plan, Tally
from procstat import ProcessSampler, check_pid, machine_busy_seconds
from report import format_report, percentile, rounded
from tickets import DjangoTickets, FileTickets, PairTickets, PlainTickets, TicketSource, plain_entries

DEFAULT_URL = "ws://127.0.0.1:8000"
DRAIN_POLL = 0.05
# After --duration no frame is started; pairs get this long past the turn timeout to wind down by themselves.
HARD_STOP_GRACE = 15.0


class Unreachable(Exception):
    pass


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", action="append", metavar="WS_URL",
                        help=f"server base URL (default {DEFAULT_URL}); give it twice to send peer A to the "
                             "first server and peer B to the second")
    parser.add_argument("--rooms", type=int, default=10, help="number of rooms, each with 2 peers")
    parser.add_argument("--rounds", type=int, default=10, help="offer/answer rounds per room")
    parser.add_argument("--mode", choices=("burst", "paced"), default="burst",
                        help="burst: as fast as the per-connection rate limit allows; paced: --interval apart")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="paced mode: seconds between two frames of one peer")
    parser.add_argument("--duration", type=float, default=120.0,
                        help="cap in seconds on the exchange phase; no frame is started after it")
    parser.add_argument("--connect-concurrency", type=int, default=50, help="WebSocket handshakes in flight")
    parser.add_argument("--join-timeout", type=float, default=15.0,
                        help="seconds one connection may take to get its welcome")
    parser.add_argument("--round-timeout", type=float, default=10.0,
                        help="seconds peer A waits for the rest of a round before moving to the next")
    parser.add_argument("--drain", type=float, default=5.0,
                        help="seconds to wait for frames still in flight when sending stops")
    parser.add_argument("--rate", type=float, default=19.0,
                        help="frames/s each connection may send (the server allows 20)")
    parser.add_argument("--burst", type=float, default=90.0,
                        help="frames each connection may send at once (the server allows 100)")
    parser.add_argument("--server-pid", type=int, action="append", default=[], metavar="PID",
                        help="sample this server process's RSS and CPU; repeatable")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON summary line on stdout (the report goes to stderr)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--tickets", type=Path, metavar="FILE",
                        help='JSON list of {"url_path", "pair", "side"} tickets')
    source.add_argument("--plain", action="store_true",
                        help="make tickets for the baseline relays, which accept any ticket")
    source.add_argument("--django", action="store_true",
                        help="create bench users and rooms and mint tickets through the project's models")
    source.add_argument("--make-plain-tickets", type=int, metavar="N",
                        help="print a ticket file for N rooms on the baseline relays, then exit")
    parser.add_argument("--project-dir", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="--django: the project root (default: the folder above this one)")
    args = parser.parse_args(argv)
    args.url = args.url or [DEFAULT_URL]
    problems = [
        (len(args.url) > 2, "--url may be given at most twice"),
        (any(urlsplit(url).scheme not in ("ws", "wss") for url in args.url), "--url must be ws:// or wss://"),
        (args.rooms < 1 or args.rounds < 1, "--rooms and --rounds must be at least 1"),
        (args.connect_concurrency < 1, "--connect-concurrency must be at least 1"),
        (args.mode == "paced" and args.interval <= 0, "--interval must be positive"),
        (args.rate <= 0 or args.burst < 1, "--rate must be positive and --burst at least 1"),
        (min(args.duration, args.join_timeout, args.round_timeout) <= 0 or args.drain < 0,
         "timeouts must be positive"),
        (args.make_plain_tickets is None and not (args.tickets or args.plain or args.django),
         "choose a ticket source: --plain, --tickets FILE or --django"),
    ]
    for failed, message in problems:
        if failed:
            parser.error(message)
    return args


def raise_open_files_limit(needed: int) -> None:
    """Each connection is a file descriptor; the default soft limit is often 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(soft, needed) if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        print(f"warning: open files limited to {target}, the run needs about {needed}", file=sys.stderr)


def origin_for(url: str) -> str:
    """An Origin the server's allowed-hosts check accepts: the server's own scheme and host."""
    parts = urlsplit(url)
    return f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"


def check_reachable(urls: Sequence[str]) -> None:
    """Fail fast, before fixtures are made, when a server is not listening."""
    for url in dict.fromkeys(urls):
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        try:
            socket.create_connection((parts.hostname, port), timeout=3).close()
        except OSError as error:
            raise Unreachable(f"{url}: {error}") from error


async def join_all(args: argparse.Namespace, source: TicketSource, tally: Tally) -> tuple[list[Pair], list[Pair]]:
    """Connect every pair, minting tickets one batch ahead; returns (all pairs tried, pairs that joined)."""
    workers = min(args.connect_concurrency, args.rooms)
    # Bounded, so tickets are minted at most a batch or two before they are used.
    queue: asyncio.Queue[PairTickets | None] = asyncio.Queue(maxsize=workers)
    tried: list[Pair] = []
    joined: list[Pair] = []

    def peer(url: str) -> Peer:
        return Peer(url=url.rstrip("/"), origin=origin_for(url), join_timeout=args.join_timeout, tally=tally)

    async def mint() -> None:
        for start in range(0, args.rooms, workers):
            batch = range(start, min(start + workers, args.rooms))
            for tickets in await asyncio.to_thread(source.mint, batch):
                await queue.put(tickets)
        for _ in range(workers):
            await queue.put(None)

    async def connect() -> None:
        while (tickets := await queue.get()) is not None:
            pair = Pair(tickets.pair, peer(args.url[0]), peer(args.url[-1]))
            tried.append(pair)
            if await pair.join(tickets.a, tickets.b):
                joined.append(pair)

    # A pair's join is bounded by three join timeouts (B's welcome, A's welcome, B's peer-joined).
    cap = 3 * args.join_timeout * math.ceil(args.rooms / workers) + 30
    try:
        await asyncio.wait_for(asyncio.gather(mint(), *(connect() for _ in range(workers))), cap)
    except TimeoutError:
        tally.connect_failures["join phase ran out of time"] += 1
    return tried, joined


def outstanding(pairs: Sequence[Pair]) -> int:
    """Frames sent and neither relayed nor refused with an error frame yet."""
    total = 0
    for pair in pairs:
        for sender, receiver in ((pair.a, pair.b), (pair.b, pair.a)):
            total += max(0, sender.sent - sum(sender.errors.values()) - receiver.relayed)
    return total


async def exchange(args: argparse.Namespace, pairs: Sequence[Pair], tally: Tally) -> None:
    interval = args.interval if args.mode == "paced" else 0.0
    plan = Plan(rounds=args.rounds, interval=interval, rate=args.rate, burst=args.burst,
                deadline=time.monotonic() + args.duration, round_timeout=args.round_timeout)
    # Paced pairs start spread over one interval, so the server sees a steady stream, not a pulse per second.
    spread = random.Random(0)
    tasks = [asyncio.create_task(pair.exchange(plan, spread.uniform(0, interval))) for pair in pairs]
    _, late = await asyncio.wait(tasks, timeout=args.duration + args.round_timeout + HARD_STOP_GRACE)
    for task in late:
        task.cancel()
        tally.loader_issues["pair still running at the hard stop"] += 1
    await asyncio.gather(*late, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error  # a loader bug: fail loudly rather than report wrong figures
    for _ in range(math.ceil(args.drain / DRAIN_POLL)):
        if not outstanding(pairs):
            break
        await asyncio.sleep(DRAIN_POLL)


async def close_all(pairs: Sequence[Pair], tally: Tally) -> None:
    peers = [peer for pair in pairs for peer in (pair.a, pair.b)]
    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(peer.close() for peer in peers), return_exceptions=True), CLOSE_TIMEOUT + 10)
    except TimeoutError:
        tally.loader_issues["connections still closing at exit"] += 1
        return
    for outcome in outcomes:
        if isinstance(outcome, Exception):  # a receiver failed: a loader bug, so say so
            tally.loader_issues[f"{type(outcome).__name__}: {outcome}"] += 1


def ceiling_fps(args: argparse.Namespace, pairs_ready: int, sending_s: float) -> float:
    """The most the loader could have offered: every peer at its pace, within the client-side limit."""
    if sending_s <= 0:
        return 0.0
    per_peer: float = args.rate + args.burst / sending_s  # the bucket's refill, plus its initial burst spread out
    if args.mode == "paced":
        per_peer = min(per_peer, 1 / args.interval)
    return round(2 * pairs_ready * per_peer, 1)


async def run(args: argparse.Namespace, source: TicketSource) -> dict[str, Any]:
    tally = Tally()
    samplers = [ProcessSampler(pid) for pid in args.server_pid]
    stop_sampling = asyncio.Event()
    sampling = [asyncio.create_task(sampler.run(stop_sampling)) for sampler in samplers]
    tried: list[Pair] = []
    try:
        join_started = time.monotonic()
        tried, joined = await join_all(args, source, tally)
        pairs_ready = len(joined)
        join_s = tally.last_welcome - join_started if tally.join_ms else None

        for sampler in samplers:
            sampler.mark()
        busy_before, cpu_before, exchange_started = machine_busy_seconds(), os.times(), time.monotonic()
        if joined:
            await exchange(args, joined, tally)
        busy_after, cpu_after, exchange_ended = machine_busy_seconds(), os.times(), time.monotonic()
        for sampler in samplers:
            sampler.mark()
    finally:
        await close_all(tried, tally)
        stop_sampling.set()
        await asyncio.gather(*sampling)

    peers = [peer for pair in tried for peer in (pair.a, pair.b)]
    errors: Counter[str] = sum((peer.errors for peer in peers), Counter())
    latencies = sorted(tally.latencies_ms)
    join_ms = sorted(tally.join_ms)
    sent = sum(peer.sent for peer in peers)
    relayed = sum(peer.relayed for peer in peers)
    loader_cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    window = exchange_ended - exchange_started
    # This machine may be shared: CPU that neither the loader nor a sampled server used disturbs the figures.
    others_cpu = busy_after - busy_before - loader_cpu - sum(sampler.cpu_seconds for sampler in samplers)

    def rate(count: int, last: float) -> float:
        return round(count / (last - exchange_started), 1) if count and last > exchange_started else 0.0

    return {
        "mode": args.mode,
        "interval_s": args.interval if args.mode == "paced" else None,
        "rooms": args.rooms,
        "rounds": args.rounds,
        "urls": args.url,
        "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        "connections": len(join_ms),
        "pairs_ready": pairs_ready,
        "connect_failures": dict(tally.connect_failures),
        "join_anomalies": dict(tally.join_anomalies),
        "join_s": rounded(join_s),
        "join_p50_ms": rounded(percentile(join_ms, 50), 1),
        "join_p99_ms": rounded(percentile(join_ms, 99), 1),
        "exchange_s": rounded(max(tally.last_relay - exchange_started, 0.0)),
        "frames_sent": sent,
        "frames_relayed": relayed,
        "offered_fps": rate(sent, tally.last_send),
        "ceiling_fps": ceiling_fps(args, pairs_ready, tally.last_send - exchange_started),
        "relayed_fps": rate(relayed, tally.last_relay),
        "latency_p50_ms": rounded(percentile(latencies, 50)),
        "latency_p95_ms": rounded(percentile(latencies, 95)),
        "latency_p99_ms": rounded(percentile(latencies, 99)),
        "latency_max_ms": rounded(latencies[-1] if latencies else None),
        "lost": outstanding(tried),
        "duplicated": sum(peer.duplicated for peer in peers),
        "misrouted": sum(peer.misrouted for peer in peers),
        "rate_limited": errors.pop("rate-limited", 0),
        "errors": dict(errors),
        "close_codes": dict(Counter(str(peer.close_code) for peer in peers if peer.close_code is not None)),
        "other_frames": dict(sum((peer.other_frames for peer in peers), Counter())),
        "rounds_completed": tally.rounds_completed,
        "rounds_timed_out": tally.rounds_timed_out,
        # CPU per relayed frame compares servers even when the rate limit, not the server, set the pace.
        "servers": [{"pid": sampler.pid, "rss_peak_mb": rounded(sampler.rss_peak_mb, 1),
                     "cpu_mean_pct": rounded(sampler.cpu_mean_pct, 1),
                     "cpu_us_per_frame": round(1e6 * sampler.cpu_seconds / relayed, 1) if relayed else None,
                     "exited": sampler.exited}
                    for sampler in samplers],
        "loader_cpu_pct": round(100 * loader_cpu / window, 1) if window > 0 else None,
        "others_cpu_pct": round(100 * max(others_cpu, 0.0) / window, 1) if window > 0 else None,
        "loader_issues": dict(tally.loader_issues),
    }


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # optional: stock asyncio works too, with less headroom for the loader
        return None
    return uvloop.new_event_loop


def ticket_source(args: argparse.Namespace) -> TicketSource:
    if args.tickets:
        return FileTickets(args.tickets)
    if args.django:
        return DjangoTickets(args.project_dir)
    return PlainTickets()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.make_plain_tickets is not None:
        json.dump(plain_entries(args.make_plain_tickets), sys.stdout)
        sys.stdout.write("\n")
        return 0
    raise_open_files_limit(2 * args.rooms + 64)
    try:
        check_reachable(args.url)
        for pid in args.server_pid:
            check_pid(pid)
        source = ticket_source(args)
        source.prepare(args.rooms)
    except Unreachable as error:
        print(f"signal_load: server unreachable: {error}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as error:
        print(f"signal_load: {error}", file=sys.stderr)
        return 2
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        summary = runner.run(run(args, source))
    print(format_report(summary), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(summary))
    if not summary["pairs_ready"]:
        print("signal_load: no pair got through the join, so nothing was exchanged", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
