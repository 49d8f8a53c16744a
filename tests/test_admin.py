import csv
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from calls import services
from tests.helpers import a_past_call, in_call

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, admin_user):
    client.force_login(admin_user)
    return client


def test_call_list_shows_room_times_duration_and_participants(operator, public_room, alice, bob):
    a_past_call(public_room, [alice, bob])
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
    a_past_call(room, [alice, bob])
    few = count_queries()
    for i in range(1, 15):
        a_past_call(services.create_room(owner=alice, name=f"Room {i}"), [alice, bob], minutes_ago=30 + i)
    assert count_queries() == few


@pytest.fixture
def two_calls(public_room, private_room, alice, bob, carol):
    """An ended call in the public room (alice and bob), and a live one in the private room (carol)."""
    return {"ended": a_past_call(public_room, [alice, bob]), "live": in_call(private_room, carol).call}


@pytest.mark.parametrize(("query", "found"), [
    ("?status=live", ["live"]),
    ("?status=ended", ["ended"]),
    ("?q=alice", ["ended"]),
    ("?q=carol", ["live"]),
    ("?q=Town", ["ended"]),  # the room's name
    ("?q=board-room", ["live"]),  # the room's slug
    ("?q=o", ["ended", "live"]),  # a username and the room's name of each: still each call once
    ("?started_at__year=2000", []),
])
def test_call_list_filters_and_search_find_exactly_their_calls(operator, two_calls, query, found):
    response = operator.get(reverse("admin:calls_call_changelist") + query)
    assert response.status_code == 200
    assert sorted(call.pk for call in response.context["cl"].result_list) == sorted(two_calls[k].pk for k in found)


def test_call_page_shows_participants_read_only(operator, public_room, alice, bob):
    call = a_past_call(public_room, [alice, bob])
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
    body = response.content.decode()
    assert "bob" in body and "carol" in body


@pytest.mark.parametrize("name", ["admin:accounts_user_changelist", "admin:calls_room_changelist",
                                  "admin:calls_callparticipant_changelist"])
def test_other_changelists_render(operator, public_room, alice, bob, name):
    a_past_call(public_room, [alice, bob])
    assert operator.get(reverse(name)).status_code == 200


def test_csv_export_lists_each_participant_of_the_selected_calls(operator, public_room, private_room, alice, bob):
    chosen = a_past_call(public_room, [alice, bob])
    a_past_call(private_room, [alice])
    response = operator.post(reverse("admin:calls_call_changelist"),
                             {"action": "export_csv", "_selected_action": [chosen.pk]})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["call_id"], r["room"], r["username"]) for r in rows] == [
        (str(chosen.pk), "town-hall", "alice"), (str(chosen.pk), "town-hall", "bob")]
    assert rows[0]["duration_seconds"] == "720" and rows[0]["leave_reason"] == "left"


def test_the_call_list_fits_1280_px_with_the_rest_in_the_detail():
    from django.contrib import admin as django_admin

    from calls.models import Call

    call_admin = django_admin.site._registry[Call]
    assert call_admin.list_display == ("room_name", "started_at", "duration_shown", "participant_count",
                                       "quality_shown", "is_live")
    assert {"room", "ended_at", "started_by"} <= set(call_admin.fields)  # shown on the call's own page
