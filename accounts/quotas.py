"""Per-account limits: rooms owned, calls at once, call minutes per calendar month (UTC).

Defaults come from settings (PARLEY_QUOTAS, 0 = unlimited); `accounts.Quota` overrides them for one user. The
services check them (calls/services.py) and refuse with `QuotaExceeded`; docs/operations.md lists them.
"""

from datetime import UTC, timedelta

from django.conf import settings
from django.db.models import F, Sum
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from accounts.models import Quota
from calls.models import CallParticipant, Room

NAMES = ("rooms", "concurrent_calls", "call_minutes")


class QuotaExceeded(Exception):
    def __init__(self, *, quota: str, limit: int, used: int):
        super().__init__(f"Quota exceeded: {quota.replace('_', ' ')} (limit {limit}, used {used}).")
        self.quota, self.limit, self.used = quota, limit, used

    def as_dict(self) -> dict:
        return {"code": "quota-exceeded", "quota": self.quota, "limit": self.limit, "used": self.used,
                "detail": str(self)}


def limits_for(user) -> dict[str, int | None]:
    """Each limit of the user; None: unlimited."""
    own = Quota.objects.filter(user=user).first()
    limits = {}
    for name in NAMES:
        value = getattr(own, name, None) if own is not None else None
        value = settings.PARLEY_QUOTAS[name] if value is None else value
        limits[name] = value or None
    return limits


def month_start(now=None):
    now = (now or timezone.now()).astimezone(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def usage_for(user, *, exclude_room=None) -> dict[str, int]:
    """What the user uses now: rooms owned, live calls they are in (but `exclude_room`'s), minutes this month."""
    live_calls = CallParticipant.objects.live().filter(user=user)
    if exclude_room is not None:
        live_calls = live_calls.exclude(call__room=exclude_room)
    start = month_start()
    spent = (CallParticipant.objects.filter(user=user, joined_at__gte=start)
             .aggregate(total=Sum(Coalesce(F("left_at"), Now()) - F("joined_at")))["total"]) or timedelta()
    return {"rooms": Room.objects.filter(owner=user).count(),
            "concurrent_calls": live_calls.values("call").distinct().count(),
            "call_minutes": int(spent.total_seconds() // 60)}


def check(*, user, quota: str, room=None) -> None:
    """Raise QuotaExceeded if one more of `quota` (a room, a call, a minute) would go over the user's limit."""
    check_all(user=user, quotas=(quota,), room=room)


def check_all(*, user, quotas: tuple[str, ...], room=None) -> None:
    """`check` of several quotas, in order, with one look-up of the limits (and none of the use if unlimited)."""
    limits = limits_for(user)
    if all(limits[quota] is None for quota in quotas):
        return
    usage = usage_for(user, exclude_room=room)
    for quota in quotas:
        if limits[quota] is not None and usage[quota] >= limits[quota]:
            raise QuotaExceeded(quota=quota, limit=limits[quota], used=usage[quota])


def summary(user) -> dict:
    """For GET /api/me/: each quota's limit (None: unlimited) and use."""
    limits, usage = limits_for(user), usage_for(user)
    return {name: {"limit": limits[name], "used": usage[name]} for name in NAMES}
