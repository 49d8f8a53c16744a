"""Who joined or left a live call, told to the apps built on calls (`signals.call_changed`: presence, live rooms).

A change is told once its transaction commits. Views, the API and timers tell it at once. A join through a
signaling socket does not wait for it: the socket collects its changes (`collected()`) and, after its welcome,
hands them to its process's `Batcher`, which tells them in batches, one batch at a time in a database thread. A
thousand joins a second then cost a few announcements of many changes, each a fixed number of queries, instead of
a thousand announcements of about twelve queries each in front of a thousand welcomes.
"""

import asyncio
import logging
import weakref
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from calls import signals
from calls.db_threads import in_db_thread

logger = logging.getLogger(__name__)

BATCH_SIZE = 500  # changes told at once at most: bounds the size of the receivers' `IN (...)` lists


@dataclass(frozen=True)
class CallChange:
    room_id: int | None
    call_id: int
    user_id: int | None  # None for a deleted user
    joined: bool  # False: a leave
    ended: bool = False  # the leave ended the call


_collecting: ContextVar[list[CallChange] | None] = ContextVar("parley_call_changes", default=None)


@contextmanager
def collected():
    """Collect the changes committed inside the block instead of telling them; yields the list they go to."""
    changes: list[CallChange] = []
    token = _collecting.set(changes)
    try:
        yield changes
    finally:
        _collecting.reset(token)


def committed(change: CallChange) -> None:
    """A change was committed: collect it, or tell it now."""
    changes = _collecting.get()
    if changes is None:
        tell([change])
    else:
        changes.append(change)


def tell(changes: list[CallChange]) -> None:
    """Send `call_changed`. Never raises: the joins and leaves are recorded, and a receiver's failure is logged."""
    try:
        signals.call_changed.send(sender=CallChange, changes=changes)
    except Exception:
        logger.exception("call_changed: a receiver failed (%d changes, rooms %s)", len(changes),
                         sorted({c.room_id for c in changes if c.room_id is not None})[:10])


class Batcher:
    """The changes of one event loop's sockets, told in order, a batch at a time: what arrives while a batch is
    being told goes into the next one."""

    def __init__(self):
        self.pending: list[CallChange] = []
        self.telling: asyncio.Task | None = None

    def submit(self, changes: list[CallChange]) -> None:
        if not changes:
            return
        self.pending.extend(changes)
        if self.telling is None or self.telling.done():
            self.telling = asyncio.get_running_loop().create_task(self.tell_pending())

    async def tell_pending(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[:BATCH_SIZE], self.pending[BATCH_SIZE:]
            await in_db_thread(tell)(batch)


_batchers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Batcher]" = weakref.WeakKeyDictionary()


def batcher() -> Batcher:
    """The running event loop's batcher (one per server process; tests run a loop each)."""
    loop = asyncio.get_running_loop()
    if loop not in _batchers:
        _batchers[loop] = Batcher()
    return _batchers[loop]
