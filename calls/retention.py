"""Retention: what `manage.py purge_call_history` deletes once older than PARLEY_CALL_RETENTION_DAYS.

`PURGES` lists each kind of row with the query of its rows older than a cutoff, in the order they are purged
(children before parents). Other apps add theirs with `register()` from their AppConfig.ready() (webhooks adds its
delivered outbox events; rings and quality aggregates will add theirs), so this module imports none of them.

Rows go in batches, each batch locked with `FOR UPDATE SKIP LOCKED` and deleted in its own transaction: two runs
at once share the work instead of waiting for each other or deleting a row twice, and a run stopped midway leaves
whole batches behind.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from calls.models import Call, CallParticipant

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Purge:
    name: str
    older_than: Callable[[datetime], QuerySet]  # cutoff -> the rows to delete


PURGES: list[Purge] = [
    Purge("call participants", lambda cutoff: CallParticipant.objects.filter(call__ended_at__lt=cutoff)),
    Purge("calls", lambda cutoff: Call.objects.filter(ended_at__lt=cutoff)),
]


def register(purge: Purge) -> None:
    if all(p.name != purge.name for p in PURGES):
        PURGES.append(purge)


def kept_for() -> str:
    """What the admin and the purge say about how long the call log is kept."""
    days = settings.PARLEY_CALL_RETENTION_DAYS
    if not days:
        return "Calls are kept forever (PARLEY_CALL_RETENTION_DAYS is unset)."
    return (f"Calls are kept {days} days after they end, then deleted with their participants by "
            "manage.py purge_call_history (docs/operations.md).")


def cutoff_for(days: int | None = None, *, now=None) -> datetime | None:
    """Rows older than this go; None: keep forever (PARLEY_CALL_RETENTION_DAYS unset or 0)."""
    days = settings.PARLEY_CALL_RETENTION_DAYS if days is None else days
    if not days:
        return None
    return (now or timezone.now()) - timedelta(days=days)


def purge_older_than(cutoff: datetime, *, batch_size: int = 500, dry_run: bool = False) -> dict[str, int]:
    """Delete (or with `dry_run` count) each purge's rows older than `cutoff`. Returns the numbers per name."""
    counts = {}
    for purge in PURGES:
        if dry_run:
            counts[purge.name] = purge.older_than(cutoff).count()
            continue
        deleted = 0
        while True:
            with transaction.atomic():
                rows = purge.older_than(cutoff)
                ids = list(rows.model.objects.filter(pk__in=rows.values("pk")).order_by("pk")
                           .select_for_update(skip_locked=True).values_list("pk", flat=True)[:batch_size])
                if not ids:
                    break
                rows.model.objects.filter(pk__in=ids).delete()
            deleted += len(ids)
        counts[purge.name] = deleted
        if deleted:
            logger.info("purged %d %s older than %s", deleted, purge.name, cutoff.isoformat())
    return counts
