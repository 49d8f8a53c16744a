"""Signaling sockets on real server processes (real WebSocket clients), for the live tests."""

import asyncio
import json
import time

import websockets
from asgiref.sync import sync_to_async

from calls import tickets
from tests.servers import ServerProcess


class Socket:
    """A signaling socket on a real server; records every frame and how it closed."""

    def __init__(self, ws):
        self.ws = ws
        self.frames: list[dict] = []
        self.close_code: int | None = None
        self.closed_at: float | None = None
        self.welcome: dict = {}
        self._reader: asyncio.Task | None = None

    @property
    def peer_id(self) -> str:
        return self.welcome["peer_id"]

    async def start(self) -> "Socket":
        self.welcome = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        assert self.welcome["type"] == "welcome", self.welcome
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                self.frames.append(json.loads(text))
        except websockets.ConnectionClosed:
            pass
        self.closed_at = time.monotonic()
        self.close_code = self.ws.close_code

    async def closed(self, timeout: float = 10) -> int | None:
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.close_code

    async def frame(self, predicate, timeout: float = 10, *, start: int = 0) -> dict:
        """The first frame (from index `start` on) that matches, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for frame in self.frames[start:]:
                if predicate(frame):
                    return frame
            await asyncio.sleep(0.02)
        raise AssertionError(f"no such frame within {timeout} s; the last ones: {self.frames[-5:]}")

    async def send(self, frame: dict) -> None:
        await self.ws.send(json.dumps(frame))

    async def close(self) -> None:
        await self.ws.close()
        if self._reader:
            await asyncio.gather(self._reader, return_exceptions=True)


async def ticket_socket(server: ServerProcess, user, room) -> Socket:
    ticket = await sync_to_async(tickets.issue_ticket)(user=user, room=room)
    ws = await websockets.connect(f"{server.ws_url}/ws/rooms/{room.slug}/?ticket={ticket}")
    return await Socket(ws).start()




def unexpected_tracebacks(log: str) -> list[str]:
    """The tracebacks in a server's log, but for deadlocks with the test database's flush between tests (a leave
    recorded while pytest-django truncates the tables): those are the harness's, not the server's."""
    chunks = log.split("Traceback (most recent call last)")[1:]
    return [chunk[:3000] for chunk in chunks if "DeadlockDetected" not in chunk]
