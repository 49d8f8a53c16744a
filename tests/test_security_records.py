"""Issue 10, rows 6 and 7: the call log is a record (no deletes, deleted users anonymised) and its CSV is inert."""

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from calls.admin import neutralised
from calls.models import Call, CallParticipant

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, admin_user):
    client.force_login(admin_user)
    return client


def ended_call(room, users, *, user_agent="pytest") -> Call:
    start = timezone.now() - timedelta(minutes=30)
    call = Call.objects.create(room=room, room_name=room.name, started_by=users[0], started_at=start,
                               ended_at=start + timedelta(minutes=12))
    for user in users:
        CallParticipant.objects.create(call=call, user=user, joined_at=start, left_at=start + timedelta(minutes=12),
                                       leave_reason="left", user_agent=user_agent)
    return call


# --- No deletes in the admin, not even for a superuser ----------------------------------------------------------


@pytest.mark.parametrize("model", ["call", "callparticipant"])
def test_the_admin_offers_no_delete_action_for_the_call_log(operator, public_room, alice, bob, model):
    ended_call(public_room, [alice, bob])
    response = operator.get(reverse(f"admin:calls_{model}_changelist"))
    assert response.status_code == 200
    form = response.context["action_form"]  # None: no actions at all
    actions = [name for name, _ in form.fields["action"].choices if name] if form else []
    assert "delete_selected" not in actions
    assert 'value="delete_selected"' not in response.content.decode()


@pytest.mark.parametrize("model", ["call", "callparticipant"])
def test_the_admin_delete_page_of_a_call_log_row_is_forbidden(operator, public_room, alice, bob, model):
    call = ended_call(public_room, [alice, bob])
    obj = call if model == "call" else call.participants.first()
    url = reverse(f"admin:calls_{model}_delete", args=[obj.pk])
    assert operator.get(url).status_code == 403
    assert operator.post(url, {"post": "yes"}).status_code == 403
    assert type(obj).objects.filter(pk=obj.pk).exists()


def test_a_forged_bulk_delete_of_calls_deletes_nothing(operator, public_room, alice, bob):
    call = ended_call(public_room, [alice, bob])
    operator.post(reverse("admin:calls_call_changelist"),
                  {"action": "delete_selected", "_selected_action": [call.pk], "post": "yes"})
    assert Call.objects.filter(pk=call.pk).exists() and call.participants.count() == 2


def test_the_call_page_has_no_delete_link(operator, public_room, alice, bob):
    call = ended_call(public_room, [alice, bob])
    body = operator.get(reverse("admin:calls_call_change", args=[call.pk])).content.decode()
    assert reverse("admin:calls_call_delete", args=[call.pk]) not in body


# --- Deleting a user anonymises their rows; everyone else's history stays whole ---------------------------------


def test_deleting_a_user_keeps_their_rows_with_their_name_and_no_user(public_room, alice, bob, django_user_model):
    call = ended_call(public_room, [alice, bob])
    bob.display_name = "Robert"
    bob.save()
    bob.delete()
    rows = list(call.participants.order_by("id"))
    assert [(p.user_id, p.display_name, p.name_shown) for p in rows] == [
        (alice.pk, "", "Alice A."), (None, "Robert", "Robert")]


def test_alices_history_still_shows_bob_after_his_account_is_gone(client, public_room, alice, bob):
    call = ended_call(public_room, [alice, bob])
    bob.delete()
    client.force_login(alice)
    response = client.get(reverse("call-history"))
    assert response.context["entries"][0].people == ["Alice A.", "bob"]
    api = APIClient()
    api.force_authenticate(alice)
    body = api.get(f"/api/calls/{call.pk}/").json()
    assert [(p["user"] and p["user"]["username"], p["name"]) for p in body["participants"]] == [
        ("alice", "Alice A."), (None, "bob")]


def test_the_admin_lists_and_counts_an_anonymised_participant(operator, public_room, alice, bob):
    call = ended_call(public_room, [alice, bob])
    bob.delete()
    changelist = operator.get(reverse("admin:calls_call_changelist"))
    assert changelist.context["cl"].result_list[0].participant_count == 2
    page = operator.get(reverse("admin:calls_call_change", args=[call.pk])).content.decode()
    assert "bob" in page
    assert operator.get(reverse("admin:calls_callparticipant_changelist")).status_code == 200


# --- CSV cells that a spreadsheet would run are neutralised -----------------------------------------------------


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_a_cell_starting_like_a_formula_gets_an_apostrophe(start):
    assert neutralised(f"{start}HYPERLINK(\"http://evil.example\")") == f"'{start}HYPERLINK(\"http://evil.example\")"


@pytest.mark.parametrize("value", ["Town hall", "", "2026-01-01T00:00:00+00:00", 720, None])
def test_ordinary_cells_are_left_alone(value):
    assert neutralised(value) == value


def test_the_exported_csv_carries_no_formula(operator, alice, bob, django_user_model):
    from calls import services

    mallory = django_user_model.objects.create_user("eve", display_name="=cmd|' /C calc'!A0", password="x")
    room = services.create_room(owner=alice, name="@SUM(1+1)*cmd|' /C calc'!A0", visibility="public")
    call = ended_call(room, [alice, mallory], user_agent="-2+3+cmd|' /C calc'!A0")
    response = operator.post(reverse("admin:calls_call_changelist"),
                             {"action": "export_csv", "_selected_action": [call.pk]})
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    cells = [cell for row in rows[1:] for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    eve = next(row for row in rows[1:] if row[6] == "eve")
    assert (eve[2], eve[7], eve[13]) == ("'@SUM(1+1)*cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0",
                                         "'-2+3+cmd|' /C calc'!A0")
