"""Bench peers and pairs: joining a room, then exchanging offer/answer rounds under the rate limit.

Peer B joins first; peer A joins second and finds B in `welcome.peers`. Round r is A's turn r (an offer and
its candidates) answered by B's turn r (an answer and its candidates). The round completes when A holds all
of B's frames for it; the next one starts then, so a pair never has more than one round in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Origin
from workload import FRAMES_PER_TURN, FrameWriter, TokenBucket, read_mark, turn_seq

RELAYED_TYPES = frozenset({"offer", "answer", "candidate"})
CLOSE_TIMEOUT = 2.0
PING_SECONDS = 10.0  # as static/js/signaling.js
ACK_CHARS = 256 * 1024  # and a ping after this much received, as the page does (the server closes at 1 MiB unread)


@dataclass(frozen=True)
class Plan:
    """How the exchange phase runs; shared by every pair."""

    rounds: int
    interval: float  # minimum pause between two frames of one peer; 0 in burst mode
    rate: float  # client-side token bucket, kept just under the server's per-connection limit
    burst: float
    deadline: float  # time.monotonic() after which nobody starts a new frame
    round_timeout: float  # how long A waits for B's side of a round before giving up on it

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


@dataclass
class Tally:
    """Run-wide figures that peers add to as they go."""

    latencies_ms: list[float] = field(default_factory=list)
    join_ms: list[float] = field(default_factory=list)
    last_welcome: float = 0.0  # time.monotonic() of the latest welcome
    last_send: float = 0.0
    last_relay: float = 0.0
    rounds_completed: int = 0
    rounds_timed_out: int = 0
    connect_failures: Counter[str] = field(default_factory=Counter)
    join_anomalies: Counter[str] = field(default_factory=Counter)
    loader_issues: Counter[str] = field(default_factory=Counter)


class Peer:
    """One bench connection and everything it saw."""

    def __init__(self, *, url: str, origin: str, join_timeout: float, tally: Tally):
        self.url = url
        self.origin = origin
        self.join_timeout = join_timeout
        self.tally = tally
        self.ws: ClientConnection | None = None
        self.peer_id = ""
        self.welcome_peers: list[str] = []
        self.partner_id: str | None = None
        self.partner_joined = asyncio.Event()
        self.gone = False  # this connection or the partner's is over
        self.closing = False  # we started the close, so its code is ours, not the server's
        self.close_code: int | None = None
        self.sent = 0
        self.relayed = 0
        self.duplicated = 0
        self.misrouted = 0
        self.errors: Counter[str] = Counter()
        self.other_frames: Counter[str] = Counter()
        self.offers: asyncio.Queue[int | None] = asyncio.Queue()  # turns B has been offered
        self._seen: set[int] = set()
        self._turn_frames: Counter[int] = Counter()
        self._turn_done: defaultdict[int, asyncio.Event] = defaultdict(asyncio.Event)
        self._last_send = 0.0
        self.last_seq = 0  # the last numbered frame received, acknowledged by the pings as the page does
        self.unacked = 0  # characters received since the last ping
        self._receiver: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None

    async def join(self, url_path: str) -> bool:
        """Connect and wait for `welcome`; on failure record why and return False."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.join_timeout):
                self.ws = await connect(
                    self.url + url_path, origin=Origin(self.origin), compression=None, proxy=None,
                    ping_interval=None, close_timeout=CLOSE_TIMEOUT, open_timeout=None,
                    user_agent_header="parley-bench")
                welcome = json.loads(await self.ws.recv())
        except InvalidStatus as refused:
            return self._failed(f"http {refused.response.status_code}")
        except ConnectionClosed as closed:
            return self._failed(f"closed {closed.rcvd.code if closed.rcvd else 1006} before welcome")
        except TimeoutError:
            return self._failed("timed out before welcome")
        except (OSError, InvalidHandshake) as error:
            return self._failed(f"{type(error).__name__}: {error}")
        if not isinstance(welcome, dict) or welcome.get("type") != "welcome":
            return self._failed("first frame was not welcome")
        try:
            self.peer_id = str(welcome["peer_id"])
            self.welcome_peers = [str(peer["peer_id"]) for peer in welcome["peers"]]
        except (KeyError, TypeError):
            return self._failed("malformed welcome")
        now = time.monotonic()
        self.tally.join_ms.append((now - started) * 1000)
        self.tally.last_welcome = max(self.tally.last_welcome, now)
        self._receiver = asyncio.create_task(self._receive())
        self._pinger = asyncio.create_task(self._ping())
        return True

    async def _ping(self) -> None:
        """Every PING_SECONDS, like the call page: a ping that tells the server what was handled."""
        assert self.ws is not None
        while not self.gone:
            await asyncio.sleep(PING_SECONDS)
            try:
                await self.ws.send(json.dumps({"type": "ping", "last_seq": self.last_seq}))
            except ConnectionClosed:
                return

    def _failed(self, reason: str) -> bool:
        self.tally.connect_failures[reason] += 1
        self.gone = True
        return False

    async def _receive(self) -> None:
        assert self.ws is not None
        try:
            while True:  # ends with the connection, which the run always closes
                raw = await self.ws.recv()
                try:
                    message = json.loads(raw)
                except json.JSONDecodeError:
                    message = None
                if isinstance(message, dict):
                    self._handle(message)
                else:
                    self.other_frames["(not a JSON object)"] += 1
                self.unacked += len(raw)
                if self.unacked > ACK_CHARS:
                    self.unacked = 0
                    await self.ws.send(json.dumps({"type": "ping", "last_seq": self.last_seq}))
        except ConnectionClosed as closed:
            if not self.closing:
                self.close_code = closed.rcvd.code if closed.rcvd else 1006
        finally:
            self._stop()

    def _stop(self) -> None:
        """Wake everything waiting on this peer: its connection or its partner is gone."""
        self.gone = True
        for event in self._turn_done.values():
            event.set()
        self.offers.put_nowait(None)

    def _handle(self, message: dict[str, object]) -> None:
        seq = message.get("seq")
        if type(seq) is int:
            self.last_seq = seq
        kind = message.get("type")
        if kind in RELAYED_TYPES:
            self._on_relayed(message)
        elif kind == "peer-joined":
            peer = message.get("peer")
            if self.partner_id is None and isinstance(peer, dict):
                self.partner_id = peer.get("peer_id")
                self.partner_joined.set()
        elif kind == "peer-left":
            if message.get("peer_id") == self.partner_id:
                self._stop()
        elif kind == "error":
            self.errors[str(message.get("code"))] += 1
        elif kind != "pong":
            self.other_frames[str(kind)] += 1

    def _on_relayed(self, message: dict[str, object]) -> None:
        now_ns = time.perf_counter_ns()
        mark = read_mark(message)
        if self.partner_id is None:  # B may see the offer before peer-joined
            self.partner_id = str(message.get("from"))
        if mark is None or message.get("from") != self.partner_id:
            self.misrouted += 1
            return
        if mark.seq in self._seen:
            self.duplicated += 1
            return
        self._seen.add(mark.seq)
        self.relayed += 1
        self.tally.latencies_ms.append((now_ns - mark.sent_ns) / 1e6)
        self.tally.last_relay = time.monotonic()
        if message["type"] == "offer":
            self.offers.put_nowait(mark.turn)
        self._turn_frames[mark.turn] += 1
        if self._turn_frames[mark.turn] == FRAMES_PER_TURN:
            self._turn_done[mark.turn].set()

    async def send_turn(self, writer: FrameWriter, turn: int, bucket: TokenBucket, plan: Plan) -> bool:
        """Send the description and candidates of `turn`; False once the run or this connection stops."""
        assert self.ws is not None
        for index in range(FRAMES_PER_TURN):
            if plan.interval:
                await asyncio.sleep(min(plan.remaining(), self._last_send + plan.interval - time.monotonic()))
            await bucket.take()
            if self.gone or not plan.remaining():
                return False
            seq = turn_seq(turn, index)
            text = writer.description(seq) if index == 0 else writer.candidate(seq, index)
            try:
                # No timeout per frame (it would cost the loader ~8% CPU): a send stuck on a server that
                # stopped reading is ended by the exchange phase's hard stop.
                await self.ws.send(text)
            except ConnectionClosed:
                return False
            self.sent += 1
            self._last_send = self.tally.last_send = time.monotonic()
        return True

    async def wait_turn(self, turn: int, timeout: float) -> bool:
        """Wait until the partner's frames for `turn` have all arrived."""
        if not self.gone:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._turn_done[turn].wait(), timeout)
        return self._turn_frames[turn] >= FRAMES_PER_TURN

    async def next_offer(self, plan: Plan) -> int | None:
        """The next turn offered to B, or None when the exchange is over for this pair."""
        try:
            return await asyncio.wait_for(self.offers.get(), plan.remaining())
        except TimeoutError:
            return None

    async def close(self) -> None:
        self.closing = True
        if self._pinger is not None:
            self._pinger.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self._receiver is not None:
            await self._receiver


