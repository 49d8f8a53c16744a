"""Webhooks against a real HTTP receiver on 127.0.0.1: signatures, retries, order, SSRF refusals, the outbox's
transaction, and real worker processes killed and doubled (docs/webhooks.md)."""

import re
import time
from collections import defaultdict
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from rest_framework import status

from accounts.models import AuditEvent
from calls import events, services
from calls.models import Room
from tests.helpers import api_as, in_call
from tests.servers import PROJECT
from tests.webhooks import Receiver, Worker, self_signed_certificate, signature_of
from webhooks import delivery, outbox
from webhooks.models import Delivery, Endpoint, OutboxEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def local_hooks(settings):
    """Receivers here listen on 127.0.0.1 over http: allowed, and retries due at once."""
    settings.PARLEY_WEBHOOKS = {**settings.PARLEY_WEBHOOKS, "ALLOW_PRIVATE": True, "ALLOW_HTTP": True,
                                "RETRY_SCALE": 0.0}
    return settings.PARLEY_WEBHOOKS


def an_endpoint(*, owner, url: str, room=None, types=events.TYPES) -> Endpoint:
    scope = Endpoint.Scope.ROOM if room is not None else Endpoint.Scope.GLOBAL
    return Endpoint.objects.create(owner=owner, room=room, scope=scope, url=url, event_types=list(types))


def bodies(receiver: Receiver) -> list[dict]:
    return [r.event for r in receiver.acknowledged()]


# --- Signatures --------------------------------------------------------------------------------------


def test_the_worked_example_in_the_docs_is_the_signature_parley_sends():
    text = (PROJECT / "docs" / "webhooks.md").read_text()
    example = text.split("<!-- signature-example -->", 2)[1]
    secret = re.search(r"secret:\s+(whsec_\S+)", example).group(1)
    msg_id = re.search(r"webhook-id:\s+(\S+)", example).group(1)
    stamp = re.search(r"webhook-timestamp:\s+(\d+)", example).group(1)
    body = re.search(r"body:\s+(\{.*\})", example).group(1).encode()
    documented = re.search(r"webhook-signature:\s+(v1,\S+)", example).group(1)
    assert delivery.sign(secret=secret, msg_id=msg_id, timestamp=int(stamp), body=body) == documented
    assert signature_of(secret=secret, msg_id=msg_id, timestamp=stamp, body=body) == documented
    assert delivery.verify(secret=secret, body=body, now=int(stamp) + 10, headers={
        "webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": documented})
    assert not delivery.verify(secret=secret, body=body + b" ", now=int(stamp) + 10, headers={
        "webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": documented})
    assert not delivery.verify(secret=secret, body=body, now=int(stamp) + 3600, headers={
        "webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": documented})


def test_the_receiver_gets_a_signed_fresh_event_for_a_room_change(local_hooks, alice, room):
    with Receiver() as receiver:
        endpoint = an_endpoint(owner=alice, room=room, url=receiver.url, types=[events.ROOM_UPDATED])
        receiver.secret = endpoint.secret
        services.update_room(by=alice, room=room, name="Boardroom")
        assert delivery.deliver_due(limit=10) == 1
    [got] = receiver.received
    assert got.verified
    assert got.event["type"] == "room.updated" and got.event["id"] == got.msg_id
    assert got.event["data"]["room"] == {"id": room.pk, "slug": room.slug, "name": "Boardroom",
                                         "visibility": "private", "owner": "alice", "max_participants": 8,
                                         "locked": False}
    assert Delivery.objects.get().status == Delivery.Status.DELIVERED


