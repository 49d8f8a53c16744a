"""The signaling wire protocol (docs/signaling.md): parse and validate client frames, build server frames.

Every client frame is validated here before the consumer acts on it; anything off the documented shape raises
ProtocolError with one of the documented error codes.
"""

import uuid
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import orjson


class CloseCode(IntEnum):
    """WebSocket close codes of the signaling protocol (docs/signaling.md)."""

    NORMAL = 1000  # the client said goodbye
    GOING_AWAY = 1001  # the client navigated away or closed the tab
    SERVER_ERROR = 1011  # a handler failed: only this socket is closed, and it is logged
    SERVICE_RESTART = 1012  # uvicorn's own close when it stops: resume (another process will take you)
    NOT_AUTHENTICATED = 4401
    FORBIDDEN = 4403  # not allowed to join, or kicked
    NOT_FOUND = 4404  # no such room, or a private room the user does not belong to
    TIMED_OUT = 4408
    ROOM_FULL = 4409
    REPLACED = 4410  # the participation continues on another socket (a resume): do not reconnect
    RESTARTING = 4012  # Parley's close when its server process stops (daphne cannot send 1012): resume at once
    UNAVAILABLE = 4503  # a service the join needs (Redis, to check a ticket) is down: try again shortly
    FLOODING = 4429
    TOO_SLOW = 4413  # the client does not read its frames (unread output over PARLEY_SLOW_BYTES or _SECONDS): resume
    QUOTA_EXCEEDED = 4402  # over the account's quota of calls at once or call minutes (docs/operations.md)


CLEAN_CLOSE_CODES = frozenset({CloseCode.NORMAL, CloseCode.GOING_AWAY})
# The server's own refusals of a client that broke the WebSocket protocol (daphne and uvicorn send these, not
# Parley): a protocol error, invalid UTF-8 in a text frame, a message over PARLEY_WS_MAX_BYTES.
BROKEN_PROTOCOL_CLOSE_CODES = frozenset({1002, 1007, 1009})


class ErrorCode:
    BAD_JSON = "bad-json"
    BAD_MESSAGE = "bad-message"
    UNKNOWN_TYPE = "unknown-type"
    UNKNOWN_PEER = "unknown-peer"
    UNDELIVERABLE = "undeliverable"
    TOO_LARGE = "too-large"
    RATE_LIMITED = "rate-limited"


class ProtocolError(ValueError):
    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


MAX_SDP_CHARS = 60 * 1024
MAX_CANDIDATE_CHARS = 1024
MAX_CHAT_CHARS = 2000  # the page's own limit for a chat message


@dataclass(frozen=True, slots=True)
class Relay:
    """offer, answer or candidate: goes to one peer, as `frame` (the validated object) plus `from`."""

    to: str
    frame: dict


@dataclass(frozen=True, slots=True)
class MediaState:
    audio: bool
    video: bool
    screen: bool


@dataclass(frozen=True, slots=True)
class Ping:
    last_seq: int | None = None  # the last frame the client handled: the server may forget those up to it


@dataclass(frozen=True, slots=True)
class Leave:
    """The person left (the Leave button): the participation ends at once, with no resume window."""


@dataclass(frozen=True, slots=True)
class Stats:
    """A call-quality report about our connection to one remote peer (docs/signaling.md): folded into the
    participation's aggregates by calls.quality, never relayed. Counters are cumulative, as getStats() gives them;
    None where the browser did not report a value."""

    peer: str
    candidate_type: str | None = None
    protocol: str | None = None
    rtt_ms: float | None = None
    jitter_ms: float | None = None
    audio_packets_received: int | None = None
    audio_packets_lost: int | None = None
    video_packets_received: int | None = None
    video_packets_lost: int | None = None
    bitrate_in_kbps: float | None = None
    bitrate_out_kbps: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    freeze_count: int | None = None
    freeze_seconds: float | None = None
    connect_ms: float | None = None
    ice_restarts: int | None = None
    ice_failures: int | None = None


@dataclass(frozen=True, slots=True)
class Chat:
    """A chat message to everyone else in the call, relayed through the signaling socket (docs/signaling.md): the
    SFU mode's chat, where there are no data channels between peers."""

    text: str


