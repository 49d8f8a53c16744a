"""`manage.py purge_call_history`: what is older than PARLEY_CALL_RETENTION_DAYS goes, in batches, and two runs at
once share the work (docs/operations.md)."""

import os
import re
import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from calls.models import Call, CallParticipant
from calls.services import Reason
from tests.helpers import a_past_call, in_call
from tests.servers import PROJECT, database_url_of_test_db
from webhooks import outbox
from webhooks.models import Delivery, Endpoint, OutboxEvent

pytestmark = pytest.mark.django_db
DAY = 24 * 60


def purge(*args: str) -> str:
    out = StringIO()
    call_command("purge_call_history", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def thirty_days(settings):
    settings.PARLEY_CALL_RETENTION_DAYS = 30


@pytest.fixture
def history(alice, bob, room):
    """Two calls older than 30 days, one recent, one live; an old delivered event, an old pending one, a new one."""
    old = [a_past_call(room, [alice, bob], minutes_ago=40 * DAY), a_past_call(room, [bob], minutes_ago=31 * DAY)]
    recent = a_past_call(room, [alice, bob], minutes_ago=29 * DAY)
    live = in_call(room, alice).call
    endpoint = Endpoint.objects.create(owner=alice, room=room, url="https://example.com/hook",
                                       event_types=["room.updated"])
    delivered, pending = (outbox.write_event(type="room.updated", room_key=str(room.pk), payload={}) for _ in "ab")
    OutboxEvent.objects.filter(pk__in=[delivered.pk, pending.pk]).update(created_at=timezone.now() - timedelta(days=40))
    Delivery.objects.filter(event=delivered).update(status="delivered", delivered_at=timezone.now())
    return {"old": old, "recent": recent, "live": live, "delivered": delivered, "pending": pending,
            "endpoint": endpoint}


def test_without_a_retention_nothing_is_purged(history):
    assert "kept forever" in purge()
    assert Call.objects.count() == 4


def test_a_dry_run_counts_and_deletes_nothing(thirty_days, history):
    said = purge("--dry-run")
    assert "would delete 2 calls" in said and "would delete 3 call participants" in said
    assert "would delete 1 delivered webhook events" in said
    assert Call.objects.count() == 4 and OutboxEvent.objects.filter(type="room.updated").count() == 2


def test_the_purge_deletes_old_calls_participants_and_delivered_events_only(thirty_days, history):
    said = purge()
    assert "deleted 2 calls" in said and "deleted 3 call participants" in said
    assert set(Call.objects.all()) == {history["recent"], history["live"]}
    assert not CallParticipant.objects.filter(call__in=history["old"]).exists()
    assert CallParticipant.objects.filter(call=history["recent"]).count() == 2
    left = set(OutboxEvent.objects.filter(type="room.updated"))
    assert history["delivered"] not in left and history["pending"] in left  # not yet delivered: kept
    assert "deleted 0 calls" in purge()  # a second run finds nothing


def test_the_purge_goes_in_batches(thirty_days, alice, room):
    for n in range(7):
        a_past_call(room, [alice], minutes_ago=(40 + n) * DAY)
    assert "deleted 7 calls" in purge("--batch-size", "2")
    assert not Call.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_purges_at_once_share_the_work(alice, room):
    started = timezone.now() - timedelta(days=60)
    calls = Call.objects.bulk_create(Call(room=room, room_name=room.name, started_at=started - timedelta(minutes=n),
                                          ended_at=started) for n in range(400))
    CallParticipant.objects.bulk_create(CallParticipant(call=call, user=alice, joined_at=call.started_at,
                                                        left_at=started, leave_reason=Reason.LEFT) for call in calls)
    env = {**os.environ, "DATABASE_URL": database_url_of_test_db(), "PARLEY_CALL_RETENTION_DAYS": "30"}
    runs = [subprocess.Popen([sys.executable, "manage.py", "purge_call_history", "--batch-size", "20"], cwd=PROJECT,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in "ab"]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    deleted = [int(re.search(r"deleted (\d+) calls", out).group(1)) for out in outputs]
    print(f"two purges at once: {deleted} calls")
    assert sum(deleted) == 400
    assert not Call.objects.exists() and not CallParticipant.objects.exists()
