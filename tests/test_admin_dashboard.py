"""The admin dashboard (calls/dashboard.py, calls/admin_views.py): the numbers of each chart on data the test
builds, one query per chart, days without calls at zero, staff only."""

import uuid
from datetime import datetime, time, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from calls import charts, dashboard
from calls.models import Call, CallParticipant, CallQuality
from calls.services import Reason

pytestmark = pytest.mark.django_db

URL = reverse("admin:calls_call_dashboard")


def noon_today():
    return timezone.make_aware(datetime.combine(timezone.localdate(), time(12)))


@pytest.fixture
def win():
    """The window as of noon today, whatever the clock says: the data below sits at known hours before it."""
    return dashboard.window(now=noon_today())


def a_call(room, people, *, start, minutes: float, reason=Reason.LEFT, live: bool = False):
    """A call of `people` from `start` for `minutes` (each there all along), or still going on if `live`."""
    end = None if live else start + timedelta(minutes=minutes)
    call = Call.objects.create(room=room, room_name=room.name,
                               started_by=people[0], started_at=start, ended_at=end)
    for person in people:
        CallParticipant.objects.create(call=call, user=person, joined_at=start, left_at=end,
                                       leave_reason="" if live else reason)
    return call


def participation(call, user) -> CallParticipant:
    return call.participants.get(user=user)


def quality(participant, *, poor=False, candidate_type="host", connect_ms=None) -> CallQuality:
    return CallQuality.objects.create(participant=participant, remote_peer_id=uuid.uuid4(), samples=3, poor=poor,
                                      candidate_type=candidate_type, protocol="udp" if candidate_type else "",
                                      connect_ms=connect_ms)


@pytest.fixture
def month(win, room, public_room, alice, bob, carol, mallory):
    """Two days ago: a call of alice and bob (12 min; alice poor over TURN, bob kicked) and one of alice and carol
    (30 min); yesterday 23:50 a call of bob and carol that ran past midnight (30 min, disconnected); today a live
    call of bob, for 10 minutes now; and 40 days ago a call outside the window."""
    two_days_ago = win.days[-3]
    at = lambda day, hour, minute=0: timezone.make_aware(datetime.combine(day, time(hour, minute)))  # noqa: E731
    first = a_call(room, [alice, bob], start=at(two_days_ago, 10), minutes=12)
    CallParticipant.objects.filter(call=first, user=bob).update(leave_reason=Reason.KICKED)
    second = a_call(public_room, [alice, carol], start=at(two_days_ago, 15), minutes=30)
    a_call(public_room, [bob, carol], start=at(win.days[-2], 23, 50), minutes=30, reason=Reason.DISCONNECTED)
    a_call(room, [bob], start=win.now - timedelta(minutes=10), minutes=0, live=True)
    a_call(room, [mallory, alice], start=win.now - timedelta(days=40), minutes=60, reason=Reason.TIMED_OUT)
    quality(participation(first, alice), poor=True, candidate_type="relay", connect_ms=1000)
    quality(participation(first, alice), candidate_type="", connect_ms=3000)
    quality(participation(first, bob), connect_ms=2000)
    quality(participation(second, carol), candidate_type="srflx", connect_ms=500)
    return {"two_days_ago": two_days_ago, "yesterday": win.days[-2], "today": win.days[-1]}


@pytest.fixture
def operator(client, admin_user):
    client.force_login(admin_user)
    return client


def test_the_window_is_the_last_30_days_today_included(win):
    assert len(win.days) == 30
    assert win.days[-1] == timezone.localdate(win.now)
    assert win.days[0] == win.days[-1] - timedelta(days=29)
    assert win.start == timezone.make_aware(datetime.combine(win.days[0], time.min))


def test_calls_minutes_and_people_per_day_in_one_query(win, month, django_assert_num_queries):
    with django_assert_num_queries(1):
        days = {a.day: a for a in dashboard.activity(win)}
    assert len(days) == 30
    two_days_ago = days[month["two_days_ago"]]
    assert (two_days_ago.calls, two_days_ago.users) == (2, 3)  # alice in both calls counts once
    assert two_days_ago.minutes == pytest.approx(2 * 12 + 2 * 30)
    # The call that ran past midnight counts, whole, on the day it started.
    yesterday = days[month["yesterday"]]
    assert (yesterday.calls, yesterday.users, yesterday.minutes) == (1, 2, pytest.approx(60))
    today = days[month["today"]]  # the live call: its 10 minutes so far
    assert (today.calls, today.users, today.minutes) == (1, 1, pytest.approx(10))
    quiet = [a for day, a in days.items() if day not in month.values()]
    assert len(quiet) == 27 and all((a.calls, a.users, a.minutes) == (0, 0, 0) for a in quiet)


def test_the_share_of_poor_participations_is_of_those_that_reported(win, month, django_assert_num_queries):
    with django_assert_num_queries(1):
        days = {p.day: p for p in dashboard.poor_share(win)}
    two_days_ago = days[month["two_days_ago"]]
    assert (two_days_ago.participations, two_days_ago.reported, two_days_ago.poor) == (4, 3, 1)
    assert two_days_ago.percent == pytest.approx(100 / 3)
    today = days[month["today"]]
    assert (today.participations, today.reported, today.poor, today.percent) == (1, 0, 0, None)
    assert days[win.days[0]].participations == 0