ClientMessage = Relay | MediaState | Ping | Leave | Stats | Chat

CANDIDATE_TYPES = frozenset({"host", "srflx", "prflx", "relay"})
TRANSPORTS = frozenset({"udp", "tcp", "tls"})
MAX_COUNTER = 2**31 - 1
# The stats frame's numbers: (key, integer?, upper bound). Every one is optional (null or missing) and >= 0.
STATS_NUMBERS = (
    ("rtt_ms", False, 60_000), ("jitter_ms", False, 60_000),
    ("audio_packets_received", True, MAX_COUNTER), ("audio_packets_lost", True, MAX_COUNTER),
    ("video_packets_received", True, MAX_COUNTER), ("video_packets_lost", True, MAX_COUNTER),
    ("bitrate_in_kbps", False, 1_000_000), ("bitrate_out_kbps", False, 1_000_000),
    ("fps", False, 1000), ("width", True, 16_384), ("height", True, 16_384),
    ("freeze_count", True, MAX_COUNTER), ("freeze_seconds", False, 10**7),
    ("connect_ms", False, 3_600_000), ("ice_restarts", True, 100_000), ("ice_failures", True, 100_000),
)


def decode(text: str) -> dict:
    # orjson: about five times faster than the json module for a frame with an SDP (docs/performance.md). It also
    # refuses what json would have let through to the handlers: nesting over 1,024 levels, NaN, integers over 64
    # bits and lone surrogates (text that no UTF-8 can carry).
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError(ErrorCode.BAD_JSON, "The frame is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "A frame must be a JSON object.")
    return data


def _peer_id(data: dict, known) -> str:
    to = data.get("to")
    if not isinstance(to, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "'to' must be a peer id (string).")
    if to in known:  # a peer the socket already knows of: a dictionary lookup instead of a UUID parse
        return to
    try:
        return str(uuid.UUID(to))
    except ValueError:
        raise ProtocolError(ErrorCode.UNKNOWN_PEER, "'to' is not a peer id.") from None


def _string(data: dict, key: str, limit: int, *, nullable: bool = False) -> str | None:
    value = data.get(key)
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"'{key}' must be a string.")
    if len(value) > limit:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"'{key}' is longer than {limit} characters.")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate from a JSON escape: no text, so nothing to relay
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"'{key}' is not valid Unicode text.") from None
    return value


def _candidate(value: Any) -> dict | None:
    if value is None:
        return None  # end of candidates
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "'candidate' must be an object or null.")
    index = value.get("sdpMLineIndex")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 1024):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "'candidate.sdpMLineIndex' must be a small integer or null.")
    return {
        "candidate": _string(value, "candidate", MAX_CANDIDATE_CHARS),
        "sdpMid": _string(value, "sdpMid", 64, nullable=True),
        "sdpMLineIndex": index,
        "usernameFragment": _string(value, "usernameFragment", 256, nullable=True),
    }


def _stats(data: dict, known_peers) -> Stats:
    peer = data.get("peer")
    if not isinstance(peer, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "'peer' must be a peer id (string).")
    if peer not in known_peers:  # reports are about peers the socket knows of, and nobody else
        raise ProtocolError(ErrorCode.UNKNOWN_PEER, "'peer' is not a peer of this call.")
    values: dict[str, Any] = {"peer": peer}
    for key, choices in (("candidate_type", CANDIDATE_TYPES), ("protocol", TRANSPORTS)):
        value = data.get(key)
        if value is not None and (not isinstance(value, str) or value not in choices):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"'{key}' must be one of {', '.join(sorted(choices))} or null.")
        values[key] = value
    for key, integer, limit in STATS_NUMBERS:
        value = data.get(key)
        if value is None:
            values[key] = None
            continue
        # bool is an int in Python, and JSON's true is no number of packets.
        if type(value) is bool or not isinstance(value, int if integer else (int, float)):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"'{key}' must be {'an integer' if integer else 'a number'}.")
        if not 0 <= value <= limit:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"'{key}' must be between 0 and {limit}.")
        values[key] = value
    return Stats(**values)


