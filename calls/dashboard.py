"""The numbers of the admin dashboard (docs/operations.md "Dashboard"): the last 30 days, one query per chart.

Days are calendar days in the current time zone (DJANGO_TIME_ZONE), today included; a day with no calls is
there with zeros. A call counts on the day it started, with its participations' minutes and people; a
participation's quality, connection and time to connect count on the day it joined.
"""

import statistics
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db import connection
from django.db.models import Aggregate, Count, DateTimeField, DurationField, Exists, F, FloatField, OuterRef, Q, Sum
from django.db.models import Value as V
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from calls.models import Call, CallParticipant, CallQuality

DAYS = 30
CANDIDATE_TYPES = CallQuality.CandidateType


@dataclass(frozen=True)
class Window:
    """The days the dashboard covers: from the first one's midnight to `now`."""

    days: list[date]
    start: datetime
    now: datetime


def window(*, now: datetime | None = None, days: int = DAYS) -> Window:
    now = now or timezone.now()
    today = timezone.localdate(now)
    first = today - timedelta(days=days - 1)
    start = timezone.make_aware(datetime.combine(first, time.min))
    return Window(days=[first + timedelta(days=n) for n in range(days)], start=start, now=now)


def by_day(rows, win: Window, **zeros) -> dict[date, dict]:
    """The query's rows by day, with every day of the window present (zeros where there was nothing)."""
    found = {row["day"]: row for row in rows}
    return {day: {**zeros, **found.get(day, {})} for day in win.days}


def day_of(field: str) -> TruncDate:
    return TruncDate(field, tzinfo=timezone.get_current_timezone())


# --- Calls, call minutes and people per day ------------------------------------------------------


@dataclass(frozen=True)
class Activity:
    day: date
    calls: int
    minutes: float  # minutes people spent in the day's calls: two people for ten minutes are 20
    users: int  # distinct people in the day's calls (deleted accounts not counted)


def activity(win: Window) -> list[Activity]:
    spent = Coalesce(F("participants__left_at"), V(win.now, output_field=DateTimeField())) - F(
        "participants__joined_at")
    rows = (Call.objects.filter(started_at__gte=win.start, started_at__lte=win.now).order_by()
            .annotate(day=day_of("started_at")).values("day")
            .annotate(calls=Count("pk", distinct=True), users=Count("participants__user", distinct=True),
                      spent=Sum(spent, output_field=DurationField())))
    days = by_day(rows, win, calls=0, users=0, spent=None)
    return [Activity(day=day, calls=row["calls"], users=row["users"],
                     minutes=(row["spent"] or timedelta()).total_seconds() / 60) for day, row in days.items()]


# --- Poor participations per day ---------------------------------------------------------------


@dataclass(frozen=True)
class PoorShare:
    day: date
    participations: int
    reported: int  # participations with at least one quality report: the share is of these
    poor: int

    @property
    def percent(self) -> float | None:
        return 100 * self.poor / self.reported if self.reported else None


def poor_share(win: Window) -> list[PoorShare]:
    reports = CallQuality.objects.filter(participant=OuterRef("pk"))
    rows = (CallParticipant.objects.filter(joined_at__gte=win.start, joined_at__lte=win.now).order_by()
            .annotate(day=day_of("joined_at"), has_reports=Exists(reports),
                      was_poor=Exists(reports.filter(poor=True)))
            .values("day")
            .annotate(participations=Count("pk"), reported=Count("pk", filter=Q(has_reports=True)),
                      poor=Count("pk", filter=Q(was_poor=True))))
    days = by_day(rows, win, participations=0, reported=0, poor=0)
    return [PoorShare(day=day, participations=row["participations"], reported=row["reported"], poor=row["poor"])
            for day, row in days.items()]


# --- Connection types ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionTypes:
    """Peer connections by the selected candidate pair's local type, as each side reported it (one row per
    participant and remote peer), and how many participations needed TURN (relay) for any of theirs."""

    counts: dict[str, int]  # candidate type (or "" for connections that never said) -> connections
    participations: int  # participations that reported a connection type
    relayed_participations: int

    @property
    def relay_percent(self) -> float | None:
        return 100 * self.relayed_participations / self.participations if self.participations else None


def connection_types(win: Window) -> ConnectionTypes:
    kinds = [*CANDIDATE_TYPES.values, ""]
    totals = CallQuality.objects.filter(participant__joined_at__gte=win.start,
                                        participant__joined_at__lte=win.now).aggregate(
        **{f"type_{kind or 'unknown'}": Count("pk", filter=Q(candidate_type=kind)) for kind in kinds},
        participations=Count("participant", distinct=True, filter=~Q(candidate_type="")),
        relayed=Count("participant", distinct=True, filter=Q(candidate_type=CANDIDATE_TYPES.RELAY)),
    )
    return ConnectionTypes(counts={kind: totals[f"type_{kind or 'unknown'}"] for kind in kinds},
                           participations=totals["participations"], relayed_participations=totals["relayed"])


# --- Time to connect ----------------------------------------------------------------------------


class Median(Aggregate):
    """PostgreSQL's exact median (percentile_cont)."""

    function = "PERCENTILE_CONT"
    name = "median"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


@dataclass(frozen=True)
class ConnectTime:
    day: date
    connections: int  # peer connections whose time from join to `connected` was reported
    median_ms: float | None


def connect_times(win: Window) -> list[ConnectTime]:
    """The median time from joining to `connected` per day: PostgreSQL computes it; other databases (SQLite in
    development) hand over the day's values, still in one query, and Python takes their median."""
    measured = (CallQuality.objects.filter(participant__joined_at__gte=win.start, participant__joined_at__lte=win.now,
                                           connect_ms__isnull=False).order_by()
                .annotate(day=day_of("participant__joined_at")))
    if connection.vendor == "postgresql":
        rows = measured.values("day").annotate(connections=Count("pk"), median_ms=Median("connect_ms"))
    else:
        values: dict[date, list[float]] = {}
        for day, ms in measured.values_list("day", "connect_ms"):
            values.setdefault(day, []).append(ms)
        rows = [{"day": day, "connections": len(ms), "median_ms": statistics.median(ms)}
                for day, ms in values.items()]
    days = by_day(rows, win, connections=0, median_ms=None)
    return [ConnectTime(day=day, connections=row["connections"], median_ms=row["median_ms"])
            for day, row in days.items()]


# --- Leave reasons ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaveReason:
    reason: str
    label: str
    count: int


def leave_reasons(win: Window, *, top: int = 10) -> list[LeaveReason]:
    """Why the window's participations ended, the commonest first (live ones have not ended yet)."""
    labels = dict(CallParticipant.LeaveReason.choices)
    rows = (CallParticipant.objects.filter(joined_at__gte=win.start, joined_at__lte=win.now, left_at__isnull=False)
            .order_by().values("leave_reason").annotate(count=Count("pk")).order_by("-count", "leave_reason")[:top])
    return [LeaveReason(reason=row["leave_reason"], label=labels.get(row["leave_reason"], row["leave_reason"]),
                        count=row["count"]) for row in rows]
