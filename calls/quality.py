"""Call quality (docs/operations.md "Call quality"): the `stats` reports of the call page folded into one row per
participant and remote peer (CallQuality), the MOS estimate, and what counts as poor."""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, FloatField, Min, OuterRef, Subquery
from django.db.models.functions import Cast, NullIf
from django.utils import timezone

from calls.models import CallParticipant, CallQuality
from calls.protocol import Stats

# The cumulative counters of a report: each adds its increase since the pair's previous report to a total.
COUNTERS = ("audio_packets_received", "audio_packets_lost", "video_packets_received", "video_packets_lost",
            "freeze_count", "freeze_seconds", "ice_restarts", "ice_failures")


def mos(*, rtt_ms: float, jitter_ms: float, loss_percent: float) -> float:
    """The simplified E-model, as Twilio's mos.ts and LiveKit's scorer use it: an effective latency from the
    round trip and the jitter, an R factor from it less 2.5 per percent of packets lost, then the ITU-T G.107 map
    from R to a mean opinion score (1 to about 4.4)."""
    effective_latency = rtt_ms + 2 * jitter_ms + 10
    if effective_latency < 160:
        r = 94.768 - effective_latency / 40
    else:
        r = 94.768 - (effective_latency - 120) / 10
    r -= 2.5 * loss_percent
    if r < 6.52:  # floor: where the map reaches 1; below it the map would dip under 1, so R counts as 0
        r = 0
    return 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)


def increase(new: float, last: float | None) -> float:
    """A cumulative counter's increase since its last report; one that went down starts over (a new
    RTCPeerConnection, after a reload or a rebuild), so all of it is new."""
    if last is None or new < last:
        return new
    return new - last


def fold(*, peer_id: str, stats: Stats, now: datetime | None = None) -> CallQuality | None:
    """Add one report of the live participant `peer_id` about its remote peer `stats.peer` to their row.
    None if the participation is over."""
    now = now or timezone.now()
    for attempt in range(2):
        try:
            with transaction.atomic():
                # Only the quality row is locked: the participant's row is written by heartbeats and leaves.
                row = (CallQuality.objects.select_for_update(of=("self",))
                       .filter(participant__peer_id=peer_id, remote_peer_id=stats.peer).first())
                if row is None:
                    participant = CallParticipant.objects.live().filter(peer_id=peer_id).only("pk").first()
                    if participant is None:
                        return None
                    row = CallQuality(participant=participant, remote_peer_id=stats.peer, first_at=now)
                add_report(row, stats, now=now)
                row.save()
                return row
        except IntegrityError:  # a first report raced with another (a resume on another process): add to that
            if attempt:
                raise
    return None


def add_report(row: CallQuality, stats: Stats, *, now: datetime) -> None:
    last = dict(row.last_counters)
    delta = {}
    for key in COUNTERS:
        value = getattr(stats, key)
        if value is not None:
            delta[key] = increase(value, last.get(key))
            last[key] = value
    row.last_counters = last
    row.last_at = max(now, row.first_at)
    row.samples += 1
    if stats.candidate_type:
        row.candidate_type = stats.candidate_type
    if stats.protocol:
        row.protocol = stats.protocol
    if stats.connect_ms is not None and row.connect_ms is None:
        row.connect_ms = stats.connect_ms  # the first connection's: later ones are reconnects
    row.ice_restarts += int(delta.get("ice_restarts", 0))
    row.ice_failures += int(delta.get("ice_failures", 0))
    if stats.rtt_ms is not None:
        row.rtt_samples += 1
        row.rtt_sum_ms += stats.rtt_ms
        row.rtt_max_ms = max(row.rtt_max_ms or 0, stats.rtt_ms)
    if stats.jitter_ms is not None:
        row.jitter_samples += 1
        row.jitter_sum_ms += stats.jitter_ms
        row.jitter_max_ms = max(row.jitter_max_ms or 0, stats.jitter_ms)
    if stats.bitrate_in_kbps is not None:
        row.bitrate_in_samples += 1
        row.bitrate_in_sum_kbps += stats.bitrate_in_kbps
    if stats.bitrate_out_kbps is not None:
        row.bitrate_out_samples += 1
        row.bitrate_out_sum_kbps += stats.bitrate_out_kbps
    received = delta.get("audio_packets_received", 0) + delta.get("video_packets_received", 0)
    lost = delta.get("audio_packets_lost", 0) + delta.get("video_packets_lost", 0)
    row.packets_received += int(received)
    row.packets_lost += int(lost)
    row.freeze_count += int(delta.get("freeze_count", 0))
    row.freeze_seconds += delta.get("freeze_seconds", 0)
    if stats.rtt_ms is not None:
        # The MOS is a voice score: the interval's audio loss when audio was counted, else all of its loss.
        audio = delta.get("audio_packets_received", 0) + delta.get("audio_packets_lost", 0)
        if audio:
            loss = 100 * delta.get("audio_packets_lost", 0) / audio
        else:
            loss = 100 * lost / (received + lost) if received + lost else 0
        score = mos(rtt_ms=stats.rtt_ms, jitter_ms=stats.jitter_ms or 0, loss_percent=loss)
        row.mos_samples += 1
        row.mos_sum += score
        row.mos_min = score if row.mos_min is None else min(row.mos_min, score)
    row.poor = bool(poor_reasons(row))