def test_https_is_verified_against_the_name_while_the_connection_goes_to_the_checked_address(
        local_hooks, alice, room, tmp_path, monkeypatch):
    cert, key = self_signed_certificate(tmp_path)
    with Receiver(tls=(cert, key)) as receiver:
        receiver.secret = an_endpoint(owner=alice, room=room, url=receiver.url).secret
        services.update_room(by=alice, room=room, name="Untrusted")
        delivery.deliver_due(limit=1)  # the certificate is nobody's we trust: no delivery
        assert receiver.received == []
        assert "CERTIFICATE_VERIFY_FAILED" in Delivery.objects.get().last_error
        monkeypatch.setenv("SSL_CERT_FILE", cert)  # now trusted, as a public CA's would be
        Delivery.objects.update(next_attempt_at=timezone.now())
        delivery.deliver_due(limit=1)
    [got] = receiver.received
    assert got.verified and got.event["data"]["room"]["name"] == "Untrusted"
    assert Delivery.objects.get().status == Delivery.Status.DELIVERED


def test_a_wrong_secret_fails_the_receivers_check(local_hooks, alice, room):
    with Receiver(secret="whsec_" + "A" * 32) as receiver:
        an_endpoint(owner=alice, room=room, url=receiver.url)
        services.update_room(by=alice, room=room, name="Boardroom")
        delivery.deliver_due(limit=10)
    assert [r.verified for r in receiver.received] == [False]


# --- Retries, 410, failing endpoints -------------------------------------------------------------------


def test_a_receiver_failing_three_times_gets_the_event_once_with_one_id(local_hooks, alice, room):
    with Receiver(respond=lambda msg_id, attempt: 500 if attempt <= 3 else 200) as receiver:
        receiver.secret = an_endpoint(owner=alice, room=room, url=receiver.url).secret
        services.update_room(by=alice, room=room, name="Boardroom")
        attempted = delivery.deliver_due(limit=20)
    assert attempted == 4
    assert [r.answered for r in receiver.received] == [500, 500, 500, 200]
    assert len({r.msg_id for r in receiver.received}) == 1 and all(r.verified for r in receiver.received)
    assert len(receiver.acknowledged()) == 1
    sent = Delivery.objects.get()
    assert (sent.status, sent.attempts, sent.last_response_code) == (Delivery.Status.DELIVERED, 4, 200)
    assert Endpoint.objects.get().failing_since is None


def test_a_receiver_that_does_not_answer_in_time_is_a_failure_to_retry(local_hooks, alice, room):
    local_hooks["TIMEOUT"] = 0.5
    with Receiver() as receiver:
        an_endpoint(owner=alice, room=room, url=receiver.url)
        services.update_room(by=alice, room=room, name="Slow")
        receiver.hold = OutboxEvent.objects.get(type="room.updated").event_id
        delivery.deliver_due(limit=1)
        receiver.release.set()
        late = Delivery.objects.get()
        assert (late.status, late.attempts, late.last_response_code) == ("pending", 1, None)
        assert "timed out" in late.last_error
        delivery.deliver_due(limit=1)
    assert Delivery.objects.get().status == Delivery.Status.DELIVERED


def test_retries_follow_the_standard_webhooks_schedule_then_give_up(settings):
    settings.PARLEY_WEBHOOKS = {**settings.PARLEY_WEBHOOKS, "RETRY_SCALE": 1.0}
    delays = [delivery.retry_delay(n) for n in range(1, 11)]
    assert [d.total_seconds() for d in delays[:-1]] == [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    assert delays[-1] is None  # the tenth attempt was the last


def test_a_delivery_gives_up_after_ten_attempts(local_hooks, alice, room):
    with Receiver(status=503) as receiver:
        an_endpoint(owner=alice, room=room, url=receiver.url)
        services.update_room(by=alice, room=room, name="Boardroom")
        delivery.deliver_due(limit=50)
    assert len(receiver.received) == 10
    assert Delivery.objects.get().status == Delivery.Status.FAILED


def test_an_endpoint_answering_410_is_disabled_and_its_owner_told(local_hooks, alice, room, mailoutbox):
    with Receiver(status=410) as receiver:
        endpoint = an_endpoint(owner=alice, room=room, url=receiver.url)
        services.update_room(by=alice, room=room, name="One")
        services.update_room(by=alice, room=room, name="Two")
        delivery.deliver_due(limit=10)
    assert len(receiver.received) == 1  # the second event waits for the endpoint to be enabled again
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, Endpoint.DisabledReason.GONE)
    assert [d.status for d in Delivery.objects.order_by("id")] == ["failed", "pending"]
    assert mailoutbox[0].to == ["alice@example.com"]
    assert AuditEvent.objects.filter(action="webhook.disabled", target=f"webhook:{endpoint.pk}").exists()


