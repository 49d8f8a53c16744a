"""A ring's outcome is decided exactly once on real PostgreSQL, even when the callee accepts as the caller hangs up
(two threads, two database connections, released together)."""

import threading

import pytest
from django.db import connection, connections

from people import services
from people.models import Ring
from tests.helpers import unavailable

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_expiry_timers(monkeypatch):
    """The rings here are decided at once: no timer thread may outlive the test and touch its database."""
    monkeypatch.setattr(services, "expire_later", lambda ring_id, seconds: None)


def race(*actions):
    """Run the actions at the same moment, each in its own thread and connection; their results or refusals."""
    barrier = threading.Barrier(len(actions))
    results = [None] * len(actions)

    def run(index, action):
        try:
            barrier.wait(timeout=10)
            results[index] = action()
        except services.RingRefused as refusal:
            results[index] = refusal
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_accept_and_cancel_racing_decide_the_ring_once(alice, bob, room):
    if connection.vendor != "postgresql":
        unavailable("the race needs PostgreSQL (DATABASE_URL)")
    outcomes = []
    for _ in range(10):
        ring = services.start_ring(caller=alice, callee_username="bob")
        accepted, cancelled = race(lambda pk=ring.pk: services.accept_ring(by=bob, ring_id=pk),
                                   lambda pk=ring.pk: services.cancel_ring(by=alice, ring_id=pk))
        winners = [r for r in (accepted, cancelled) if isinstance(r, Ring)]
        losers = [r for r in (accepted, cancelled) if isinstance(r, services.RingRefused)]
        assert len(winners) == 1 and len(losers) == 1, (accepted, cancelled)
        assert losers[0].code == services.RingRefused.CONFLICT
        final = Ring.objects.get(pk=ring.pk)
        assert final.state == winners[0].state
        assert (final.answered_at is not None) == (final.state == "answered")
        outcomes.append(final.state)
    print(f"\noutcomes of 10 races: {sorted(outcomes)}")


def test_two_first_rings_of_one_caller_make_one(alice, bob, carol, room):
    if connection.vendor != "postgresql":
        unavailable("the race needs PostgreSQL (DATABASE_URL)")
    results = race(lambda: services.start_ring(caller=alice, callee_username="bob"),
                   lambda: services.start_ring(caller=alice, callee_username="carol"))
    assert sum(isinstance(r, Ring) for r in results) == 1, results
    assert Ring.objects.filter(caller=alice, state="ringing").count() == 1
