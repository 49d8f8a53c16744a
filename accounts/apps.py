from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from accounts import signals  # noqa: F401 - connects the receivers
        from accounts.models import AuditEvent
        from calls import retention

        # Audit events name people, rooms and client addresses like the call log does, and go with it: kept
        # PARLEY_CALL_RETENTION_DAYS (forever when unset), deleted by manage.py purge_call_history only.
        retention.register(retention.Purge("audit events", lambda cutoff: AuditEvent.objects.filter(
            created_at__lt=cutoff)))
