"""The admin's "Live now" and dashboard pages (docs/operations.md), registered by CallAdmin.get_urls behind the
admin's own log-in (staff only) and the Calls view permission. Kicking and ending a call go through
calls/services.py, with the rules the REST API has."""

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from accounts.security import client_ip
from calls import charts, dashboard, live_view, services
from calls.models import Call, CallParticipant

LIVE_REFRESH_SECONDS = 5


def check(request, model_admin) -> None:
    """Staff only (the admin's log-in does that), with the permission to view calls."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied


def context(request, model_admin, title: str, **extra) -> dict:
    check(request, model_admin)
    return {**model_admin.admin_site.each_context(request), "opts": Call._meta, "title": title, **extra}


def live_page(request, model_admin):
    return TemplateResponse(request, "admin/calls/live.html", context(
        request, model_admin, "Live now", live=live_view.live_calls(), refresh_seconds=LIVE_REFRESH_SECONDS))


def live_data(request, model_admin):
    check(request, model_admin)
    return JsonResponse(live_view.live_calls())


@require_http_methods(["GET", "POST"])
def kick(request, model_admin, peer_id):
    check(request, model_admin)
    participant = get_object_or_404(CallParticipant.objects.select_related("call__room", "user"), peer_id=peer_id)
    page = context(request, model_admin, f"Remove {participant.name_shown} from the call?", participant=participant,
                   ban_minutes=-(-settings.PARLEY_KICK_BAN_SECONDS // 60))
    if not participant.is_live:
        messages.warning(request, f"{participant.name_shown} had left the call already.")
        return redirect("admin:calls_call_live")
    if request.method == "POST":
        try:
            services.kick_participant(by=request.user, participant=participant, address=client_ip(request))
        except services.Refused as refused:
            messages.error(request, refused.detail)
        else:
            messages.success(request, f"{participant.name_shown} was removed from the call in "
                                      f"{participant.call.room_name}.")
        return redirect("admin:calls_call_live")
    return TemplateResponse(request, "admin/calls/live_confirm.html", {**page, "action": "kick"})


@require_http_methods(["GET", "POST"])
def end_call(request, model_admin, call_id):
    check(request, model_admin)
    call = get_object_or_404(Call.objects.select_related("room"), pk=call_id)
    people = list(call.participants.live().select_related("user"))
    page = context(request, model_admin, f"End the call in {call.room_name}?", call=call, people=people)
    if not call.is_live:
        messages.warning(request, f"The call in {call.room_name} had ended already.")
        return redirect("admin:calls_call_live")
    if request.method == "POST":
        try:
            closed = services.end_call(by=request.user, call=call, address=client_ip(request))
        except services.Refused as refused:
            messages.error(request, refused.detail)
        else:
            messages.success(request, f"The call in {call.room_name} was ended ({closed} removed).")
        return redirect("admin:calls_call_live")
    return TemplateResponse(request, "admin/calls/live_confirm.html", {**page, "action": "end"})


def dashboard_page(request, model_admin):
    page = context(request, model_admin, f"Dashboard: the last {dashboard.DAYS} days")
    win = dashboard.window()
    activity = dashboard.activity(win)
    poor = dashboard.poor_share(win)
    types = dashboard.connection_types(win)
    connect = dashboard.connect_times(win)
    reasons = dashboard.leave_reasons(win)
    type_labels = {**dict(dashboard.CANDIDATE_TYPES.choices), "": "Not reported"}
    return TemplateResponse(request, "admin/calls/dashboard.html", {
        **page,
        "window": win,
        "time_zone": timezone.get_current_timezone_name(),
        "activity": activity,
        "activity_totals": {"calls": sum(a.calls for a in activity), "minutes": sum(a.minutes for a in activity)},
        "calls_chart": charts.day_bars("Calls per day", [(a.day, a.calls) for a in activity]),
        "minutes_chart": charts.day_bars("Call minutes per day", [(a.day, a.minutes) for a in activity]),
        "users_chart": charts.day_bars("People per day", [(a.day, a.users) for a in activity]),
        "poor": poor,
        "poor_chart": charts.day_bars("Poor participations per day", [(p.day, p.percent) for p in poor],
                                      unit=" %", fill=charts.WARNING),
        "types": types,
        "type_rows": [(type_labels[kind], count) for kind, count in types.counts.items()],
        "types_chart": charts.labelled_bars("Peer connections by type", [
            (type_labels[kind], count) for kind, count in types.counts.items()]),
        "connect": connect,
        "connect_chart": charts.day_bars("Median time to connect per day", [
            (c.day, None if c.median_ms is None else c.median_ms / 1000) for c in connect], unit=" s"),
        "reasons": reasons,
        "reasons_chart": charts.labelled_bars("Leave reasons", [(r.label, r.count) for r in reasons]),
    })