def test_an_endpoint_failing_for_three_days_is_disabled(local_hooks, alice, room, mailoutbox):
    with Receiver(status=500) as receiver:
        endpoint = an_endpoint(owner=alice, room=room, url=receiver.url)
        Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(days=3, minutes=1))
        services.update_room(by=alice, room=room, name="One")
        delivery.deliver_due(limit=1)
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, Endpoint.DisabledReason.FAILING)
    assert len(mailoutbox) == 1


def test_a_replayed_delivery_is_sent_again_with_the_same_id(local_hooks, alice, room):
    with Receiver() as receiver:
        an_endpoint(owner=alice, room=room, url=receiver.url)
        services.update_room(by=alice, room=room, name="One")
        delivery.deliver_due(limit=10)
        delivery.replay(delivery=Delivery.objects.get())
        delivery.deliver_due(limit=10)
    assert len(receiver.received) == 2 and len(receiver.ids()) == 1
    assert Delivery.objects.get().attempts == 2


# --- No SSRF ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://127.0.0.1/hook", "https://localhost/hook", "https://10.1.2.3/hook",
                                 "https://192.168.0.10/hook", "https://169.254.169.254/latest/meta-data",
                                 "https://[::1]/hook", "https://[::ffff:127.0.0.1]/hook", "https://0.0.0.0/hook",
                                 "https://100.64.0.1/hook"])
def test_a_private_address_is_refused_at_registration(alice, room, url):
    answer = api_as(alice).post("/api/webhooks/", {"url": url, "room": room.slug, "event_types": ["room.updated"]},
                                format="json")
    assert answer.status_code == status.HTTP_400_BAD_REQUEST
    assert "url" in answer.json()
    assert not Endpoint.objects.exists()


def test_plain_http_is_refused_when_debug_is_off(settings, alice, room):
    settings.PARLEY_WEBHOOKS = {**settings.PARLEY_WEBHOOKS, "ALLOW_PRIVATE": True, "ALLOW_HTTP": False}
    answer = api_as(alice).post("/api/webhooks/", {"url": "http://127.0.0.1:9/hook", "room": room.slug,
                                                   "event_types": ["room.updated"]}, format="json")
    assert answer.status_code == status.HTTP_400_BAD_REQUEST and "https" in answer.json()["url"][0]


def test_a_private_address_is_refused_at_delivery_too(settings, alice, room):
    """An endpoint registered while its name resolved elsewhere (or while private addresses were allowed) is
    checked again before every attempt: no request leaves."""
    settings.PARLEY_WEBHOOKS = {**settings.PARLEY_WEBHOOKS, "ALLOW_PRIVATE": False, "ALLOW_HTTP": True,
                                "RETRY_SCALE": 1.0}
    with Receiver() as receiver:
        an_endpoint(owner=alice, room=room, url=receiver.url)
        services.update_room(by=alice, room=room, name="One")
        delivery.deliver_due(limit=10)
    assert receiver.received == []
    refused = Delivery.objects.get()
    assert refused.status == Delivery.Status.PENDING and refused.last_error.startswith("refused:")
    assert refused.last_response_code is None


# --- The outbox ------------------------------------------------------------------------------------


class Oops(Exception):
    pass