def freeze_percent(row: CallQuality) -> float:
    """The share of the pair's time its video froze: from the first report's interval to the last report."""
    seconds = (row.last_at - row.first_at).total_seconds() + settings.PARLEY_QUALITY["STATS_SECONDS"]
    return 100 * row.freeze_seconds / seconds


def poor_reasons(row: CallQuality) -> list[str]:
    """Why the pair is poor (nothing: it is not), by the PARLEY_POOR_* thresholds."""
    limits = settings.PARLEY_QUALITY
    reasons = []
    if row.mos_mean is not None and row.mos_mean < limits["POOR_MOS"]:
        reasons.append(f"MOS {row.mos_mean:.2f}")
    if row.loss_percent is not None and row.loss_percent > limits["POOR_LOSS_PERCENT"]:
        reasons.append(f"loss {row.loss_percent:.1f} %")
    if row.rtt_mean_ms is not None and row.rtt_mean_ms > limits["POOR_RTT_MS"]:
        reasons.append(f"RTT {row.rtt_mean_ms:.0f} ms")
    if row.jitter_mean_ms is not None and row.jitter_mean_ms > limits["POOR_JITTER_MS"]:
        reasons.append(f"jitter {row.jitter_mean_ms:.0f} ms")
    if freeze_percent(row) > limits["POOR_FREEZE_PERCENT"]:
        reasons.append(f"froze {freeze_percent(row):.0f} %")
    return reasons


@dataclass(frozen=True)
class Summary:
    """A participation's quality over all its remote peers (the admin, the API)."""

    samples: int
    candidate_types: list[str]
    mos_mean: float | None
    mos_min: float | None
    rtt_mean_ms: float | None
    rtt_max_ms: float | None
    jitter_mean_ms: float | None
    loss_percent: float | None
    freeze_count: int
    freeze_seconds: float
    connect_ms: float | None
    ice_restarts: int
    poor: bool


def summary(rows: list[CallQuality]) -> Summary | None:
    if not rows:
        return None

    def mean(total: str, count: str) -> float | None:
        n = sum(getattr(r, count) for r in rows)
        return sum(getattr(r, total) for r in rows) / n if n else None

    def worst(name: str, pick) -> float | None:
        values = [getattr(r, name) for r in rows if getattr(r, name) is not None]
        return pick(values) if values else None

    received, lost = sum(r.packets_received for r in rows), sum(r.packets_lost for r in rows)
    return Summary(
        samples=sum(r.samples for r in rows),
        candidate_types=sorted({r.candidate_type for r in rows if r.candidate_type}),
        mos_mean=mean("mos_sum", "mos_samples"), mos_min=worst("mos_min", min),
        rtt_mean_ms=mean("rtt_sum_ms", "rtt_samples"), rtt_max_ms=worst("rtt_max_ms", max),
        jitter_mean_ms=mean("jitter_sum_ms", "jitter_samples"),
        loss_percent=100 * lost / (received + lost) if received + lost else None,
        freeze_count=sum(r.freeze_count for r in rows), freeze_seconds=sum(r.freeze_seconds for r in rows),
        connect_ms=worst("connect_ms", max), ice_restarts=sum(r.ice_restarts for r in rows),
        poor=any(r.poor for r in rows),
    )


def with_quality(calls):
    """Annotate a Call queryset with `poor` (a participation of it was poor) and `worst_mos` (the lowest mean MOS
    of its pairs), by subqueries: no join that would multiply other annotations."""
    rows = CallQuality.objects.filter(participant__call=OuterRef("pk"))
    mean_mos = F("mos_sum") / NullIf(Cast("mos_samples", FloatField()), 0.0)
    worst = rows.annotate(mean=mean_mos).order_by().values("participant__call").annotate(worst=Min("mean"))
    return calls.annotate(poor=Exists(rows.filter(poor=True)), worst_mos=Subquery(worst.values("worst")[:1]))
