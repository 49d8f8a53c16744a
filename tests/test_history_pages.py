"""My calls (paginated, filtered by person, room and date, times in the viewer's zone) and the page of one call."""

import html
from datetime import timedelta

import pytest
from django.utils import timezone

from calls import history, services
from calls.models import CallParticipant
from calls.services import Reason
from tests.helpers import a_past_call

pytestmark = pytest.mark.django_db


def ids(response) -> list[int]:
    return [entry.call.pk for entry in response.context["entries"]]


def test_my_calls_filters_by_person_room_and_date(client, alice, bob, carol, room, public_room):
    with_bob = a_past_call(room, [alice, bob], minutes_ago=60)
    with_carol = a_past_call(public_room, [alice, carol], minutes_ago=3 * 24 * 60)
    alone = a_past_call(public_room, [alice], minutes_ago=30)
    client.force_login(alice)
    assert ids(client.get("/calls/")) == [alone.pk, with_bob.pk, with_carol.pk]
    assert ids(client.get("/calls/?with=bob")) == [with_bob.pk]
    assert ids(client.get("/calls/?with=CAROL")) == [with_carol.pk]  # usernames in any case
    assert ids(client.get(f"/calls/?room={public_room.slug}")) == [alone.pk, with_carol.pk]
    today = timezone.localdate()
    assert ids(client.get(f"/calls/?since={today - timedelta(days=1)}")) == [alone.pk, with_bob.pk]
    older = today - timedelta(days=2)
    assert ids(client.get(f"/calls/?until={older}&room={public_room.slug}")) == [with_carol.pk]


def test_an_unknown_person_or_bad_dates_say_what_is_wrong(client, alice, room):
    a_past_call(room, [alice])
    client.force_login(alice)
    response = client.get("/calls/?with=nobody-here")
    assert response.status_code == 200 and ids(response) == []
    assert 'Nobody has the username "nobody-here".' in html.unescape(response.content.decode())
    body = client.get("/calls/?since=2026-05-02&until=2026-05-01").content.decode()
    assert "The end date is before the start date." in body


def test_my_calls_is_paginated_without_a_silent_cap(client, alice, room):
    for n in range(history.PAGE_SIZE + 3):
        a_past_call(room, [alice], minutes_ago=10 + n)
    client.force_login(alice)
    first = client.get("/calls/")
    assert len(ids(first)) == history.PAGE_SIZE
    assert first.context["page"].paginator.count == history.PAGE_SIZE + 3
    assert b'rel="next"' in first.content
    second = client.get("/calls/?page=2&room=" + room.slug)
    assert len(ids(second)) == 3
    assert b"room=board-room&amp;page=1" in second.content  # the filters stay on the page links


def test_my_calls_entries_come_from_one_function(alice, bob, room):
    call = a_past_call(room, [alice, bob])
    page, entries = history.history_entries(user=bob, filters={}, tz=timezone.get_current_timezone())
    assert [(e.kind, e.call.pk, e.people) for e in entries] == [("call", call.pk, ["Alice A.", "bob"])]
    assert page.paginator.count == 1


def test_times_are_in_the_viewers_time_zone_and_say_which(client, alice, room):
    call = a_past_call(room, [alice])
    client.force_login(alice)
    client.cookies["tz"] = "Asia/Tokyo"
    body = client.get("/calls/").content.decode()
    assert "Times are in <span data-tz-name>Asia/Tokyo</span>" in body
    tokyo = call.started_at.astimezone(history.zoneinfo.ZoneInfo("Asia/Tokyo"))
    assert f"{tokyo:%Y-%m-%d %H:%M} JST" in body
    client.cookies["tz"] = "Not/AZone"
    assert "Times are in <span data-tz-name>UTC</span>" in client.get("/calls/").content.decode()


def test_the_call_page_lists_participants_durations_leave_reasons_and_rejoins(client, alice, bob, room):
    call = a_past_call(room, [alice, bob], length=timedelta(minutes=10))
    bob_first = call.participants.get(user=bob)
    CallParticipant.objects.filter(pk=bob_first.pk).update(left_at=call.started_at + timedelta(minutes=2),
                                                           leave_reason=Reason.DISCONNECTED)
    CallParticipant.objects.create(call=call, user=bob, joined_at=call.started_at + timedelta(minutes=3),
                                   left_at=call.started_at + timedelta(minutes=10), leave_reason=Reason.LEFT)
    client.force_login(bob)
    response = client.get(f"/calls/{call.pk}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert [(r.participant.name_shown, r.rejoin) for r in response.context["rows"]] == [
        ("Alice A.", False), ("bob", False), ("bob", True)]
    assert response.context["rejoins"] == 1 and response.context["people"] == 2
    for text in ("0:10:00", "0:02:00", "0:07:00", "Disconnected", "Left", "rejoined", "data-tz-name"):
        assert text in body
    assert f'href="/calls/{call.pk}/"' in client.get("/calls/").content.decode()  # linked from My calls


def test_the_call_page_is_a_styled_404_to_those_who_were_not_there(client, alice, bob, mallory, room):
    call = a_past_call(room, [bob])
    client.force_login(mallory)
    response = client.get(f"/calls/{call.pk}/")
    assert response.status_code == 404 and b"No such call in your history" in response.content
    client.force_login(alice)  # the room's owner sees every call of it
    assert client.get(f"/calls/{call.pk}/").status_code == 200


def test_a_live_call_in_my_calls_is_marked_live(client, alice, bob, room):
    services.join_call(room_slug=room.slug, user=bob, peer_id="8d2c3d57-93c4-4f38-9d3a-3f2f0b7c1a01",
                       relay_node="test-node")
    client.force_login(bob)
    assert b'class="badge live"' in client.get("/calls/").content