def parse_client_message(data: dict, known_peers=()) -> ClientMessage:
    """Validate one decoded frame; unknown keys are ignored and never relayed. `known_peers`: the peer ids (in
    their canonical form) the socket knows of."""
    kind = data.get("type")
    if kind in ("offer", "answer"):
        to = _peer_id(data, known_peers)
        return Relay(to=to, frame={"type": kind, "to": to, "sdp": _string(data, "sdp", MAX_SDP_CHARS)})
    if kind == "candidate":
        if "candidate" not in data:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "'candidate' is required (null ends the candidates).")
        to = _peer_id(data, known_peers)
        return Relay(to=to, frame={"type": kind, "to": to, "candidate": _candidate(data["candidate"])})
    if kind == "media-state":
        flags = [data.get(key) for key in ("audio", "video", "screen")]
        if not all(isinstance(flag, bool) for flag in flags):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "'audio', 'video' and 'screen' must be booleans.")
        return MediaState(*flags)
    if kind == "ping":
        last_seq = data.get("last_seq")
        if last_seq is not None and (type(last_seq) is not int or not 0 <= last_seq < 2**53):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "'last_seq' must be a non-negative integer.")
        return Ping(last_seq)
    if kind == "leave":
        return Leave()
    if kind == "stats":
        return _stats(data, known_peers)
    if kind == "chat":
        text = _string(data, "text", MAX_CHAT_CHARS)
        if not text.strip():
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "'text' must not be empty.")
        return Chat(text)
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "Every frame needs a string 'type'.")
    raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"Unknown frame type {kind[:40]!r}.")


# --- Frames the server builds -----------------------------------------------------------------------


def encode(frame: dict) -> str:
    return orjson.dumps(frame).decode()


def error_frame(code: str, detail: str) -> str:
    return encode({"type": "error", "code": code, "detail": detail})


PONG = encode({"type": "pong"})


def welcome_frame(*, peer_id: str, call_id: int, room, peers: list[dict], ice_servers: list, resume_token: str,
                  resume_seconds: int, replay: str | None = None, media: str = "mesh") -> str:
    """The first frame on a joined socket. `replay` is set on a resume ("complete" or "partial"); `media` is the
    call's ("mesh", or "sfu": sfu.bridge makes it again for a call in SFU mode)."""
    frame = {
        "type": "welcome",
        "peer_id": peer_id,
        "call_id": call_id,
        "room": {"slug": room.slug, "name": room.name},
        "peers": peers,
        "ice_servers": ice_servers,
        "resume_token": resume_token,
        "resume_seconds": resume_seconds,
        "resumed": replay is not None,
        "media": media,
    }
    if replay is not None:
        frame["replay"] = replay
    return encode(frame)


def with_seq(text: str, seq: int) -> str:
    """The frame `text` (an encoded JSON object) with its sequence number for one peer, without decoding it."""
    return f'{{"seq":{seq},{text[1:]}'


def peer_state_frame(*, peer_id: str, state: str) -> str:
    """A peer's signaling is suspended ("reconnecting") or back ("connected"); its media may flow all along."""
    return encode({"type": "peer-state", "peer_id": peer_id, "state": state})


def peer_joined_frame(peer: dict) -> str:
    """`peer` is the newcomer's peer_object; the ones already there play impolite toward it."""
    return encode({"type": "peer-joined", "peer": peer})


def peer_left_frame(*, peer_id: str, reason: str) -> str:
    return encode({"type": "peer-left", "peer_id": peer_id, "reason": reason})


def media_state_frame(*, peer_id: str, state: MediaState) -> str:
    return encode({"type": "media-state", "from": peer_id, "audio": state.audio, "video": state.video,
                   "screen": state.screen})


def chat_frame(*, peer_id: str, text: str) -> str:
    return encode({"type": "chat", "from": peer_id, "text": text})


def user_object(user) -> dict:
    return {"id": user.pk, "username": user.username, "display_name": user.name_shown}


def peer_object(participant, *, polite: bool) -> dict:
    media = None
    if participant.audio is not None:
        media = {"audio": participant.audio, "video": bool(participant.video), "screen": bool(participant.screen)}
    return {"peer_id": str(participant.peer_id), "user": user_object(participant.user), "polite": polite,
            "media": media}