def test_an_event_exists_if_and_only_if_its_change_committed(alice, room):
    with pytest.raises(Oops), transaction.atomic():
        services.update_room(by=alice, room=room, name="Never")
        assert OutboxEvent.objects.filter(type="room.updated").count() == 1  # written in the same transaction
        raise Oops
    assert not OutboxEvent.objects.filter(type="room.updated").exists()
    assert Room.objects.get(pk=room.pk).name == "Board room"
    services.update_room(by=alice, room=room, name="Kept")
    assert OutboxEvent.objects.filter(type="room.updated").count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_event_cannot_be_sent_outside_a_transaction():
    with pytest.raises(RuntimeError):
        events.emit(events.ROOM_UPDATED, room_id=None, payload={})


def test_a_failing_outbox_write_rolls_the_change_back(alice, room, monkeypatch):
    def broken(**kwargs):
        raise Oops

    monkeypatch.setattr(outbox, "write_event", broken)
    with pytest.raises(Oops):
        services.update_room(by=alice, room=room, name="Never")
    assert Room.objects.get(pk=room.pk).name == "Board room"


def test_calls_report_joins_leaves_and_their_end(local_hooks, alice, bob, room):
    with Receiver() as receiver:
        an_endpoint(owner=alice, room=room, url=receiver.url)
        first, second = in_call(room, alice), in_call(room, bob)
        services.leave_call(peer_id=second.peer_id, reason=services.Reason.LEFT)
        services.leave_call(peer_id=first.peer_id, reason=services.Reason.DISCONNECTED)
        delivery.deliver_due(limit=20)
    got = bodies(receiver)
    assert [b["type"] for b in got] == ["call.started", "participant.joined", "participant.joined",
                                        "participant.left", "participant.left", "call.ended"]
    left = got[3]["data"]["participant"]
    assert (left["user"], left["reason"], left["peer_id"]) == ("bob", "left", str(second.peer_id))
    assert left["duration_seconds"] >= 0
    ended = got[-1]["data"]["call"]
    assert ended["duration_seconds"] >= 0 and ended["room_id"] == room.pk
    assert [(p["user"], p["reason"]) for p in ended["participants"]] == [("alice", "disconnected"),
                                                                       ("bob", "left")]


def test_a_deleted_rooms_endpoint_still_gets_room_deleted(local_hooks, alice, room):
    with Receiver() as receiver:
        endpoint = an_endpoint(owner=alice, room=room, url=receiver.url)
        services.delete_room(by=alice, room=room)
        delivery.deliver_due(limit=10)
    assert [b["type"] for b in bodies(receiver)] == ["room.deleted"]
    endpoint.refresh_from_db()
    assert endpoint.room is None and endpoint.scope == Endpoint.Scope.ROOM


def test_a_global_endpoint_gets_every_rooms_events_and_a_room_endpoint_only_its_own(local_hooks, alice,
                                                                                   admin_user, room, public_room):
    with Receiver() as everything, Receiver() as board:
        an_endpoint(owner=admin_user, url=everything.url, types=[events.ROOM_UPDATED])
        an_endpoint(owner=alice, room=room, url=board.url, types=[events.ROOM_UPDATED])
        services.update_room(by=alice, room=room, name="One")
        services.update_room(by=alice, room=public_room, name="Two")
        delivery.deliver_due(limit=10)
    assert [b["data"]["room"]["name"] for b in bodies(everything)] == ["One", "Two"]
    assert [b["data"]["room"]["name"] for b in bodies(board)] == ["One"]


def test_one_rooms_events_wait_behind_a_failing_one(local_hooks, alice, room, public_room):
    """Order per room: a failing event holds back the later events of its room for that endpoint, not others'."""
    def respond(msg_id, attempt):
        return 500 if msg_id == first_id and attempt == 1 else 200

    with Receiver(respond=respond) as receiver:
        an_endpoint(owner=alice, url=receiver.url, types=[events.ROOM_UPDATED])
        services.update_room(by=alice, room=room, name="A1")
        first_id = OutboxEvent.objects.get(type="room.updated").event_id
        services.update_room(by=alice, room=public_room, name="B1")
        services.update_room(by=alice, room=room, name="A2")
        local_hooks["RETRY_SCALE"] = 1.0  # the retry of A1 is due in 5 s
        delivery.deliver_due(limit=10)
        assert [b["data"]["room"]["name"] for b in bodies(receiver)] == ["B1"]
        Delivery.objects.update(next_attempt_at=timezone.now())
        delivery.deliver_due(limit=10)
    assert [b["data"]["room"]["name"] for b in bodies(receiver)] == ["B1", "A1", "A2"]


