"""A user's data, as they download it (GET /api/me/export/, the profile page): what Parley holds about them."""

from django.apps import apps
from django.db.models import Q
from django.utils import timezone

from accounts.models import AuditEvent
from calls.models import CallParticipant, Room, RoomMembership

FORMAT = "parley-export/1"


def _at(value):
    return value.isoformat() if value is not None else None


def export_user_data(user) -> dict:
    """Profile, rooms owned, memberships, call and ring history and audit events of `user`, JSON-ready."""
    rooms = Room.objects.filter(owner=user).order_by("created_at", "id")
    memberships = RoomMembership.objects.filter(user=user).select_related("room").order_by("created_at", "id")
    participations = CallParticipant.objects.filter(user=user).select_related("call").order_by("joined_at", "id")
    audit = AuditEvent.objects.filter(actor=user).order_by("created_at", "id")
    return {
        "format": FORMAT,
        "exported_at": _at(timezone.now()),
        "profile": {"id": user.pk, "username": user.username, "display_name": user.display_name,
                    "email": user.email, "date_joined": _at(user.date_joined), "last_login": _at(user.last_login)},
        "rooms": [{"slug": r.slug, "name": r.name, "visibility": r.visibility, "max_participants": r.max_participants,
                   "locked": r.locked, "created_at": _at(r.created_at)} for r in rooms],
        "memberships": [{"room": m.room.slug, "room_name": m.room.name, "role": m.role,
                         "created_at": _at(m.created_at)} for m in memberships],
        "calls": [{"call": p.call_id, "room_name": p.call.room_name, "call_started_at": _at(p.call.started_at),
                   "call_ended_at": _at(p.call.ended_at), "joined_at": _at(p.joined_at), "left_at": _at(p.left_at),
                   "leave_reason": p.leave_reason, "duration_seconds": int(p.duration.total_seconds()),
                   "user_agent": p.user_agent, "reconnects": p.reconnects} for p in participations],
        "rings": rings_of(user),
        "audit_events": [{"action": e.action, "target": e.target, "address": e.address,
                          "created_at": _at(e.created_at), "detail": e.detail} for e in audit],
    }


def rings_of(user) -> list[dict]:
    """The rings the user made or received (people/, looked up by name: accounts sits below it)."""
    if not apps.is_installed("people"):
        return []
    rings = apps.get_model("people", "Ring").objects.filter(Q(caller=user) | Q(callee=user)).order_by("created_at")
    return [{"id": r.pk, "caller": r.caller_name, "callee": r.callee_name, "room_name": r.room_name,
             "outcome": r.state, "created_at": _at(r.created_at), "answered_at": _at(r.answered_at),
             "ended_at": _at(r.ended_at), "call": r.call_id} for r in rings]
