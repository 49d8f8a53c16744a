"""What the admin's "Live now" page shows (docs/operations.md "Live now"): every live call with its participants,
where each is served, how it connects and how good its media is so far. The page and its JSON view
(static/js/admin-live.js polls it) render the same snapshot."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Prefetch
from django.urls import reverse
from django.utils import timezone
from django.utils.dateformat import format as format_date

from calls import quality
from calls.models import Call, CallParticipant, RelayNode, format_duration


def shown(moment: datetime) -> str:
    """A time as the admin shows it, in the current time zone."""
    return format_date(timezone.localtime(moment), "Y-m-d H:i:s")


def quality_of(rows: list) -> dict:
    """The participation's quality so far, over its reports about every remote peer (calls/quality.py)."""
    summary = quality.summary(rows)
    if summary is None:
        return {"verdict": "no reports", "poor": False, "mos": None, "reasons": [], "text": "no reports"}
    reasons = [reason for row in rows for reason in quality.poor_reasons(row)]
    mos = None if summary.mos_mean is None else round(summary.mos_mean, 2)
    verdict = "poor" if reasons else "good"
    text = verdict + ("" if mos is None else f" (MOS {mos:.2f})") + (f": {', '.join(reasons)}" if reasons else "")
    return {"verdict": verdict, "poor": bool(reasons), "mos": mos, "reasons": reasons, "text": text}


def participant_data(participant: CallParticipant, *, live_nodes: set[str]) -> dict:
    rows = list(participant.quality.all())
    connection = ", ".join(sorted({f"{r.candidate_type}/{r.protocol}" if r.protocol else r.candidate_type
                                   for r in rows if r.candidate_type}))
    reconnecting = participant.suspended_at is not None
    return {
        "peer_id": str(participant.peer_id),
        "name": participant.name_shown,
        "username": participant.user.username if participant.user_id else "",
        "joined_at": participant.joined_at.isoformat(),
        "joined": shown(participant.joined_at),
        "server": participant.relay_node,
        "server_alive": participant.relay_node in live_nodes,
        "connection": connection,
        "relay": any(r.candidate_type == "relay" for r in rows),
        "quality": quality_of(rows),
        "state": "reconnecting" if reconnecting else "connected",
        "reconnecting_since": shown(participant.suspended_at) if reconnecting else "",
        "reconnects": participant.reconnects,
        "kick_url": reverse("admin:calls_call_live_kick", kwargs={"peer_id": participant.peer_id}),
    }


def live_calls(*, now: datetime | None = None) -> dict:
    """Every live call, newest first, with its live participants in join order (4 queries, however many)."""
    now = now or timezone.now()
    participants = CallParticipant.objects.live().select_related("user").prefetch_related("quality")
    # A call with a Janus room (sfu.JanusRoom, by its relation's name: calls does not import the sfu app) is in
    # SFU mode (docs/sfu.md); any other call is a mesh.
    calls = (Call.objects.live().select_related("room").annotate(janus_rooms=Count("janus_room"))
             .order_by("-started_at", "-pk")
             .prefetch_related(Prefetch("participants", queryset=participants, to_attr="live_participants")))
    beat_since = now - timedelta(seconds=settings.PARLEY_SIGNALING["NODE_TIMEOUT"])
    live_nodes = set(RelayNode.objects.filter(beat_at__gte=beat_since).values_list("channel", flat=True))
    shown_calls = []
    for call in calls:
        people = [participant_data(p, live_nodes=live_nodes) for p in call.live_participants]
        shown_calls.append({
            "id": call.pk,
            "room": call.room_name,
            "room_slug": call.room.slug if call.room else "",
            "started_at": call.started_at.isoformat(),
            "started": shown(call.started_at),
            "duration": format_duration(now - call.started_at),
            "media": "sfu" if call.janus_rooms else "mesh",
            "participants": people,
            "reconnecting": sum(p["state"] == "reconnecting" for p in people),
            "admin_url": reverse("admin:calls_call_change", args=[call.pk]),
            "end_url": reverse("admin:calls_call_live_end", kwargs={"call_id": call.pk}),
        })
    return {
        "generated_at": now.isoformat(),
        "generated": shown(now),
        "calls": shown_calls,
        "participant_count": sum(len(c["participants"]) for c in shown_calls),
    }
