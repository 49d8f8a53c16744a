#!/usr/bin/env python3
"""A minimal signaling relay in plain Python, the comparison point for Parley's numbers.

It speaks the subset of the signaling protocol that signal_load.py uses: `welcome` with the peers already in
the room, `peer-joined`, `peer-left`, `offer`/`answer`/`candidate` relayed to `to` with `from` added, and
`ping`/`pong`. It has no accounts, database or channel layer: any `?ticket=` is accepted and the room comes
from the path. It applies Parley's default per-connection limit (20 frames/s, burst 100) so a load that is
within Parley's limit is within this one too.

    python bench/baseline_relay.py --port 8001
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import resource
import signal
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

PATH = re.compile(r"^/ws/rooms/(?P<slug>[-a-zA-Z0-9_]+)/$")
MAX_FRAME = 64 * 1024
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404


class RateLimit:
    """Token bucket; refuses instead of waiting, like the server-side limit it stands in for."""

    def __init__(self, rate: float, burst: float):
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._stamp = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


@dataclass
class Room:
    slug: str
    call_id: int
    peers: dict[str, Peer] = field(default_factory=dict)


@dataclass
class Peer:
    peer_id: str
    ws: ServerConnection
    polite: bool

    def describe(self) -> dict[str, object]:
        return {"peer_id": self.peer_id, "user": {"display_name": self.peer_id[:8]}, "polite": self.polite}


class Relay:
    def __init__(self, *, rate: float, burst: float):
        self.rooms: dict[str, Room] = {}
        self.rate = rate
        self.burst = burst
        self._call_ids = itertools.count(1)

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        url = urlsplit(ws.request.path)
        match = PATH.match(url.path)
        if match is None:
            await ws.close(CLOSE_NOT_FOUND)
            return
        if not parse_qs(url.query).get("ticket"):
            await ws.close(CLOSE_UNAUTHORIZED)
            return
        slug = match["slug"]
        room = self.rooms.get(slug)
        if room is None:
            room = self.rooms[slug] = Room(slug, next(self._call_ids))
        me = Peer(str(uuid.uuid4()), ws, polite=bool(room.peers))
        others = list(room.peers.values())
        room.peers[me.peer_id] = me
        try:
            await ws.send(json.dumps({
                "type": "welcome", "peer_id": me.peer_id, "call_id": room.call_id,
                "room": {"slug": slug, "name": slug}, "peers": [peer.describe() for peer in others],
                "ice_servers": []}))
            await self._broadcast(room, me, {"type": "peer-joined", "peer": me.describe()})
            await self._serve(room, me)
        except ConnectionClosed:
            pass
        finally:
            del room.peers[me.peer_id]
            if room.peers:
                await self._broadcast(room, me, {"type": "peer-left", "peer_id": me.peer_id, "reason": "left"})
            else:
                del self.rooms[slug]

    async def _broadcast(self, room: Room, sender: Peer, event: dict[str, object]) -> None:
        text = json.dumps(event)
        for peer in list(room.peers.values()):
            if peer is not sender:
                await self._deliver(peer, text)

    @staticmethod
    async def _deliver(peer: Peer, text: str) -> bool:
        try:
            await peer.ws.send(text)
        except ConnectionClosed:
            return False
        return True

    async def _serve(self, room: Room, me: Peer) -> None:
        limit = RateLimit(self.rate, self.burst)
        async for raw in me.ws:  # ends when the client closes
            if not limit.allow():
                await self._error(me, "rate-limited", "slow down")
                continue
            if len(raw) > MAX_FRAME:
                await self._error(me, "too-large", f"frames are limited to {MAX_FRAME} bytes")
                continue
            try:
                message = json.loads(raw)
            except ValueError:
                await self._error(me, "bad-json", "frame is not JSON")
                continue
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == "ping":
                await me.ws.send('{"type": "pong"}')
            elif kind in ("offer", "answer", "candidate"):
                await self._relay(room, me, message)
            elif isinstance(kind, str):
                await self._error(me, "unknown-type", f"unknown type {kind!r}")
            else:
                await self._error(me, "bad-message", "frame must be an object with a type")

    async def _relay(self, room: Room, me: Peer, message: dict[str, object]) -> None:
        to = message.get("to")
        if message["type"] == "candidate":
            body_ok = "candidate" in message and isinstance(message["candidate"], dict | None)
        else:
            body_ok = isinstance(message.get("sdp"), str)
        if not isinstance(to, str) or not body_ok:
            await self._error(me, "bad-message", "relayed frames need 'to' and 'sdp' or 'candidate'")
            return
        target = room.peers.get(to)
        if target is None or target is me:
            await self._error(me, "unknown-peer", "no such peer in this call")
            return
        message["from"] = me.peer_id
        if not await self._deliver(target, json.dumps(message)):
            await self._error(me, "undeliverable", "the peer has gone")

    @staticmethod
    async def _error(me: Peer, code: str, detail: str) -> None:
        await me.ws.send(json.dumps({"type": "error", "code": code, "detail": detail}))


async def main() -> None:
    parser = argparse.ArgumentParser(description="Minimal signaling relay for bench comparisons.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--rate", type=float, default=20.0, help="frames/s per connection")
    parser.add_argument("--burst", type=float, default=100.0, help="frames per connection at once")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    relay = Relay(rate=args.rate, burst=args.burst)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    async with serve(relay.handle, args.host, args.port, compression=None, max_size=1024 * 1024,
                     ping_interval=None, close_timeout=2):
        print(f"baseline relay listening on ws://{args.host}:{args.port}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
