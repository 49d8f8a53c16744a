"""My calls and the page of one call: which calls a person sees, filtered, paginated, as entries of one list.

`history_entries` is the one source of My calls: anything else listed there later (rings missed or answered)
becomes entries of the same shape, merged by time.
"""

import zoneinfo
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from django import forms
from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import Prefetch, Q

from accounts.models import User
from calls import signals
from calls.models import Call, CallParticipant, Room

PAGE_SIZE = 25
TIME_ZONE_COOKIE = "tz"  # the browser's IANA time zone, set by static/js/localtime.js


def viewer_time_zone(request) -> tzinfo:
    """The time zone of the viewer's browser (its cookie), else the site's."""
    name = request.COOKIES.get(TIME_ZONE_COOKIE, "")
    if name and len(name) < 64:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    return zoneinfo.ZoneInfo(settings.TIME_ZONE)


@dataclass(frozen=True)
class Entry:
    """One line of My calls."""

    kind: str  # "call", or what another app adds (people: "ring")
    at: datetime
    call: Call | None = None
    people: list[str] = field(default_factory=list)
    template: str = ""  # another app's entry: the template that draws its row, given `row`
    row: dict = field(default_factory=dict)


class HistoryFilter(forms.Form):
    """The filters of My calls, from the query string: ?with=<username>&room=<slug>&since=<date>&until=<date>."""

    room = forms.ChoiceField(required=False, label="Room")
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, data, *, user, **kwargs):
        super().__init__(data, **kwargs)
        self.user = user
        rooms = Room.objects.filter(Q(memberships__user=user) | Q(calls__participants__user=user)).distinct()
        self.fields["room"].choices = [("", "Any room")] + [(room.slug, room.name) for room in rooms.order_by("name")]

    def clean_with(self):
        username = self.cleaned_data.get("with", "").strip()
        if not username:
            return None
        person = User.objects.filter(username__iexact=username).order_by("-username").first()
        if person is None:
            raise forms.ValidationError(f'Nobody has the username "{username}".')
        return person

    def clean(self):
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("until", "The end date is before the start date.")
        return cleaned


HistoryFilter.base_fields = {
    "with": forms.CharField(required=False, label="With", max_length=150,
                            widget=forms.TextInput(attrs={"placeholder": "username", "autocomplete": "off"})),
    **HistoryFilter.base_fields,
}


def visible_calls(user):
    """Calls the user took part in, and every call of the rooms they own."""
    return Call.objects.for_user(user)


def day_start(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz)


def filtered_calls(*, user, person=None, room: str = "", since: date | None = None, until: date | None = None,
                   tz: tzinfo):
    calls = visible_calls(user)
    if person is not None:
        calls = calls.filter(pk__in=CallParticipant.objects.filter(user=person).values("call_id"))
    if room:
        calls = calls.filter(room__slug=room)
    if since:
        calls = calls.filter(started_at__gte=day_start(since, tz))
    if until:
        calls = calls.filter(started_at__lt=day_start(until + timedelta(days=1), tz))
    return calls.select_related("room").order_by("-started_at", "-pk")


def people_of(call: Call) -> list[str]:
    """Everyone who took part, once each, in the order they first joined."""
    people, seen = [], set()
    for participant in call.participants.all():
        key = participant.user_id or ("deleted", participant.display_name)  # a deleted user has only a name
        if key not in seen:
            seen.add(key)
            people.append(participant.name_shown)
    return people


def history_entries(*, user, filters: dict, tz: tzinfo, page: str | int | None = 1) -> tuple[Page, list[Entry]]:
    """The page of My calls asked for: the paginator's page and its entries, newest first. The pages are pages of
    calls; other apps' entries (rings) between a page's calls and the next page's join that page."""
    calls = filtered_calls(user=user, person=filters.get("with"), room=filters.get("room") or "",
                           since=filters.get("since"), until=filters.get("until"), tz=tz)
    page_obj = Paginator(calls, PAGE_SIZE).get_page(page)
    entries = call_entries(page_obj) + others_entries(user=user, filters=filters, tz=tz, page=page_obj, calls=calls)
    return page_obj, sorted(entries, key=lambda entry: entry.at, reverse=True)


def others_entries(*, user, filters: dict, tz: tzinfo, page: Page, calls) -> list[Entry]:
    """Entries of other apps (calls.signals.my_calls_opened) within this page's stretch of time and the filters."""
    since = day_start(filters["since"], tz) if filters.get("since") else None
    until = day_start(filters["until"] + timedelta(days=1), tz) if filters.get("until") else None
    if page.has_next():
        since = max(filter(None, [since, page.object_list[len(page.object_list) - 1].started_at]))
    if page.number > 1:
        newer = calls[(page.number - 1) * PAGE_SIZE - 1].started_at  # the last call of the page before
        until = min(filter(None, [until, newer]))
    rows = signals.timeline_entries(user=user, since=since, until=until, person=filters.get("with"),
                                    room=filters.get("room") or "")
    return [Entry(kind=row.get("kind", "other"), at=row["at"], template=row["template"], row=row) for row in rows]


def call_entries(page_obj: Page) -> list[Entry]:
    calls = Call.objects.filter(pk__in=[call.pk for call in page_obj.object_list]).select_related("room")
    calls = calls.prefetch_related(
        Prefetch("participants", queryset=CallParticipant.objects.select_related("user").order_by("joined_at", "id"))
    ).order_by("-started_at", "-pk")
    return [Entry(kind="call", at=call.started_at, call=call, people=people_of(call)) for call in calls]


@dataclass(frozen=True)
class Attendance:
    """One participation in a call, for the call's page: `rejoin` when the same person had been in it before."""

    participant: CallParticipant
    rejoin: bool


def attendances(call: Call) -> list[Attendance]:
    seen, rows = set(), []
    for participant in call.participants.select_related("user").order_by("joined_at", "id"):
        key = participant.user_id or ("deleted", participant.display_name)
        rows.append(Attendance(participant=participant, rejoin=key in seen))
        seen.add(key)
    return rows
