from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import AuditEvent, Quota, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "display_name", "email", "is_staff", "is_active", "date_joined")
    search_fields = ("username", "display_name", "email")
    fieldsets = BaseUserAdmin.fieldsets + (("Parley", {"fields": ("display_name",)}),)
    add_fieldsets = BaseUserAdmin.add_fieldsets + (("Parley", {"fields": ("display_name",)}),)


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    """Per-user limits over the defaults of settings (PARLEY_QUOTA_*); an empty field keeps the default."""

    list_display = ("user", "rooms", "concurrent_calls", "call_minutes")
    search_fields = ("user__username",)
    raw_id_fields = ("user",)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Append-only: nobody adds, edits or deletes audit events here."""

    list_display = ("created_at", "action", "actor", "target", "address")
    list_filter = ("action",)
    search_fields = ("action", "target", "actor__username")
    readonly_fields = ("created_at", "action", "actor", "target", "address", "detail")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
