"""The load generator's summary: percentiles, and the report printed for people."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted sequence."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _or_na(value: Any) -> Any:
    return "n/a" if value is None else value


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} x{count}" for name, count in sorted(counts.items())) or "none"


def format_report(summary: dict[str, Any]) -> str:
    s = {key: _or_na(value) for key, value in summary.items()}
    paced = f" every {s['interval_s']:g} s" if s["mode"] == "paced" else ""
    lines = [
        f"Parley signaling load: {s['mode']}{paced}, {s['rooms']} rooms x 2 peers, {s['rounds']} rounds "
        f"({s['event_loop']})",
        f"  servers       {' (peer A), '.join(s['urls'])}{' (peer B)' if len(s['urls']) > 1 else ''}",
        f"  connections   {s['connections']} welcomed, {s['pairs_ready']} of {s['rooms']} pairs ready; "
        f"failures: {_counts(s['connect_failures'])}",
        f"  join          all welcomed in {s['join_s']} s; per connection p50 {s['join_p50_ms']} ms, "
        f"p99 {s['join_p99_ms']} ms; anomalies: {_counts(s['join_anomalies'])}",
        f"  frames        sent {s['frames_sent']}, relayed {s['frames_relayed']}, lost {s['lost']}, "
        f"duplicated {s['duplicated']}, misrouted {s['misrouted']}",
        f"  rates         offered {s['offered_fps']} frames/s (ceiling {s['ceiling_fps']}), "
        f"relayed {s['relayed_fps']} frames/s over {s['exchange_s']} s",
        f"  latency       p50 {s['latency_p50_ms']} ms, p95 {s['latency_p95_ms']} ms, "
        f"p99 {s['latency_p99_ms']} ms, max {s['latency_max_ms']} ms",
        f"  rounds        {s['rounds_completed']} completed, {s['rounds_timed_out']} timed out",
        f"  refused       rate-limited {s['rate_limited']}; other errors: {_counts(s['errors'])}",
        f"  closed by server  {_counts(s['close_codes'])}",
    ]
    if s["other_frames"]:
        lines.append(f"  other frames  {_counts(s['other_frames'])}")
    for server in s["servers"]:
        gone = " (exited during the run)" if server["exited"] else ""
        lines.append(f"  server {server['pid']:<6} peak RSS {server['rss_peak_mb']} MB, mean CPU "
                     f"{_or_na(server['cpu_mean_pct'])} % during the exchange, "
                     f"{_or_na(server['cpu_us_per_frame'])} us CPU per relayed frame{gone}")
    lines.append(f"  loader        CPU {s['loader_cpu_pct']} % during the exchange"
                 f"{'; issues: ' + _counts(s['loader_issues']) if s['loader_issues'] else ''}")
    lines.append(f"  machine       other processes used {s['others_cpu_pct']} % of a core during the exchange")
    if (summary["loader_cpu_pct"] or 0) >= 90:
        lines.append("  note          the loader was near one full core: server figures are a lower bound")
    if (summary["others_cpu_pct"] or 0) >= 10:
        lines.append("  note          other processes competed for the CPU: figures may be disturbed")
    return "\n".join(lines)
