"""Sending to a WebSocket client without ever waiting on it: a queue and a writer task per socket.

Under uvicorn a send to a client whose socket buffer is full waits until it reads; under daphne it is buffered
without bound. Either way one slow client would hold up, or cost the memory of, whoever sends to it. A consumer
with this mixin queues what it sends (`push` never waits), its own task writes it out, and a client that does not
keep up (queued output over `slow_bytes`, or no progress for `slow_seconds`) is handed to `too_slow`.
"""

import asyncio
import logging
from collections import deque

logger = logging.getLogger(__name__)


class QueuedSender:
    """Mixin for a Channels WebSocket consumer. Subclasses call `start_writer()` once accepted, send with `push`,
    and say what "too slow" does (`close_slow`); `over_limit`/`is_stalled` may add their own signs."""

    writer: asyncio.Task | None = None
    slow = False  # being closed for not reading

    def start_writer(self, *, slow_bytes: int, slow_seconds: float, name: str) -> None:
        self.outgoing: deque[str] = deque()
        self.outgoing_bytes = 0
        self.written_at = asyncio.get_running_loop().time()  # last progress of the writer, or when it had nothing
        self.wake_writer = asyncio.Event()
        self.writer_idle = asyncio.Event()
        self.writer_idle.set()
        self.slow_bytes, self.slow_seconds = slow_bytes, slow_seconds
        self.writer = asyncio.get_running_loop().create_task(self.write_loop(), name=name)

    def push(self, text: str) -> None:
        """Queue a frame for the writer. Never waits: the caller may be another socket's handler."""
        if self.writer is None or self.slow:
            return
        now = asyncio.get_running_loop().time()
        outgoing = self.outgoing
        if not outgoing:
            self.written_at = now
            self.writer_idle.clear()
            self.wake_writer.set()
        outgoing.append(text)
        self.outgoing_bytes += len(text)
        if self.over_limit():
            self.too_slow("unread output over the limit")
        elif self.is_stalled(now):
            self.too_slow("unread for too long")

    def over_limit(self) -> bool:
        return self.outgoing_bytes > self.slow_bytes

    def is_stalled(self, now: float) -> bool:
        """The writer has been stuck on a frame for too long (the client does not read)."""
        return bool(self.writer is not None and self.outgoing and now - self.written_at > self.slow_seconds)

    async def write_loop(self) -> None:
        outgoing, loop = self.outgoing, asyncio.get_running_loop()
        try:
            while True:
                await self.wake_writer.wait()
                self.wake_writer.clear()
                while outgoing:
                    text = outgoing[0]
                    await self.send(text_data=text)
                    outgoing.popleft()
                    self.outgoing_bytes -= len(text)
                    self.written_at = loop.time()
                self.writer_idle.set()
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket closed under us: its disconnect is on its way
            logger.debug("a send failed, the socket is closing", exc_info=True)
            outgoing.clear()
            self.outgoing_bytes = 0
            self.writer_idle.set()

    async def drain(self, timeout: float = 1.0) -> None:
        """Let what is queued go out first (a close after it), for at most `timeout` seconds."""
        if self.writer is not None and not self.slow:
            try:
                await asyncio.wait_for(self.writer_idle.wait(), timeout)
            except TimeoutError:
                pass

    def stop_writer(self) -> None:
        if self.writer is None:
            return
        self.writer.cancel()
        self.outgoing.clear()
        self.outgoing_bytes = 0
        self.writer_idle.set()

    def too_slow(self, why: str) -> None:
        """Stop writing to a client that does not read, and close it (`close_slow`, on a task of its own)."""
        if self.slow:
            return
        self.slow = True
        logger.warning("%s: the client does not read its frames (%s, %d bytes queued): closing",
                       self.scope.get("path"), why, self.outgoing_bytes)
        self.stop_writer()
        self.closing = asyncio.get_running_loop().create_task(self.close_slow())

    async def close_slow(self) -> None:
        raise NotImplementedError
