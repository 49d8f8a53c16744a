from django.contrib import admin

from sfu.models import JanusRoom


@admin.register(JanusRoom)
class JanusRoomAdmin(admin.ModelAdmin):
    """Which calls are in SFU mode, read only; the room's secret and pin are not shown."""

    list_display = ("call", "room", "created_at")
    fields = ("call", "room", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
