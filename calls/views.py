from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from calls import services, signals
from calls.forms import RoomForm
from calls.models import Call, CallParticipant, Invite, Room, RoomMembership


@require_http_methods(["GET", "POST"])
def home(request):
    if not request.user.is_authenticated:
        return render(request, "calls/welcome.html")
    form = RoomForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            room = services.create_room(owner=request.user, **form.cleaned_data)
        except services.Refused as refusal:
            form.add_error(None, refusal.detail)
        else:
            return redirect(room)
    my_rooms = Room.objects.of_member(request.user).ordinary().select_related("owner")
    public_rooms = Room.objects.filter(visibility=Room.Visibility.PUBLIC).exclude(
        pk__in=my_rooms.values("pk")
    ).select_related("owner")
    return render(request, "calls/home.html", {"form": form, "my_rooms": my_rooms, "public_rooms": public_rooms})


def get_visible_room_or_404(user, slug: str) -> tuple[Room, str | None]:
    """The room and the user's role in it (None for a non-member). A private room is invisible to non-members:
    they get the same 404 as for a room that does not exist."""
    room = get_object_or_404(Room.objects.select_related("owner"), slug=slug)
    role = room.role_of(user)
    if not room.is_public and role is None:
        raise Http404("No such room.")
    return room, role


@login_required
def room_detail(request, slug: str):
    room, role = get_visible_room_or_404(request.user, slug)
    memberships = room.memberships.select_related("user").order_by("role", "user__username")
    recent_calls = Call.objects.filter(room=room).with_participant_count()[:10]
    can_moderate = role in RoomMembership.MODERATING_ROLES
    call_config = {"slug": room.slug, "can_moderate": can_moderate}
    return render(
        request,
        "calls/room.html",
        {"room": room, "memberships": memberships, "recent_calls": recent_calls, "role": role,
         "can_moderate": can_moderate, "call_config": call_config},
    )


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
    """My calls: every call the user took part in, newest first, with who else was there."""
    calls = (
        Call.objects.for_user(request.user)
        .select_related("room")
        .prefetch_related(
            Prefetch("participants", queryset=CallParticipant.objects.select_related("user").order_by("joined_at"))
        )
        .order_by("-started_at")[:100]
    )
    rows = []
    for call in calls:
        people, seen = [], set()
        for participant in call.participants.all():
            # A deleted user's rows have no user, only the name they had.
            key = participant.user_id or ("deleted", participant.display_name)
            if key not in seen:
                seen.add(key)
                people.append(participant.name_shown)
        rows.append({"call": call, "people": people, "at": call.started_at})
    # Other apps' entries (people: rings, missed calls) join the same timeline, each row drawn by its template.
    rows = sorted([*rows, *signals.timeline_entries(user=request.user)], key=lambda row: row["at"], reverse=True)
    return render(request, "calls/history.html", {"rows": rows})


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
        membership, created = services.accept_invite(token=token, user=request.user)
    except services.InviteInvalid as invalid:
        return invite_problem(request, invalid.state)
    room = membership.room
    if created:
        messages.success(request, f"Welcome to {room.name}: you are now a member.")
    else:
        messages.info(request, f"You already belong to {room.name}.")
    return redirect(room)
