import logging
from collections import defaultdict
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template import loader
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from accounts.security import client_ip
from calls import history, services
from calls.forms import RoomForm
from calls.models import Call, CallParticipant, Invite, Room, RoomMembership

logger = logging.getLogger(__name__)

HOME_MY_ROOMS = 50  # the home page stays small whatever the number of rooms: lists are capped or paginated
HOME_LIVE_ROOMS = 20
HOME_PUBLIC_PAGE = 20


def live_people_by_room(room_ids) -> dict[int, list[str]]:
    """Who is in each room's live call now (one query, at most 16 a room)."""
    people = defaultdict(list)
    live = CallParticipant.objects.live().filter(call__room_id__in=list(room_ids), call__ended_at__isnull=True)
    for participant in live.select_related("user", "call").order_by("joined_at", "id"):
        people[participant.call.room_id].append(participant.name_shown)
    return dict(people)


def with_live(rooms) -> list[Room]:
    """The rooms, each with `live_people` (names, in join order) and `live_count`."""
    rooms = list(rooms)
    people = live_people_by_room(room.pk for room in rooms)
    for room in rooms:
        room.live_people = people.get(room.pk, [])
        room.live_count = len(room.live_people)
    return rooms


@require_http_methods(["GET", "POST"])
def home(request):
    if not request.user.is_authenticated:
        return render(request, "calls/welcome.html")
    form = RoomForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            room = services.create_room(owner=request.user, address=client_ip(request), **form.cleaned_data)
        except services.Refused as refusal:
            form.add_error(None, refusal.detail)
        else:
            return redirect(room)
    user = request.user
    mine = Room.objects.of_member(user).ordinary().select_related("owner").order_by("name", "pk")
    my_count = mine.count()
    live = (Room.objects.ordinary().filter(Q(visibility=Room.Visibility.PUBLIC) | Q(memberships__user=user))
            .filter(pk__in=Call.objects.live().values("room_id")).distinct()
            .select_related("owner").order_by("name", "pk"))
    query = request.GET.get("q", "").strip()[:100]
    public = (Room.objects.filter(visibility=Room.Visibility.PUBLIC).exclude(memberships__user=user)
              .select_related("owner").order_by("name", "pk"))
    if query:
        public = public.filter(Q(name__icontains=query) | Q(slug__icontains=query))
    public_page = Paginator(public, HOME_PUBLIC_PAGE).get_page(request.GET.get("page"))
    return render(request, "calls/home.html", {
        "form": form, "my_rooms": with_live(mine[:HOME_MY_ROOMS]), "my_count": my_count,
        "my_more": max(my_count - HOME_MY_ROOMS, 0), "live_rooms": with_live(live[:HOME_LIVE_ROOMS]),
        "public_page": public_page, "public_rooms": with_live(public_page.object_list), "query": query,
        "page_query": urlencode({"q": query}) if query else "",
    })


class RoomHidden(Http404):
    """A room that does not exist, or a private one the user does not belong to: the same answer for both."""


def get_visible_room_or_404(user, slug: str) -> tuple[Room, str | None]:
    """The room and the user's role in it (None for a non-member). A private room is invisible to non-members:
    they get the same 404 as for a room that does not exist."""
    room = Room.objects.select_related("owner").filter(slug=slug).first()
    role = room.role_of(user) if room is not None else None
    if room is None or (not room.is_public and role is None):
        raise RoomHidden("No such room.")
    return room, role


def room_not_found(request, slug: str):
    """The room's 404, in the site's layout even with debug on: it does not exist, or it is private."""
    return render(request, "404.html", {"room_slug": slug, "missing": "room"}, status=404)


def call_state(room: Room, user) -> dict:
    """What the pre-join screen says before the camera starts: who is in the call, whether there is room, and
    whether this user may join (and why not)."""
    call = Call.objects.filter(room=room).live().first()
    people = []
    if call is not None:
        people = [p.name_shown for p in call.participants.live().select_related("user").order_by("joined_at", "id")]
    count = len(people)
    state = {"live": call is not None, "count": count, "max": room.max_participants,
             "full": count >= room.max_participants, "people": people, "may_join": True, "refusal": None,
             "close_code": None, "banned_until": None}
    try:
        services.check_may_join(room=room, user=user)
        until = services.kick_ban_until(call=call, user=user)
        if until is not None:
            state["banned_until"] = until.isoformat()
            raise services.JoinRefused(services.CloseCode.FORBIDDEN, services.kick_ban_message(until))
    except services.JoinRefused as refusal:
        state.update(may_join=False, refusal=str(refusal), close_code=refusal.close_code)
    return state


@login_required
def room_detail(request, slug: str):
    try:
        room, role = get_visible_room_or_404(request.user, slug)
    except RoomHidden:
        return room_not_found(request, slug)
    memberships = room.memberships.select_related("user").order_by("role", "user__username")
    recent_calls = Call.objects.filter(room=room).with_participant_count()[:10]
    can_moderate = role in RoomMembership.MODERATING_ROLES
    state = call_state(room, request.user)
    call_config = {"slug": room.slug, "can_moderate": can_moderate, "max_participants": room.max_participants,
                   "state_url": f"{room.get_absolute_url()}call-state/",
                   "kick_ban_seconds": settings.PARLEY_KICK_BAN_SECONDS}
    return render(
        request,
        "calls/room.html",
        {"room": room, "memberships": memberships, "recent_calls": recent_calls, "role": role,
         "can_moderate": can_moderate, "call_config": call_config, "call_state": state},
    )


