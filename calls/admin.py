import csv
from functools import partial

from django.contrib import admin
from django.db.models import Exists, OuterRef, Prefetch
from django.http import HttpResponse
from django.urls import path
from django.utils import timezone

from accounts import audit
from accounts.security import client_ip
from calls import admin_views, events, quality, retention, services
from calls.models import (
    Call,
    CallParticipant,
    CallQuality,
    Invite,
    RelayNode,
    ReplayFrame,
    Room,
    RoomMembership,
    format_duration,
)

# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): such cells get a leading '.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralised(value) -> object:
    """A CSV cell that a spreadsheet shows as text: strings starting like a formula get a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class CallRecord:
    """Call logs are records: nobody adds, edits or deletes them here, not even a superuser. Only the retention
    job removes them."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class RoomMembershipInline(admin.TabularInline):
    model = RoomMembership
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "owner", "visibility", "max_participants", "locked", "created_at")
    list_filter = ("visibility", "locked")
    list_select_related = ("owner",)
    search_fields = ("name", "slug", "owner__username")
    prepopulated_fields = {"slug": ("name",)}
    autocomplete_fields = ("owner",)
    inlines = [RoomMembershipInline]

    # Saving, locking and deleting go through the same services as the API: locking or deleting a room closes
    # the sockets of its live call and records why.
    def save_model(self, request, room, form, change):
        if not change:  # staff create rooms for anyone, over quotas; the room's creation is still an event
            super().save_model(request, room, form, change)
            events.emit(events.ROOM_CREATED, room_id=room.pk, room=room, payload={"room": events.room_data(room)})
            audit.record(audit.Action.ROOM_CREATED, actor=request.user, target=services.room_target(room),
                         address=client_ip(request), name=room.name, owner=room.owner.username, via="admin")
            return
        fields = {f.name for f in Room._meta.concrete_fields}
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in fields}
        services.update_room(by=request.user, room=Room.objects.get(pk=room.pk), address=client_ip(request),
                             **changes)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if change:  # members removed or demoted in the inline: their live connections end as through the API
            services.end_connections_without_access(room=form.instance)

    def delete_model(self, request, room):
        services.delete_room(by=request.user, room=room, address=client_ip(request))

    def delete_queryset(self, request, queryset):
        for room in queryset:
            services.delete_room(by=request.user, room=room, address=client_ip(request))


def number(value, unit: str = "", places: int = 0) -> str:
    return "–" if value is None else f"{value:.{places}f}{unit}"


class CallParticipantInline(CallRecord, admin.TabularInline):
    model = CallParticipant
    extra = 0
    can_delete = False
    fields = ("user", "display_name", "peer_id", "joined_at", "left_at", "duration_shown", "leave_reason",
              "reconnects", "connection", "mos", "rtt", "loss", "freezes", "time_to_connect", "quality_verdict",
              "user_agent")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user").prefetch_related("quality")

    @admin.display(description="duration")
    def duration_shown(self, participant):
        return format_duration(participant.duration)

    # Call quality (calls/quality.py), over the participant's reports about every remote peer.
    def summary(self, participant) -> quality.Summary | None:
        return quality.summary(list(participant.quality.all()))

    @admin.display(description="connection")
    def connection(self, participant):
        rows = participant.quality.all()
        return ", ".join(sorted({f"{r.candidate_type}/{r.protocol}" for r in rows if r.candidate_type})) or "–"

    @admin.display(description="MOS (mean / worst)")
    def mos(self, participant):
        s = self.summary(participant)
        return "–" if s is None else f"{number(s.mos_mean, places=2)} / {number(s.mos_min, places=2)}"

    @admin.display(description="RTT (mean / worst)")
    def rtt(self, participant):
        s = self.summary(participant)
        return "–" if s is None else f"{number(s.rtt_mean_ms, ' ms')} / {number(s.rtt_max_ms, ' ms')}"

    @admin.display(description="loss")
    def loss(self, participant):
        s = self.summary(participant)
        return "–" if s is None else number(s.loss_percent, " %", 2)

    @admin.display(description="freezes")
    def freezes(self, participant):
        s = self.summary(participant)
        return "–" if s is None else f"{s.freeze_count} ({s.freeze_seconds:.1f} s)"

    @admin.display(description="time to connect")
    def time_to_connect(self, participant):
        s = self.summary(participant)
        return "–" if s is None else number(s.connect_ms and s.connect_ms / 1000, " s", 1)

    @admin.display(description="quality")
    def quality_verdict(self, participant):
        rows = list(participant.quality.all())
        if not rows:
            return "no reports"
        reasons = [reason for row in rows for reason in quality.poor_reasons(row)]
        return f"poor: {', '.join(reasons)}" if reasons else "good"


class CallStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("live", "Live"), ("ended", "Ended")]

    def queryset(self, request, queryset):
        if self.value() == "live":
            return queryset.live()
        if self.value() == "ended":
            return queryset.ended()
        return queryset


class PoorCallsFilter(admin.SimpleListFilter):
    title = "quality"
    parameter_name = "quality"

    def lookups(self, request, model_admin):
        return [("poor", "Poor calls"), ("good", "Good calls"), ("unknown", "No reports")]

    def queryset(self, request, queryset):
        reported = Exists(CallQuality.objects.filter(participant__call=OuterRef("pk")))
        if self.value() == "poor":
            return queryset.filter(poor=True)
        if self.value() == "good":
            return queryset.filter(reported, poor=False)
        if self.value() == "unknown":
            return queryset.filter(~reported)
        return queryset


@admin.register(Call)
class CallAdmin(CallRecord, admin.ModelAdmin):
    # Fits 1280 px: the room (its name when the call started; the room itself is in the detail), when, how long,
    # how many, how well, live. The end time and who started it are in the detail.
    list_display = ("room_name", "started_at", "duration_shown", "participant_count", "quality_shown", "is_live")
    list_filter = (CallStatusFilter, PoorCallsFilter, "started_at", ("room", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("room",)
    date_hierarchy = "started_at"
    search_fields = ("room_name", "room__slug", "participants__user__username")
    readonly_fields = ("room", "room_name", "started_by", "started_at", "ended_at", "duration_shown")
    fields = readonly_fields
    inlines = [CallParticipantInline]
    actions = ["export_csv"]

    def get_queryset(self, request):
        return quality.with_quality(super().get_queryset(request).with_participant_count())

    def get_urls(self):
        """The "Live now" page, its JSON, its kick and end-call confirmations, and the dashboard
        (calls/admin_views.py), before the model's own URLs (whose `<object_id>/` would take them)."""
        def view(function):
            return self.admin_site.admin_view(partial(function, model_admin=self))

        return [
            path("live/", view(admin_views.live_page), name="calls_call_live"),
            path("live/data/", view(admin_views.live_data), name="calls_call_live_data"),
            path("live/kick/<uuid:peer_id>/", view(admin_views.kick), name="calls_call_live_kick"),
            path("live/<int:call_id>/end/", view(admin_views.end_call), name="calls_call_live_end"),
            path("dashboard/", view(admin_views.dashboard_page), name="calls_call_dashboard"),
            *super().get_urls(),
        ]

    @admin.display(description="quality", ordering="worst_mos")
    def quality_shown(self, call):
        if call.worst_mos is None and not call.poor:
            return "–"
        worst = f"worst MOS {call.worst_mos:.2f}" if call.worst_mos is not None else "no MOS"
        return f"poor ({worst})" if call.poor else f"good ({worst})"

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {**(extra_context or {}), "subtitle": retention.kept_for()})

    @admin.display(description="duration")
    def duration_shown(self, call):
        return format_duration(call.duration)

    @admin.display(description="participants", ordering="participant_count")
    def participant_count(self, call):
        return call.participant_count

    @admin.display(description="live", boolean=True)
    def is_live(self, call):
        return call.is_live

    @admin.action(description="Export selected calls with their participants as CSV")
    def export_csv(self, request, queryset):
        calls = queryset.select_related("room", "started_by").prefetch_related(
            Prefetch("participants", queryset=CallParticipant.objects.select_related("user"))
        )
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="parley-calls-{timezone.now():%Y%m%d-%H%M%S}.csv"'
        writer = csv.writer(response)
        writer.writerow(
            [
                "call_id", "room", "room_name", "call_started_at", "call_ended_at", "call_duration_seconds",
                "username", "display_name", "peer_id", "joined_at", "left_at", "duration_seconds",
                "leave_reason", "user_agent",
            ]
        )
        for call in calls:
            for p in call.participants.all():
                user = p.user
                row = [
                    call.pk, call.room.slug if call.room else "", call.room_name, call.started_at.isoformat(),
                    call.ended_at.isoformat() if call.ended_at else "", int(call.duration.total_seconds()),
                    user.username if user else "", user.display_name if user else p.display_name, p.peer_id,
                    p.joined_at.isoformat(), p.left_at.isoformat() if p.left_at else "",
                    int(p.duration.total_seconds()), p.leave_reason, p.user_agent,
                ]
                writer.writerow([neutralised(cell) for cell in row])
        return response


class CallQualityInline(CallRecord, admin.TabularInline):
    model = CallQuality
    extra = 0
    can_delete = False
    fields = ("remote_peer_id", "samples", "candidate_type", "protocol", "mos_mean", "mos_min", "rtt_mean_ms",
              "rtt_max_ms", "jitter_mean_ms", "loss_percent", "bitrate_in_mean_kbps", "bitrate_out_mean_kbps",
              "freeze_count", "freeze_seconds", "connect_ms", "ice_restarts", "ice_failures", "poor")
    readonly_fields = fields


@admin.register(CallQuality)
class CallQualityAdmin(CallRecord, admin.ModelAdmin):
    """The call quality of each participant and remote peer (calls/quality.py)."""

    list_display = ("participant", "remote_peer_id", "samples", "candidate_type", "mos_mean", "rtt_mean_ms",
                    "loss_percent", "poor", "last_at")
    list_filter = ("poor", "candidate_type", "last_at")
    list_select_related = ("participant__user", "participant__call")
    search_fields = ("participant__user__username", "participant__peer_id", "remote_peer_id")
    readonly_fields = [f.name for f in CallQuality._meta.fields if f.editable] + [
        "mos_mean", "rtt_mean_ms", "jitter_mean_ms", "loss_percent", "bitrate_in_mean_kbps", "bitrate_out_mean_kbps"]


@admin.register(CallParticipant)
class CallParticipantAdmin(CallRecord, admin.ModelAdmin):
    """Every connection across calls, for looking up one user's history."""

    list_display = ("name_shown", "user", "call", "joined_at", "left_at", "leave_reason", "reconnects")
    list_filter = ("leave_reason", "joined_at")
    list_select_related = ("user", "call__room")
    search_fields = ("user__username", "call__room__name", "peer_id")
    date_hierarchy = "joined_at"
    readonly_fields = [f.name for f in CallParticipant._meta.fields]
    inlines = [CallQualityInline]


@admin.register(RelayNode)
class RelayNodeAdmin(admin.ModelAdmin):
    """The running server processes, by their last heartbeat (calls/liveness.py)."""

    list_display = ("channel", "started_at", "beat_at")
    readonly_fields = ("channel", "started_at", "beat_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ReplayFrame)
class ReplayFrameAdmin(CallRecord, admin.ModelAdmin):
    """Frames kept for suspended participations until they resume or their window ends."""

    list_display = ("participant", "seq", "created_at")
    list_select_related = ("participant",)


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    list_display = ("room", "created_by", "created_at", "expires_at", "use_count", "max_uses", "revoked_at")
    list_filter = ("created_at",)
    list_select_related = ("room", "created_by")
    search_fields = ("room__name", "room__slug", "created_by__username")
    readonly_fields = ("token", "room", "created_by", "created_at", "use_count")


# The admin's index links the "Live now" page and the dashboard (templates/admin/calls/index.html).
admin.site.index_template = "admin/calls/index.html"
