import csv

from django.contrib import admin
from django.db.models import Prefetch
from django.http import HttpResponse
from django.utils import timezone

from calls import events, retention, services
from calls.models import (
    Call,
    CallParticipant,
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
            return
        fields = {f.name for f in Room._meta.concrete_fields}
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in fields}
        services.update_room(by=request.user, room=Room.objects.get(pk=room.pk), **changes)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if change:  # members removed or demoted in the inline: their live connections end as through the API
            services.end_connections_without_access(room=form.instance)

    def delete_model(self, request, room):
        services.delete_room(by=request.user, room=room)

    def delete_queryset(self, request, queryset):
        for room in queryset:
            services.delete_room(by=request.user, room=room)


class CallParticipantInline(CallRecord, admin.TabularInline):
    model = CallParticipant
    extra = 0
    can_delete = False
    fields = ("user", "display_name", "peer_id", "joined_at", "left_at", "duration_shown", "leave_reason",
              "reconnects", "user_agent")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")

    @admin.display(description="duration")
    def duration_shown(self, participant):
        return format_duration(participant.duration)


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


@admin.register(Call)
class CallAdmin(CallRecord, admin.ModelAdmin):
    # Fits 1280 px: the room (its name when the call started; the room itself is in the detail), when, how long,
    # how many, live. The end time and who started it are in the detail.
    list_display = ("room_name", "started_at", "duration_shown", "participant_count", "is_live")
    list_filter = (CallStatusFilter, "started_at", ("room", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("room",)
    date_hierarchy = "started_at"
    search_fields = ("room_name", "room__slug", "participants__user__username")
    readonly_fields = ("room", "room_name", "started_by", "started_at", "ended_at", "duration_shown")
    fields = readonly_fields
    inlines = [CallParticipantInline]
    actions = ["export_csv"]

    def get_queryset(self, request):
        return super().get_queryset(request).with_participant_count()

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


@admin.register(CallParticipant)
class CallParticipantAdmin(CallRecord, admin.ModelAdmin):
    """Every connection across calls, for looking up one user's history."""

    list_display = ("name_shown", "user", "call", "joined_at", "left_at", "leave_reason", "reconnects")
    list_filter = ("leave_reason", "joined_at")
    list_select_related = ("user", "call__room")
    search_fields = ("user__username", "call__room__name", "peer_id")
    date_hierarchy = "joined_at"
    readonly_fields = [f.name for f in CallParticipant._meta.fields]


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
