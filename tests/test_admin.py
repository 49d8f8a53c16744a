import csv
import io
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from calls import services
from calls.models import Call, CallParticipant

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, admin_user):
    client.force_login(admin_user)
    return client


def make_ended_call(room, users, minutes_ago=30, length=timedelta(minutes=12)):
    start = timezone.now() - timedelta(minutes=minutes_ago)
    call = Call.objects.create(room=room, started_by=users[0], started_at=start, ended_at=start + length)
    for user in users:
        CallParticipant.objects.create(call=call, user=user, joined_at=start, left_at=start + length,
                                       leave_reason="left", user_agent="pytest")
    return call


def test_call_list_shows_room_times_duration_and_participants(operator, public_room, alice, bob):
    make_ended_call(public_room, [alice, bob])
    response = operator.get(reverse("admin:calls_call_changelist"))
    assert response.status_code == 200
    row = response.context["cl"].result_list[0]
    assert row.participant_count == 2
    body = response.content.decode()
    assert "Town hall" in body and "0:12:00" in body


def test_call_list_makes_the_same_number_of_queries_for_many_calls(operator, alice, bob):
    def count_queries():
        with CaptureQueriesContext(connection) as queries:
            assert operator.get(reverse("admin:calls_call_changelist")).status_code == 200
        return len(queries)

    room = services.create_room(owner=alice, name="Room 0")
    make_ended_call(room, [alice, bob])
    few = count_queries()
    for i in range(1, 15):
        make_ended_call(services.create_room(owner=alice, name=f"Room {i}"), [alice, bob], minutes_ago=30 + i)
    assert count_queries() == few


@pytest.mark.parametrize("query", ["?status=live", "?status=ended", "?q=alice", "?q=Town", "?started_at__year=2026"])
def test_call_list_filters_and_search_render(operator, public_room, alice, bob, query):
    make_ended_call(public_room, [alice, bob])
    assert operator.get(reverse("admin:calls_call_changelist") + query).status_code == 200


def test_call_search_by_username_finds_each_call_once(operator, public_room, alice, bob):
    call = make_ended_call(public_room, [alice, bob])
    response = operator.get(reverse("admin:calls_call_changelist") + "?q=o")  # matches bob and the room name
    assert list(response.context["cl"].result_list) == [call]


def test_status_filter_separates_live_from_ended(operator, public_room, private_room, alice, bob):
    ended = make_ended_call(private_room, [alice, bob])
    live = Call.objects.create(room=public_room, started_by=alice)
    live_list = operator.get(reverse("admin:calls_call_changelist") + "?status=live").context["cl"].result_list
    ended_list = operator.get(reverse("admin:calls_call_changelist") + "?status=ended").context["cl"].result_list
    assert (list(live_list), list(ended_list)) == ([live], [ended])


def test_call_page_shows_participants_read_only(operator, public_room, alice, bob):
    call = make_ended_call(public_room, [alice, bob])
    response = operator.get(reverse("admin:calls_call_change", args=[call.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "alice" in body and "bob" in body
    assert 'name="_save"' not in body  # nothing to save: logs are not edited by hand
    response = operator.post(reverse("admin:calls_call_change", args=[call.pk]), {"ended_at_0": "2000-01-01"})
    assert response.status_code == 403


def test_room_page_renders_with_memberships_inline(operator, private_room):
    response = operator.get(reverse("admin:calls_room_change", args=[private_room.pk]))
    assert response.status_code == 200
    assert "bob" in response.content.decode()


@pytest.mark.parametrize("name", ["admin:accounts_user_changelist", "admin:calls_room_changelist",
                                  "admin:calls_callparticipant_changelist"])
def test_other_changelists_render(operator, public_room, alice, bob, name):
    make_ended_call(public_room, [alice, bob])
    assert operator.get(reverse(name)).status_code == 200


def test_csv_export_lists_each_participant_of_the_selected_calls(operator, public_room, private_room, alice, bob):
    chosen = make_ended_call(public_room, [alice, bob])
    make_ended_call(private_room, [alice])
    response = operator.post(reverse("admin:calls_call_changelist"),
                             {"action": "export_csv", "_selected_action": [chosen.pk]})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["call_id"], r["room"], r["username"]) for r in rows] == [
        (str(chosen.pk), "town-hall", "alice"), (str(chosen.pk), "town-hall", "bob")]
    assert rows[0]["duration_seconds"] == "720" and rows[0]["leave_reason"] == "left"
