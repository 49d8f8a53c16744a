"""Helpers shared by the test files."""

import asyncio
import inspect
import time


async def eventually(predicate, timeout: float = 5, interval: float = 0.05):
    """Call `predicate` (a function, or an async one) until it returns something true, and return that.

    For what another process or thread writes a moment after the test sees the cause (a server recording a leave
    after its socket closed): the test fails after `timeout` seconds, with the last value seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"still {value!r} after {timeout} s: {getattr(predicate, '__qualname__', predicate)}")
        await asyncio.sleep(interval)
