"""A user downloads their data and deletes their account: their rooms go through the services (live calls closed,
`room.deleted` sent), their rows in other people's call logs stay, anonymised."""

import json

import pytest
from rest_framework import status

from accounts.models import AuditEvent, User
from calls.models import CallParticipant, Room
from tests.helpers import a_past_call, api_as, in_call
from webhooks.models import OutboxEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def mallorys_call(mallory, public_room, bob):
    """Mallory and bob were in a call of alice's public room."""
    return a_past_call(public_room, [mallory, bob])


def test_the_export_holds_the_profile_rooms_memberships_calls_and_audit_events(alice, bob, room, public_room):
    call = a_past_call(room, [alice, bob])
    answer = api_as(alice).get("/api/me/export/")
    assert answer.status_code == status.HTTP_200_OK
    assert "attachment" in answer["Content-Disposition"]
    data = answer.json()
    assert data["profile"] | {"date_joined": None} == {"id": alice.pk, "username": "alice",
                                                       "display_name": "Alice A.", "email": "alice@example.com",
                                                       "date_joined": None, "last_login": None}
    assert sorted(r["slug"] for r in data["rooms"]) == sorted([room.slug, public_room.slug])
    assert sorted((m["room"], m["role"]) for m in data["memberships"]) == sorted(
        [(room.slug, "owner"), (public_room.slug, "owner")])
    assert [(c["call"], c["duration_seconds"], c["leave_reason"]) for c in data["calls"]] == [(call.pk, 720, "left")]
    assert [e["action"] for e in data["audit_events"]] == [  # her rooms (the fixtures), then this export
        "room.created", "member.added", "member.added", "room.created", "member.added", "member.added",
        "account.exported"]


def test_the_export_holds_nothing_of_other_people(mallory, mallorys_call, room):
    data = api_as(mallory).get("/api/me/export/").json()
    assert data["rooms"] == [] and data["memberships"] == []
    assert [c["call"] for c in data["calls"]] == [mallorys_call.pk]
    assert "bob" not in json.dumps(data) and "alice" not in json.dumps(data)


def test_the_profile_page_offers_the_download_and_it_is_json(client, alice, room):
    client.force_login(alice)
    page = client.get("/accounts/profile/")
    assert b'href="/accounts/profile/export/"' in page.content and b'href="/accounts/profile/delete/"' in page.content
    download = client.get("/accounts/profile/export/")
    assert download["Content-Type"] == "application/json" and "attachment" in download["Content-Disposition"]
    assert json.loads(download.content)["profile"]["username"] == "alice"
    assert AuditEvent.objects.filter(action="account.exported", actor=alice, detail__via="profile").exists()


def test_an_account_is_not_deleted_without_its_password(alice, room):
    answer = api_as(alice).delete("/api/me/", {"password": "wrong"}, format="json")
    assert answer.status_code == status.HTTP_403_FORBIDDEN and answer.json()["code"] == "wrong-password"
    assert api_as(alice).delete("/api/me/", {}, format="json").status_code == status.HTTP_400_BAD_REQUEST
    assert User.objects.filter(pk=alice.pk).exists() and Room.objects.filter(pk=room.pk).exists()


def test_deleting_an_account_deletes_its_rooms_and_anonymises_its_call_rows(alice, bob, password, room,
                                                                           public_room):
    alice_id, past = alice.pk, a_past_call(room, [alice, bob])
    live_alice, live_bob = in_call(public_room, alice), in_call(public_room, bob)
    answer = api_as(alice).delete("/api/me/", {"password": password}, format="json")
    assert answer.status_code == status.HTTP_204_NO_CONTENT
    assert not User.objects.filter(username="alice").exists()
    assert not Room.objects.filter(pk__in=[room.pk, public_room.pk]).exists()
    # Through the services: room.deleted sent, the live call closed and ended.
    assert sorted(e.payload["room"]["slug"] for e in OutboxEvent.objects.filter(type="room.deleted")) == sorted(
        [room.slug, public_room.slug])
    live_bob.refresh_from_db()
    assert live_bob.left_at is not None and live_bob.leave_reason == "room-closed"
    assert live_bob.call.ended_at is not None
    # Bob's call log stays whole; alice's rows in it stay, anonymised.
    rows = list(CallParticipant.objects.filter(call__in=[past, live_alice.call]).order_by("call", "joined_at"))
    assert len(rows) == 4
    hers = [r for r in rows if r.user_id is None]
    assert len(hers) == 2 and {r.display_name for r in hers} == {"Alice A."}
    assert {r.user for r in rows if r.user_id} == {bob}
    event = AuditEvent.objects.get(action="account.deleted")
    assert event.target == f"user:{alice_id}" and event.actor is None
    assert event.detail["rooms_deleted"] == 2


def test_the_post_twin_of_delete_works_for_clients_without_a_delete_body(mallory, password):
    assert api_as(mallory).post("/api/me/delete/", {"password": password}, format="json").status_code == 204
    assert not User.objects.filter(username="mallory").exists()


def test_the_delete_page_asks_for_the_password_then_signs_out(client, mallory, password):
    client.force_login(mallory)
    wrong = client.post("/accounts/profile/delete/", {"password": "nope"})
    assert wrong.status_code == 200 and b"The password is not right." in wrong.content
    assert User.objects.filter(username="mallory").exists()
    done = client.post("/accounts/profile/delete/", {"password": password})
    assert done.status_code == 302 and done["Location"] == "/"
    assert not User.objects.filter(username="mallory").exists()
    assert "_auth_user_id" not in client.session
