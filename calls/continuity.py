"""Call continuity: a participation outlives its socket for the resume window (docs/signaling.md, "Resume").

A lost socket suspends its participation; the frames it was last sent and those that arrive while it is away are
kept, and a resume on any server process replays them. Each process beats; the participations of a process that
stops beating (it died) are suspended too, so that they may resume elsewhere.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Sum
from django.db.models.functions import Coalesce, Length
from django.utils import timezone

from calls.models import CallParticipant, RelayNode, ReplayFrame, Room
from calls.services import Joined, Reason, announce_peer_left, hash_resume_token, leave_call, new_resume_token

logger = logging.getLogger(__name__)


def suspend_participation(*, peer_id: str, relay_node: str, reason: str, at: datetime, sent_seq: int,
                          history: list[tuple[int, str]]) -> bool:
    """The socket of `relay_node` is lost but the participation goes on for the resume window: record since
    when and why, and keep the frames the socket was last sent, for a replay wherever it resumes. False if it
    had ended, or resumed on another socket already."""
    with transaction.atomic():
        participant = CallParticipant.objects.select_for_update().filter(
            peer_id=peer_id, relay_node=relay_node, left_at__isnull=True).first()
        if participant is None:
            return False
        if participant.suspended_at is None:
            participant.suspended_at, participant.suspend_reason = at, reason
        participant.sent_seq = sent_seq
        participant.save(update_fields=["suspended_at", "suspend_reason", "sent_seq"])
        ReplayFrame.objects.filter(participant=participant, seq__isnull=False).delete()
        ReplayFrame.objects.bulk_create(ReplayFrame(participant=participant, seq=seq, text=text)
                                        for seq, text in history)
    return True


def is_suspended(*, peer_id: str) -> bool:
    return CallParticipant.objects.live().filter(peer_id=peer_id, suspended_at__isnull=False).exists()


def find_resumable(*, room_slug: str, user, token: str) -> CallParticipant | None:
    """The live participation a resume token stands for, if it is this user's in this room."""
    if not token or len(token) > 200:
        return None
    return CallParticipant.objects.live().filter(
        resume_token_hash=hash_resume_token(token), user=user, call__room__slug=room_slug,
    ).first()


@transaction.atomic
def resume_participation(*, participant_id: int, token: str, relay_node: str, last_seq: int,
                         buffer_frames: int, buffer_bytes: int) -> Joined | None:
    """Move a suspended participation onto a new socket of `relay_node`: rotate the token, count the reconnect,
    and hand back the frames to replay after `last_seq`. None when the token is no longer this
    participation's (it resumed elsewhere meanwhile, or it ended).

    The room row is locked first, as joins lock it: joins and resumes of one call are serialised, so each reads
    where the others are now. Two peers resuming at once after their server was killed each read the other's row
    before the other's commit, pointing at the dead process, and sent it frames that were lost."""
    if not list(Room.objects.select_for_update(of=("self",)).filter(calls__participants__pk=participant_id)
                .values_list("pk")):
        return None
    rows = CallParticipant.objects.select_for_update(of=("self",)).select_related("call__room", "user")
    participant = rows.filter(pk=participant_id, left_at__isnull=True,
                              resume_token_hash=hash_resume_token(token)).first()
    if participant is None:
        return None
    frames, complete = replay_after(participant=participant, last_seq=last_seq, buffer_frames=buffer_frames,
                                    buffer_bytes=buffer_bytes)
    new_token, new_hash = new_resume_token()
    participant.resume_token_hash = new_hash
    participant.relay_node = relay_node
    participant.suspended_at, participant.suspend_reason, participant.sent_seq = None, "", None
    participant.reconnects += 1  # the row is locked: nobody else counts meanwhile
    participant.last_seen_at = timezone.now()
    participant.save(update_fields=["resume_token_hash", "relay_node", "suspended_at", "suspend_reason",
                                    "sent_seq", "reconnects", "last_seen_at"])
    others = list(participant.call.participants.live().exclude(pk=participant.pk).select_related("user")
                  .order_by("joined_at", "id"))
    return Joined(participant=participant, others=others, resume_token=new_token,
                  replay="complete" if complete else "partial", frames=frames)


