from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from accounts import audit
from calls import events
from webhooks import delivery
from webhooks.models import Delivery, Endpoint, OutboxEvent


class EndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")

    class Meta:
        model = Endpoint
        fields = "__all__"

    def clean_url(self):
        url = self.cleaned_data["url"]
        try:
            delivery.check_url(url)
        except delivery.UnsafeURL as error:
            raise ValidationError(str(error)) from None
        return url

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("enabled"):
            cleaned["disabled_reason"] = ""  # enabled again: the reason it was disabled no longer holds
        elif not cleaned.get("disabled_reason"):
            cleaned["disabled_reason"] = Endpoint.DisabledReason.BY_OWNER
        if cleaned.get("scope") == Endpoint.Scope.GLOBAL and cleaned.get("room") is not None:
            self.add_error("room", "A global endpoint has no room.")
        return cleaned

    def clean_event_types(self):
        types = self.cleaned_data["event_types"]
        if not isinstance(types, list) or not set(types) <= set(events.TYPES):
            raise ValidationError(f"A list of event types among: {', '.join(events.TYPES)}.")
        return types


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ("url", "scope", "room", "owner", "enabled", "disabled_reason", "failing_since", "created_at")
    list_filter = ("enabled", "scope", "disabled_reason")
    search_fields = ("url", "owner__username", "room__slug")
    raw_id_fields = ("owner", "room")
    readonly_fields = ("failing_since", "created_at", "updated_at")

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit.record("webhook.changed" if change else "webhook.created", actor=request.user,
                     target=f"webhook:{obj.pk}", url=obj.url, via="admin")

    def delete_model(self, request, obj):
        audit.record("webhook.deleted", actor=request.user, target=f"webhook:{obj.pk}", url=obj.url, via="admin")
        super().delete_model(request, obj)


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    list_display = ("event_id", "type", "room_key", "created_at")
    list_filter = ("type",)
    search_fields = ("event_id",)
    readonly_fields = ("event_id", "type", "room_key", "payload", "created_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the retention purge removes delivered events


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("event", "endpoint", "status", "attempts", "last_response_code", "last_attempt_at",
                    "next_attempt_at", "delivered_at")
    list_filter = ("status",)
    search_fields = ("event__event_id", "endpoint__url")
    readonly_fields = ("event", "endpoint", "room_key", "status", "attempts", "next_attempt_at", "last_attempt_at",
                       "last_response_code", "last_error", "delivered_at")
    actions = ["replay"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Replay: send the selected deliveries once more", permissions=["change"])
    def replay(self, request, queryset):
        for each in queryset:
            delivery.replay(delivery=each)
            audit.record("webhook.replayed", actor=request.user, target=f"delivery:{each.pk}",
                         event=each.event.event_id)
        self.message_user(request, f"{queryset.count()} delivery(ies) will be sent again.", messages.SUCCESS)
