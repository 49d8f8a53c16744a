from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A Parley user. Custom from day one so that later fields need no painful migration."""

    display_name = models.CharField(
        max_length=80, blank=True, help_text="The name other people see in calls. Defaults to the username."
    )

    def __str__(self) -> str:
        return self.username

    @property
    def name_shown(self) -> str:
        return self.display_name or self.username


class Quota(models.Model):
    """One user's own limits, over the settings' defaults (PARLEY_QUOTAS). Empty: the default; 0: unlimited."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="quota")
    rooms = models.PositiveIntegerField(null=True, blank=True, help_text="Rooms owned. Empty: the default.")
    concurrent_calls = models.PositiveIntegerField(null=True, blank=True,
                                                   help_text="Calls at once. Empty: the default.")
    call_minutes = models.PositiveIntegerField(null=True, blank=True,
                                               help_text="Call minutes per calendar month. Empty: the default.")

    def __str__(self) -> str:
        return f"Quota of {self.user}"


class AuditEvent(models.Model):
    """Something done that someone may have to account for later. Append-only: written by accounts.audit."""

    actor = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="audit_events")
    action = models.CharField(max_length=40)
    target = models.CharField(max_length=200, blank=True)
    address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["actor", "-created_at"], name="accounts_audit_actor_recent"),
            models.Index(fields=["action", "-created_at"], name="accounts_audit_action_recent"),
        ]
        constraints = [models.CheckConstraint(condition=~models.Q(action=""), name="accounts_auditevent_has_action")]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor or 'nobody'} on {self.target}"
