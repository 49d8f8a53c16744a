"""Samples a server process's resident memory and CPU time, and the machine's, from /proc while a load runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name may hold spaces, so split after its closing parenthesis.
        fields = stat.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of stat(5) (utime, stime), counted from the state field, which is field 3.
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def machine_busy_seconds() -> float:
    """CPU time all cores have spent busy since boot (everything in /proc/stat but idle and iowait)."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    # Fields: user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user.
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / _TICKS_PER_SECOND


def check_pid(pid: int) -> None:
    """Fail before the run, not after it, when `pid` cannot be sampled."""
    try:
        _cpu_seconds(pid)
    except OSError as error:
        raise ValueError(f"--server-pid {pid}: no such process ({error.strerror})") from error


@dataclass
class ProcessSampler:
    """Peak RSS over the whole run, mean CPU% over a window opened and closed by the caller."""

    pid: int
    interval: float = 0.5
    rss_peak_mb: float = 0.0
    exited: bool = False
    _window: list[tuple[float, float]] = field(default_factory=list)

    def _sample(self) -> tuple[float, float] | None:
        try:
            cpu = _cpu_seconds(self.pid)
            self.rss_peak_mb = max(self.rss_peak_mb, _rss_mb(self.pid))
        except (OSError, IndexError, ValueError):
            self.exited = True
            return None
        return time.monotonic(), cpu

    def mark(self) -> None:
        """Open the CPU window on the first call, close it on the second."""
        if (sample := self._sample()) is not None:
            self._window.append(sample)

    def rss_now_mb(self) -> float | None:
        try:
            return _rss_mb(self.pid)
        except (OSError, IndexError, ValueError):
            return None

    @property
    def cpu_seconds(self) -> float:
        """CPU time used inside the window."""
        return self._window[-1][1] - self._window[0][1] if len(self._window) > 1 else 0.0

    @property
    def cpu_mean_pct(self) -> float | None:
        if len(self._window) < 2:
            return None
        elapsed = self._window[-1][0] - self._window[0][0]
        return 100 * self.cpu_seconds / elapsed if elapsed > 0 else None

    async def run(self, stop: asyncio.Event) -> None:
        """Sample RSS every `interval` until `stop` is set or the process is gone."""
        while not stop.is_set() and not self.exited:
            self._sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