# --- The REST API ------------------------------------------------------------------------------------


def test_an_owner_registers_a_room_endpoint_and_sees_its_secret_once(settings, alice, room):
    settings.PARLEY_WEBHOOKS = {**settings.PARLEY_WEBHOOKS, "ALLOW_PRIVATE": True}
    api = api_as(alice)
    answer = api.post("/api/webhooks/", {"url": "https://127.0.0.1:9/hook", "room": room.slug,
                                         "event_types": ["call.ended", "participant.left"]}, format="json")
    assert answer.status_code == status.HTTP_201_CREATED, answer.json()
    created = answer.json()
    assert created["secret"].startswith("whsec_") and created["scope"] == "room" and created["room"] == room.slug
    shown = api.get(f"/api/webhooks/{created['id']}/").json()
    assert "secret" not in shown and shown["url"] == "https://127.0.0.1:9/hook"
    assert "secret" not in api.get("/api/webhooks/").json()["results"][0]
    assert api.patch(f"/api/webhooks/{created['id']}/", {"enabled": False}, format="json").json()[
        "disabled_reason"] == "by-owner"
    assert api.get(f"/api/webhooks/{created['id']}/deliveries/").json()["results"] == []
    assert api.delete(f"/api/webhooks/{created['id']}/").status_code == status.HTTP_204_NO_CONTENT
    assert list(AuditEvent.objects.filter(actor=alice, action__startswith="webhook.").order_by("id")
                .values_list("action", flat=True)) == ["webhook.created", "webhook.changed", "webhook.deleted"]


def test_only_the_owner_registers_a_rooms_endpoint_and_only_staff_a_global_one(settings, alice, bob, carol,
                                                                              mallory, admin_user, room):
    settings.PARLEY_WEBHOOKS = {**settings.PARLEY_WEBHOOKS, "ALLOW_PRIVATE": True}
    hook = {"url": "https://127.0.0.1:9/hook", "event_types": ["room.updated"]}
    assert api_as(carol).post("/api/webhooks/", {**hook, "room": room.slug}, format="json").status_code == 403
    assert api_as(bob).post("/api/webhooks/", {**hook, "room": room.slug}, format="json").status_code == 403
    assert api_as(mallory).post("/api/webhooks/", {**hook, "room": room.slug}, format="json").status_code == 400
    assert api_as(alice).post("/api/webhooks/", hook, format="json").status_code == 403
    assert api_as(admin_user).post("/api/webhooks/", hook, format="json").json()["scope"] == "global"
    assert api_as(alice).get("/api/webhooks/").json()["results"] == []  # nobody sees another's endpoints


def test_the_deliveries_of_an_endpoint_are_listed_newest_first(local_hooks, alice, room):
    with Receiver() as receiver:
        endpoint = an_endpoint(owner=alice, room=room, url=receiver.url)
        services.update_room(by=alice, room=room, name="One")
        services.update_room(by=alice, room=room, name="Two")
        delivery.deliver_due(limit=10)
    listed = api_as(alice).get(f"/api/webhooks/{endpoint.pk}/deliveries/").json()["results"]
    assert [(d["type"], d["status"], d["attempts"], d["last_response_code"]) for d in listed] == [
        ("room.updated", "delivered", 1, 204)] * 2
    assert listed[0]["id"] > listed[1]["id"]


# --- Real workers --------------------------------------------------------------------------------


