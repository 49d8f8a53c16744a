"""The admin of webhooks, quotas and audit events: deliveries shown and replayed, endpoints checked like the API,
audit events read-only, and the call log saying how long it is kept."""

import pytest
from django.urls import reverse

from accounts import audit
from accounts.models import AuditEvent
from calls import services
from webhooks import outbox
from webhooks.models import Delivery, Endpoint, OutboxEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def failed_delivery(alice, room):
    Endpoint.objects.create(owner=alice, room=room, url="https://example.com/hook", event_types=["room.updated"])
    services.update_room(by=alice, room=room, name="One")
    Delivery.objects.update(status="failed", attempts=10, last_response_code=500, last_error="HTTP 500")
    return Delivery.objects.get()


def test_the_delivery_list_shows_attempts_status_and_response(operator, failed_delivery):
    page = operator.get(reverse("admin:webhooks_delivery_changelist")).content.decode()
    assert "room.updated" in page and "Failed" in page and "500" in page


def test_replaying_a_delivery_makes_it_pending_and_due(operator, failed_delivery, admin_user):
    answer = operator.post(reverse("admin:webhooks_delivery_changelist"),
                           {"action": "replay", "_selected_action": [failed_delivery.pk]})
    assert answer.status_code == 302
    failed_delivery.refresh_from_db()
    assert failed_delivery.status == "pending" and failed_delivery.attempts == 10
    assert AuditEvent.objects.filter(action="webhook.replayed", actor=admin_user).exists()


def test_the_admin_refuses_a_private_webhook_url(operator, alice, room):
    answer = operator.post(reverse("admin:webhooks_endpoint_add"), {
        "owner": alice.pk, "scope": "room", "room": room.pk, "url": "https://169.254.169.254/", "event_types":
        '["room.updated"]', "description": "", "enabled": "on", "disabled_reason": ""})
    assert answer.status_code == 200 and b"private address" in answer.content
    assert not Endpoint.objects.exists()


def test_audit_events_are_read_only(operator, alice):
    event = audit.record("account.exported", actor=alice, target=f"user:{alice.pk}")
    assert operator.get(reverse("admin:accounts_auditevent_changelist")).status_code == 200
    assert operator.get(reverse("admin:accounts_auditevent_add")).status_code == 403
    assert operator.post(reverse("admin:accounts_auditevent_delete", args=[event.pk])).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_outbox_events_cannot_be_deleted_in_the_admin(operator, room):
    event = outbox.write_event(type="room.updated", room_key=str(room.pk), payload={})
    assert operator.post(reverse("admin:webhooks_outboxevent_delete", args=[event.pk])).status_code == 403


def test_a_quota_override_is_set_in_the_admin(operator, mallory):
    answer = operator.post(reverse("admin:accounts_quota_add"), {"user": mallory.pk, "rooms": "3",
                                                                  "concurrent_calls": "", "call_minutes": ""})
    assert answer.status_code == 302
    assert mallory.quota.rooms == 3 and mallory.quota.call_minutes is None


@pytest.mark.parametrize(("days", "said"), [(0, b"kept forever"), (90, b"kept 90 days after they end")])
def test_the_call_log_says_how_long_it_is_kept(operator, settings, days, said):
    settings.PARLEY_CALL_RETENTION_DAYS = days
    assert said in operator.get(reverse("admin:calls_call_changelist")).content


def test_a_room_created_in_the_admin_is_an_event_too(operator, alice):
    answer = operator.post(reverse("admin:calls_room_add"), {
        "name": "Ops", "slug": "ops", "owner": alice.pk, "visibility": "private", "max_participants": 8,
        "media": "auto", "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"})
    assert answer.status_code == 302, answer.content[:2000]
    assert OutboxEvent.objects.get(type="room.created").payload["room"]["slug"] == "ops"


def test_enabling_an_endpoint_in_the_admin_clears_why_it_was_disabled(operator, settings, alice, room):
    settings.PARLEY_WEBHOOKS = {**settings.PARLEY_WEBHOOKS, "ALLOW_PRIVATE": True}
    endpoint = Endpoint.objects.create(owner=alice, room=room, url="https://127.0.0.1/hook", enabled=False,
                                       disabled_reason="gone", event_types=["room.updated"])
    answer = operator.post(reverse("admin:webhooks_endpoint_change", args=[endpoint.pk]), {
        "owner": alice.pk, "scope": "room", "room": room.pk, "url": endpoint.url, "event_types": '["room.updated"]',
        "description": "", "enabled": "on", "disabled_reason": "gone"})
    assert answer.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.disabled_reason) == (True, "")
