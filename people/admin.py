from django.contrib import admin

from people.models import MeSocket, Ring


@admin.register(Ring)
class RingAdmin(admin.ModelAdmin):
    """Rings are the call log: read-only, like calls."""

    list_display = ["created_at", "caller_name", "callee_name", "room_name", "state", "answered_at", "ended_at"]
    list_filter = ["state", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["caller_name", "callee_name", "caller__username", "callee__username", "room_name"]
    date_hierarchy = "created_at"
    list_select_related = ["caller", "callee", "room", "call"]
    readonly_fields = [field.name for field in Ring._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(MeSocket)
class MeSocketAdmin(admin.ModelAdmin):
    """Who is online where: the open /ws/me/ sockets (read-only)."""

    list_display = ["user", "node", "connected_at"]
    list_select_related = ["user"]
    readonly_fields = ["user", "channel_name", "node", "connected_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