def many_events(*, endpoint_rooms: list[int], count: int) -> list[str]:
    """`count` events spread over the rooms (by key), with a sequence number per room; their ids in order."""
    ids = []
    with transaction.atomic():
        for n in range(count):
            key = str(endpoint_rooms[n % len(endpoint_rooms)])
            event = outbox.write_event(type=events.ROOM_UPDATED, room_key=key, payload={"seq": n, "room": key})
            ids.append(event.event_id)
    return ids


def assert_in_order_per_room(received: list[dict]) -> None:
    per_room = defaultdict(list)
    for body in received:
        per_room[body["data"]["room"]].append(body["data"]["seq"])
    for seqs in per_room.values():
        assert seqs == sorted(seqs)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_two_workers_deliver_a_thousand_events_none_twice_each_room_in_order(admin_user, record_property):
    with Receiver() as receiver:
        receiver.secret = an_endpoint(owner=admin_user, url=receiver.url).secret
        ids = many_events(endpoint_rooms=[1, 2, 3, 4, 5, 6, 7, 8], count=1000)
        workers = [Worker("--once", "--batch", "2000", log_name=f"worker-{n}").start() for n in (1, 2)]
        codes = [w.wait(timeout=240) for w in workers]
        assert codes == [0, 0], [w.output()[-2000:] for w in workers]
        counts = receiver.ids()
    shares = [int(re.search(r"attempted (\d+)", w.output()).group(1)) for w in workers]
    duplicates = sum(n - 1 for n in counts.values())
    lost = len(set(ids) - set(counts))
    record_property("figures", {"events": 1000, "deliveries": len(counts), "attempts": sum(counts.values()),
                                "duplicates": duplicates, "lost": lost, "per worker": shares})
    print(f"two workers: {len(counts)} delivered, {duplicates} duplicates, {lost} lost, shares {shares}")
    assert lost == 0 and duplicates == 0 and sum(shares) == 1000
    assert all(r.verified for r in receiver.received)
    assert_in_order_per_room([r.event for r in receiver.received])
    assert Delivery.objects.filter(status=Delivery.Status.DELIVERED).count() == 1000


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_delivery_loses_nothing_and_repeats_only_the_unacknowledged(admin_user):
    with Receiver() as receiver:
        receiver.secret = an_endpoint(owner=admin_user, url=receiver.url).secret
        ids = many_events(endpoint_rooms=[1, 2, 3], count=60)
        receiver.hold = ids[30]
        first = Worker(log_name="worker-killed").start()
        assert receiver.holding.wait(60), first.output()[-2000:]
        first.kill()  # kill -9 while the receiver holds the request: its answer reaches no one
        acknowledged_before = {r.msg_id for r in receiver.acknowledged()}
        receiver.release.set()
        second = Worker("--once", log_name="worker-restarted").start()
        assert second.wait(timeout=120) == 0, second.output()[-2000:]
        counts = receiver.ids()
    twice = {msg_id for msg_id, n in counts.items() if n > 1}
    lost = set(ids) - set(counts)
    print(f"kill -9: {len(counts)} delivered, duplicates {sorted(twice)}, {len(lost)} lost")
    assert not lost
    assert twice <= {ids[30]} and not (twice & acknowledged_before)
    assert Delivery.objects.filter(status=Delivery.Status.DELIVERED).count() == 60
    assert_in_order_per_room([r.event for r in receiver.acknowledged()])


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_worker_stops_cleanly_on_sigterm(admin_user):
    with Receiver() as receiver:
        an_endpoint(owner=admin_user, url=receiver.url)
        ids = many_events(endpoint_rooms=[1], count=3)
        worker = Worker(log_name="worker-term").start()
        deadline = time.monotonic() + 60
        while len(receiver.acknowledged()) < 3 and time.monotonic() < deadline and worker.process.poll() is None:
            time.sleep(0.1)
        assert worker.stop(timeout=30) == 0, worker.output()[-2000:]
    assert sorted(receiver.ids()) == sorted(ids)
    assert "attempted 3 deliveries" in worker.output()
