from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from calls import retention
        from webhooks import outbox  # noqa: F401 - connects the receiver of calls.events.occurred
        from webhooks.models import OutboxEvent

        # Events whose deliveries are all done (or that had none) go with the call history.
        retention.register(retention.Purge("delivered webhook events", lambda cutoff: OutboxEvent.objects.filter(
            created_at__lt=cutoff).exclude(deliveries__status="pending")))