def test_connection_types_and_how_often_turn_was_needed(win, month, django_assert_num_queries):
    with django_assert_num_queries(1):
        types = dashboard.connection_types(win)
    assert types.counts == {"host": 1, "srflx": 1, "prflx": 0, "relay": 1, "": 1}
    # alice (relay), bob (host), carol (srflx) said how they connected; one of the three needed TURN.
    assert (types.participations, types.relayed_participations) == (3, 1)
    assert types.relay_percent == pytest.approx(100 / 3)


def test_the_median_time_to_connect_per_day(win, month, django_assert_num_queries):
    with django_assert_num_queries(1):
        days = {c.day: c for c in dashboard.connect_times(win)}
    two_days_ago = days[month["two_days_ago"]]
    assert two_days_ago.connections == 4
    assert two_days_ago.median_ms == pytest.approx(1500)  # of 500, 1000, 2000, 3000: between the middle two
    assert (days[month["today"]].connections, days[month["today"]].median_ms) == (0, None)


def test_an_odd_number_of_connections_has_its_middle_one_as_median(win, room, alice, django_assert_num_queries):
    call = a_call(room, [alice], start=win.now - timedelta(hours=1), minutes=5)
    for ms in (900, 100, 4000):
        quality(participation(call, alice), connect_ms=ms)
    with django_assert_num_queries(1):
        today = dashboard.connect_times(win)[-1]
    assert (today.connections, today.median_ms) == (3, 900)


def test_top_leave_reasons_commonest_first_without_live_ones(win, month, django_assert_num_queries):
    with django_assert_num_queries(1):
        reasons = dashboard.leave_reasons(win)
    assert [(r.reason, r.count) for r in reasons] == [("left", 3), ("disconnected", 2), ("kicked", 1)]
    assert reasons[2].label == "Kicked"


def test_days_are_those_of_the_configured_time_zone(settings, room, alice):
    settings.TIME_ZONE = "Pacific/Auckland"  # UTC+13 in December
    with timezone.override("Pacific/Auckland"):
        win = dashboard.window(now=noon_today())
        start = timezone.make_aware(datetime.combine(win.days[-3], time(9)))  # 20:00 UTC the day before
        a_call(room, [alice], start=start, minutes=5)
        days = {a.day: a.calls for a in dashboard.activity(win)}
    assert start.astimezone(dt_timezone.utc).date() == win.days[-4]
    assert (days[win.days[-4]], days[win.days[-3]]) == (0, 1)


def test_an_empty_month_is_all_zeros(win):
    assert [a.calls for a in dashboard.activity(win)] == [0] * 30
    assert all(p.percent is None for p in dashboard.poor_share(win))
    assert dashboard.connection_types(win).relay_percent is None
    assert dashboard.leave_reasons(win) == []


# --- Charts ---------------------------------------------------------------------------------------


def test_a_day_chart_has_a_bar_per_day_with_a_value_scaled_to_the_axis(win):
    chart = charts.day_bars("Calls", [(day, n) for n, day in enumerate(win.days)])
    assert len(chart.rects) == 29  # the first day's 0 draws no bar
    tallest = max(chart.rects, key=lambda r: r.height)
    assert tallest.title == f"{win.days[-1]:%Y-%m-%d}: 29"
    assert tallest.height == pytest.approx((170 - 10 - 22) * 29 / 50)  # the axis goes to 50
    assert [t.text for t in chart.texts[:3]] == ["0", "25", "50"]


@pytest.mark.parametrize(("value", "top"), [(0, 1), (0.3, 0.5), (1, 1), (7, 10), (12, 20), (23, 25), (480, 500)])
def test_the_axis_ends_at_a_round_number(value, top):
    assert charts.nice_ceiling(value) == pytest.approx(top)


# --- The page -------------------------------------------------------------------------------------


def test_the_page_draws_each_chart_with_its_numbers_beside_it(operator, month):
    response = operator.get(URL)
    assert response.status_code == 200
    body = response.content.decode()
    # Calls, minutes, people, poor, connection types, time to connect, leave reasons.
    assert body.count('<svg class="chart"') == 7
    assert f"<title>{month['two_days_ago']:%Y-%m-%d}: 2</title>" in body  # the two calls' bar
    assert "TURN relay needed by 1 of 3 participations" in body
    assert '<td class="number">1500 ms</td>' in body
    assert "Disconnected <span class=\"quiet\">(disconnected)</span>" in body
    assert 'href="/static/css/admin-insight.css"' in body


def test_the_page_makes_one_query_per_chart_however_much_data(operator, month, room, alice, bob):
    def chart_queries():
        with CaptureQueriesContext(connection) as queries:
            assert operator.get(URL).status_code == 200
        return [q["sql"] for q in queries if '"calls_' in q["sql"]]

    assert len(chart_queries()) == 5
    for hours in range(1, 6):
        call = a_call(room, [alice, bob], start=noon_today() - timedelta(days=hours, minutes=7), minutes=3)
        quality(participation(call, bob), connect_ms=100 * hours)
    assert len(chart_queries()) == 5


def test_anonymous_visitors_are_sent_to_the_admin_log_in(client):
    response = client.get(URL)
    assert response.status_code == 302 and response.url.startswith(reverse("admin:login"))


def test_people_who_are_not_staff_are_refused(client, bob):
    client.force_login(bob)
    response = client.get(URL)
    assert response.status_code == 302 and response.url.startswith(reverse("admin:login"))


def test_staff_without_the_permission_to_view_calls_are_refused(client, django_user_model):
    staff = django_user_model.objects.create_user("helpdesk", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(URL).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_call"))
    assert client.get(URL).status_code == 200
