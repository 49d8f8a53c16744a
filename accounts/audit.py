"""The audit trail's one door: `record()`. Events are only ever added (the admin shows them read-only)."""

from accounts.models import AuditEvent


def record(action: str, *, actor, target: str = "", address: str | None = None, **detail) -> AuditEvent:
    """Write one audit event. `actor` is the user who acted (None: the system); `target` names what it was done
    to, e.g. "room:board-room" or "webhook:12"; `detail` is anything JSON-ready."""
    return AuditEvent.objects.create(actor=actor if actor is not None and actor.pk else None, action=action,
                                     target=target[:200], address=address or None, detail=detail)