@login_required
def room_call_state(request, slug: str):
    """The live state of the room's call as JSON, for the pre-join screen (polled while it is open)."""
    try:
        room, _role = get_visible_room_or_404(request.user, slug)
    except RoomHidden:
        return JsonResponse({"detail": "No such room."}, status=404)
    response = JsonResponse(call_state(room, request.user))
    response["Cache-Control"] = "no-store, private"
    return response


@login_required
def room_settings(request, slug: str):
    """Owners and moderators manage the room here; the page drives the REST API (static/js/settings.js)."""
    room, role = get_visible_room_or_404(request.user, slug)
    if role not in RoomMembership.MODERATING_ROLES:
        raise Http404("No such room.")
    settings_config = {"slug": room.slug, "role": role, "room_url": room.get_absolute_url(), "home_url": "/"}
    return render(request, "calls/room_settings.html", {"room": room, "role": role, "settings_config": settings_config})


@login_required
def call_history(request):
    """My calls: the calls the user took part in (and those of rooms they own), newest first, paginated, filtered
    by person (?with=<username>), room, and dates in the viewer's time zone."""
    tz = history.viewer_time_zone(request)
    form = history.HistoryFilter(request.GET or None, user=request.user)
    filters = form.cleaned_data if form.is_bound and form.is_valid() else {}
    if form.is_bound and not form.is_valid():
        entries, page = [], None
    else:
        page, entries = history.history_entries(user=request.user, filters=filters, tz=tz, page=request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    with timezone.override(tz):
        return render(request, "calls/history.html", {
            "form": form, "entries": entries, "page": page, "filtered": bool(filters and any(filters.values())),
            "query": query.urlencode(), "tz_name": str(tz),
        })


@login_required
def call_detail(request, pk: int):
    """One call: who took part, when (in the viewer's time zone), for how long, why they left, who rejoined."""
    call = history.visible_calls(request.user).filter(pk=pk).select_related("room", "started_by").first()
    if call is None:
        return render(request, "404.html", {"missing": "call"}, status=404)
    tz = history.viewer_time_zone(request)
    rows = history.attendances(call)
    with timezone.override(tz):
        return render(request, "calls/call_detail.html", {
            "call": call, "rows": rows, "people": len({(r.participant.user_id, r.participant.display_name)
                                                       for r in rows}),
            "rejoins": sum(r.rejoin for r in rows), "tz_name": str(tz),
        })


INVITE_PROBLEMS = {
    "unknown": "This invite link is not valid. Check that you copied all of it, or ask for a new one.",
    Invite.State.EXPIRED: "This invite link has expired. Ask the person who sent it for a new one.",
    Invite.State.REVOKED: "This invite link was revoked. Ask the person who sent it for a new one.",
    Invite.State.USED_UP: "This invite link has been used as many times as it allows. Ask for a new one.",
}


def invite_problem(request, state: str):
    status = 404 if state == "unknown" else 410
    return render(request, "calls/invite_invalid.html", {"problem": INVITE_PROBLEMS[state], "state": state},
                  status=status)


@login_required  # sends people to log in (or sign up from there) and back here
@require_http_methods(["GET", "POST"])
def accept_invite(request, token: str):
    """Opening an invite link asks "Join <room>?"; only the form's POST (with its CSRF token) makes the member.

    A GET changes nothing, so a link that a page, a mail client or a chat preview opens on the user's behalf
    cannot make them join anything.
    """
    if request.method == "GET":
        invite = Invite.objects.select_related("room").filter(token=token).first()
        if invite is None:
            return invite_problem(request, "unknown")
        state = invite.state_at(timezone.now())
        if state != Invite.State.ACTIVE:
            return invite_problem(request, state)
        if invite.room.role_of(request.user) is not None:
            messages.info(request, f"You already belong to {invite.room.name}.")
            return redirect(invite.room)
        return render(request, "calls/invite_confirm.html", {"room": invite.room, "invite": invite})
    try:
        membership, created = services.accept_invite(token=token, user=request.user, address=client_ip(request))
    except services.InviteInvalid as invalid:
        return invite_problem(request, invalid.state)
    room = membership.room
    if created:
        messages.success(request, f"Welcome to {room.name}: you are now a member.")
    else:
        messages.info(request, f"You already belong to {room.name}.")
    return redirect(room)


# --- Error pages (config/urls.py names these as the handlers) -----------------------------------------------------


def page_not_found(request, exception=None):
    return render(request, "404.html", {"missing": "page"}, status=404)


def permission_denied(request, exception=None):
    detail = str(exception) if exception and str(exception) else ""
    return render(request, "403.html", {"detail": detail}, status=403)


def server_error(request):
    """No request context: whatever failed (a database, a context processor) must not fail this page too."""
    try:
        return render_plain(loader.get_template("500.html").render({}), 500)
    except Exception:  # the template itself failed: the bare minimum
        logger.exception("the 500 page could not be rendered")
        return render_plain("<h1>Server error</h1><p>Something went wrong on our side. Try again in a moment.</p>", 500)


def render_plain(html: str, status: int):
    return HttpResponse(html, status=status)