class Pair:
    """Peer A (offers) and peer B (answers) in room `bench-<index>`."""

    def __init__(self, index: int, a: Peer, b: Peer):
        self.index = index
        self.a = a
        self.b = b

    async def join(self, a_path: str, b_path: str) -> bool:
        """B joins, then A; A must find B in its welcome and B must hear that A joined."""
        tally = self.b.tally
        if not await self.b.join(b_path):
            return False
        if self.b.welcome_peers:
            tally.join_anomalies["first peer's welcome listed others (stale participants?)"] += 1
        if not await self.a.join(a_path):
            return False
        if self.a.welcome_peers != [self.b.peer_id]:
            tally.join_anomalies["second peer's welcome.peers was not exactly the first peer"] += 1
            return False
        self.a.partner_id = self.b.peer_id
        try:
            await asyncio.wait_for(self.b.partner_joined.wait(), self.b.join_timeout)
        except TimeoutError:
            tally.join_anomalies["first peer got no peer-joined"] += 1
        if self.b.partner_id not in (None, self.a.peer_id):
            tally.join_anomalies["peer-joined named someone else"] += 1
        return True

    async def exchange(self, plan: Plan, start_delay: float) -> None:
        await asyncio.gather(self._offer(plan, start_delay), self._answer(plan))

    async def _offer(self, plan: Plan, start_delay: float) -> None:
        assert self.a.partner_id is not None
        writer = FrameWriter(to=self.a.partner_id, ufrag=f"a{self.index:05d}", offerer=True)
        bucket = TokenBucket(rate=plan.rate, burst=plan.burst)
        tally = self.a.tally
        try:
            await asyncio.sleep(min(start_delay, plan.remaining()))
            for turn in range(plan.rounds):
                if not await self.a.send_turn(writer, turn, bucket, plan):
                    break
                timeout = min(plan.round_timeout + FRAMES_PER_TURN * plan.interval, plan.remaining())
                if await self.a.wait_turn(turn, timeout):
                    tally.rounds_completed += 1
                elif self.a.gone or not plan.remaining():
                    break
                else:
                    tally.rounds_timed_out += 1
        finally:
            self.b.offers.put_nowait(None)  # A is done: release B

    async def _answer(self, plan: Plan) -> None:
        bucket = TokenBucket(rate=plan.rate, burst=plan.burst)
        writer: FrameWriter | None = None
        for _ in range(plan.rounds):
            turn = await self.b.next_offer(plan)
            if turn is None or self.b.partner_id is None:
                return
            writer = writer or FrameWriter(to=self.b.partner_id, ufrag=f"b{self.index:05d}", offerer=False)
            if not await self.b.send_turn(writer, turn, bucket, plan):
                return
