from django.apps import AppConfig


class PeopleConfig(AppConfig):
    name = "people"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from calls import retention
        from people import receivers  # noqa: F401 - listens to calls.signals
        from people.models import Ring

        # Rings are part of the call log: kept as long as calls (PARLEY_CALL_RETENTION_DAYS).
        retention.register(retention.Purge("rings", lambda cutoff: Ring.objects.filter(created_at__lt=cutoff)
                                           .exclude(state=Ring.State.RINGING)))
