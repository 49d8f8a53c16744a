import csv
import json

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.http import HttpResponse
from django.utils import timezone

from accounts import audit
from accounts.models import AuditEvent, Quota, User
from accounts.security import client_ip


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "display_name", "email", "is_staff", "is_active", "date_joined")
    search_fields = ("username", "display_name", "email")
    fieldsets = BaseUserAdmin.fieldsets + (("Parley", {"fields": ("display_name",)}),)
    add_fieldsets = BaseUserAdmin.add_fieldsets + (("Parley", {"fields": ("display_name",)}),)

    def get_object(self, request, object_id, from_field=None):
        user = super().get_object(request, object_id, from_field)
        if user is not None:  # a password set here is audited with the operator's address (accounts.signals)
            user._parley_address, user._parley_via = client_ip(request), "admin"
        return user


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    """Per-user limits over the defaults of settings (PARLEY_QUOTA_*); an empty field keeps the default."""

    list_display = ("user", "rooms", "concurrent_calls", "call_minutes")
    search_fields = ("user__username",)
    raw_id_fields = ("user",)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = ("created_at", "action", "actor", "target", "address", "detail")


def csv_cell(value) -> str:
    """A cell a spreadsheet shows as text: one that would start a formula (= + - @, a tab or a carriage return)
    gets a leading apostrophe (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_row(event: AuditEvent) -> list[str]:
    actor = event.actor.username if event.actor_id else ""
    detail = json.dumps(event.detail, sort_keys=True, ensure_ascii=False)
    values = (event.created_at.isoformat(), event.action, actor, event.target, event.address, detail)
    return [csv_cell(value) for value in values]


class ActionFilter(admin.SimpleListFilter):
    """By action, with every name of accounts.audit.Action (and any other one recorded)."""

    title = "action"
    parameter_name = "action"

    def lookups(self, request, model_admin):
        known = dict(audit.Action.choices)
        recorded = AuditEvent.objects.order_by().values_list("action", flat=True).distinct()
        return [(name, f"{name} ({known[name]})" if name in known else name)
                for name in sorted(set(known) | set(recorded))]

    def queryset(self, request, queryset):
        return queryset.filter(action=self.value()) if self.value() else queryset


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Append-only: nobody adds, edits or deletes audit events here, superusers neither. Selected events (or all,
    with "select all") export as CSV, neutralised against formula injection."""

    list_display = ("created_at", "action", "actor", "target", "address", "detail_shown")
    list_filter = (ActionFilter, "created_at")
    search_fields = ("actor__username", "target", "address", "action")
    date_hierarchy = "created_at"
    readonly_fields = ("created_at", "action", "actor", "target", "address", "detail")
    list_select_related = ("actor",)
    actions = ["export_csv"]

    @admin.display(description="detail")
    def detail_shown(self, event):
        text = json.dumps(event.detail, sort_keys=True, ensure_ascii=False)
        return text if len(text) <= 120 else text[:119] + "…"

    @admin.action(description="Export the selected audit events as CSV")
    def export_csv(self, request, queryset):
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="parley-audit-{timezone.now():%Y%m%d-%H%M%S}.csv"'
        writer = csv.writer(response)
        writer.writerow(CSV_COLUMNS)
        for event in queryset.select_related("actor").order_by("-created_at", "-id").iterator(chunk_size=1000):
            writer.writerow(csv_row(event))
        return response

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