def replay_after(*, participant: CallParticipant, last_seq: int, buffer_frames: int,
                 buffer_bytes: int) -> tuple[list[tuple[int | None, str]], bool]:
    """The kept frames the peer has not seen (seq > last_seq, then those that came while it was away), the
    newest `buffer_frames` within `buffer_bytes`, and whether that is everything it missed."""
    kept = list(participant.replay_frames.order_by("id").values_list("seq", "text"))
    ReplayFrame.objects.filter(participant=participant).delete()
    sent = [(seq, text) for seq, text in kept if seq is not None and seq > last_seq]
    arrived = [(None, text) for seq, text in kept if seq is None]
    # Complete only if the old socket's last frames were kept (its process did not die) and reach back to
    # the first frame the peer missed.
    complete = participant.sent_seq is not None and (
        participant.sent_seq <= last_seq or (bool(sent) and sent[0][0] == last_seq + 1))
    frames = sent + arrived
    total, start = 0, len(frames)
    while start > 0 and len(frames) - start < buffer_frames and total + len(frames[start - 1][1]) <= buffer_bytes:
        start -= 1
        total += len(frames[start][1])
    return frames[start:], complete and start == 0


KEPT_FULL = "-"  # route_or_keep: the peer is suspended and has as many frames kept as it may have


def route_or_keep(*, peer_id: str, text: str) -> str | None:
    """A frame for a peer that is not where its sender thought: keep it for the replay if the participation is
    suspended (returns ""; KEPT_FULL once the frames kept since it went reach PARLEY_RESUME_BUFFER or
    _BUFFER_BYTES: the sender is told, rather than the database filling up), or say where it is now (its relay
    node). None if it has left."""
    with transaction.atomic():
        # Locked, as a resume locks it: a frame kept after the resume read the kept ones would be lost.
        participant = CallParticipant.objects.select_for_update().live().filter(peer_id=peer_id).only(
            "pk", "suspended_at", "relay_node").first()
        if participant is None:
            return None
        if participant.suspended_at is not None:
            limits = settings.PARLEY_SIGNALING
            # Frames that arrived while it was away (seq null), not the old socket's last ones kept beside them.
            kept = ReplayFrame.objects.filter(participant=participant, seq__isnull=True).aggregate(
                frames=Count("pk"), size=Coalesce(Sum(Length("text")), 0))
            if kept["frames"] >= limits["RESUME_BUFFER"] or kept["size"] + len(text) > limits["RESUME_BUFFER_BYTES"]:
                return KEPT_FULL
            ReplayFrame.objects.create(participant=participant, text=text)
            return ""
        return participant.relay_node


def find_peer(*, call_id: int, peer_id: str) -> CallParticipant | None:
    """A live participant of the call that a socket had not heard of (its join was announced while the channel
    layer was down): where to reach it."""
    return CallParticipant.objects.live().filter(call_id=call_id, peer_id=peer_id).first()


def expire_suspended(*, now: datetime | None = None) -> int:
    """End the participations whose resume window ran out: the leave is dated when the connection was lost and
    the others are told. Returns how many ended."""
    now = now or timezone.now()
    window = timedelta(seconds=settings.PARLEY_SIGNALING["RESUME_SECONDS"])
    expired = CallParticipant.objects.live().filter(suspended_at__lt=now - window)
    ended = 0
    for participant in expired.only("peer_id", "call_id", "suspended_at", "suspend_reason"):
        reason = participant.suspend_reason or Reason.DISCONNECTED
        if leave_call(peer_id=participant.peer_id, reason=reason, at=participant.suspended_at,
                      only_suspended_since=participant.suspended_at):
            ended += 1
            announce_peer_left(call_id=participant.call_id, peer_id=str(participant.peer_id), reason=reason)
    return ended


# --- Server processes --------------------------------------------------------------------------------


def beat_node(*, channel: str) -> None:
    """This process is alive."""
    RelayNode.objects.update_or_create(channel=channel, defaults={"beat_at": timezone.now()})


def live_nodes_and_suspend_dead(*, timeout: float, now: datetime | None = None) -> set[str]:
    """The channels of the processes that beat within `timeout` seconds. The participants of processes that
    stopped beating are suspended since their last beat, so that they may resume elsewhere."""
    now = now or timezone.now()
    nodes = dict(RelayNode.objects.values_list("channel", "beat_at"))
    dead = {channel: beat for channel, beat in nodes.items() if beat < now - timedelta(seconds=timeout)}
    for channel, beat in dead.items():
        suspended = CallParticipant.objects.live().filter(relay_node=channel, suspended_at__isnull=True).update(
            suspended_at=beat, suspend_reason=Reason.TIMED_OUT, sent_seq=None)
        RelayNode.objects.filter(channel=channel, beat_at=beat).delete()
        logger.warning("relay node %s stopped beating at %s: %d participant(s) suspended", channel, beat,
                       suspended)
    return set(nodes) - set(dead)
