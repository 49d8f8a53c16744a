"""An asyncio client of Janus's WebSocket API and of its VideoRoom plugin, for Parley's SFU mode (docs/sfu.md).

One `JanusConnection` (one WebSocket, subprotocol `janus-protocol`) carries any number of sessions and handles. Every
request carries a transaction; its answer comes back with the same transaction: `success` or `error` at once, `ack`
then `event` for the plugin's asynchronous requests (join, publish, start, ...). Events without a pending transaction
(a publisher came or went, `webrtcup`, `hangup`, ...) go to the queue of the handle that sent them.

The VideoRoom functions below are the few requests Parley makes, each with the room's secret or pin: Parley creates
the rooms (with the plugin's admin key) and is the only client of Janus's API; browsers see its media ports only.
"""

import asyncio
import json
import logging
import secrets
from contextlib import suppress
from dataclasses import dataclass, field

import websockets

logger = logging.getLogger(__name__)

VIDEOROOM = "janus.plugin.videoroom"
KEEPALIVE_SECONDS = 25  # Janus's session_timeout is 60 s by default


class JanusError(Exception):
    """Janus, or its VideoRoom plugin, refused a request (`code` is Janus's numeric error code), or the connection to
    Janus is gone (`code` 0)."""

    def __init__(self, code: int, reason: str):
        super().__init__(f"{reason} (Janus error {code})")
        self.code = code
        self.reason = reason


def _transaction() -> str:
    return secrets.token_hex(8)


class JanusConnection:
    def __init__(self, url: str, *, api_secret: str = "", admin_key: str = "", timeout: float = 10.0):
        self.url = url
        self.api_secret = api_secret
        self.admin_key = admin_key
        self.timeout = timeout
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._pending: dict[str, tuple[asyncio.Future, bool]] = {}  # transaction -> (answer, wait past the ack)
        self._handles: dict[int, "JanusHandle"] = {}
        self._sessions: dict[int, "JanusSession"] = {}
        self.closed = asyncio.Event()

    @classmethod
    async def open(cls, url: str, **options) -> "JanusConnection":
        connection = cls(url, **options)
        try:
            connection._ws = await websockets.connect(url, subprotocols=["janus-protocol"],
                                                      open_timeout=connection.timeout, max_size=4 * 2**20)
        except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake) as error:
            raise JanusError(0, f"Janus at {url} is unreachable: {error}") from error
        connection._reader = asyncio.create_task(connection._read(), name="janus-reader")
        return connection

    async def close(self) -> None:
        for session in list(self._sessions.values()):
            await session.stop_keepalive()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with suppress(asyncio.CancelledError):
                await self._reader

    async def __aenter__(self) -> "JanusConnection":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def info(self) -> dict:
        return await self.request({"janus": "info"})

    async def request(self, message: dict, *, past_ack: bool = False) -> dict:
        """Send `message` with a new transaction and the API secret; the answer (`success`, `ack`, or with `past_ack`
        the `event` after the ack). A Janus `error` raises JanusError."""
        if self.closed.is_set():
            raise JanusError(0, "the connection to Janus is closed")
        transaction = _transaction()
        answer = asyncio.get_running_loop().create_future()
        self._pending[transaction] = (answer, past_ack)
        message = {**message, "transaction": transaction}
        if self.api_secret:
            message["apisecret"] = self.api_secret
        try:
            await self._ws.send(json.dumps(message))
            reply = await asyncio.wait_for(answer, self.timeout)
        except websockets.ConnectionClosed as error:
            raise JanusError(0, "the connection to Janus is closed") from error
        except asyncio.TimeoutError:
            raise JanusError(0, f"Janus did not answer {message['janus']} within {self.timeout} s") from None
        finally:
            self._pending.pop(transaction, None)
        if reply.get("janus") == "error":
            error = reply.get("error") or {}
            raise JanusError(error.get("code", -1), error.get("reason", "unknown error"))
        return reply

    async def create_session(self) -> "JanusSession":
        reply = await self.request({"janus": "create"})
        session = JanusSession(self, reply["data"]["id"])
        self._sessions[session.id] = session
        session.start_keepalive()
        return session

    async def _read(self) -> None:
        try:
            async for text in self._ws:
                try:
                    self._dispatch(json.loads(text))
                except Exception:  # one bad message must not stop the reader of every call
                    logger.exception("Janus message not understood: %.300s", text)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()
            for answer, _ in self._pending.values():
                if not answer.done():
                    answer.set_exception(JanusError(0, "the connection to Janus is closed"))
            for handle in self._handles.values():
                handle.events.put_nowait({"janus": "closed"})

    def _dispatch(self, message: dict) -> None:
        kind = message.get("janus")
        pending = self._pending.get(message.get("transaction") or "")
        if pending is not None:
            answer, past_ack = pending
            if not (past_ack and kind == "ack") and not answer.done():
                answer.set_result(message)
                return
            if kind == "ack":
                return
        handle = self._handles.get(message.get("sender"))
        if handle is not None:
            handle.events.put_nowait(message)
        elif kind not in {"ack", "keepalive"}:
            logger.debug("Janus message for no handle: %.300s", message)


@dataclass(eq=False)
class JanusSession:
    connection: JanusConnection
    id: int
    _keepalive: asyncio.Task | None = None

    def start_keepalive(self) -> None:
        self._keepalive = asyncio.create_task(self._keep_alive(), name=f"janus-keepalive-{self.id}")

    async def stop_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            with suppress(asyncio.CancelledError):
                await self._keepalive
            self._keepalive = None

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_SECONDS)
            try:
                await self.keepalive()
            except JanusError as error:
                logger.warning("Janus session %s: keepalive failed: %s", self.id, error)
                if error.code == 0:
                    return

    async def keepalive(self) -> None:
        await self.connection.request({"janus": "keepalive", "session_id": self.id})

    async def attach(self, plugin: str = VIDEOROOM) -> "JanusHandle":
        reply = await self.connection.request({"janus": "attach", "session_id": self.id, "plugin": plugin})
        handle = JanusHandle(self, reply["data"]["id"])
        self.connection._handles[handle.id] = handle
        return handle

    async def destroy(self) -> None:
        """Destroy the session and with it its handles (Janus closes their PeerConnections)."""
        await self.stop_keepalive()
        self.connection._sessions.pop(self.id, None)
        for handle_id in [h for h, handle in self.connection._handles.items() if handle.session is self]:
            self.connection._handles.pop(handle_id, None)
        with suppress(JanusError):
            await self.connection.request({"janus": "destroy", "session_id": self.id})


@dataclass(eq=False)
class JanusHandle:
    session: JanusSession
    id: int
    events: asyncio.Queue = field(default_factory=asyncio.Queue)

    async def message(self, body: dict, jsep: dict | None = None) -> tuple[dict, dict | None]:
        """A plugin request: its answer's plugin data and jsep (an SDP), synchronous or asynchronous alike. The
        plugin's own refusals (`error_code`) raise JanusError."""
        request = {"janus": "message", "session_id": self.session.id, "handle_id": self.id, "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        reply = await self.session.connection.request(request, past_ack=True)
        data = (reply.get("plugindata") or {}).get("data") or {}
        if "error_code" in data:
            raise JanusError(data.get("error_code", -1), data.get("error", "unknown error"))
        return data, reply.get("jsep")

    async def trickle(self, candidate: dict | None) -> None:
        """One ICE candidate (`{"candidate", "sdpMid", "sdpMLineIndex"}`), or None: gathering is complete."""
        await self.session.connection.request({
            "janus": "trickle", "session_id": self.session.id, "handle_id": self.id,
            "candidate": candidate if candidate else {"completed": True}})

    async def hangup(self) -> None:
        with suppress(JanusError):
            await self.session.connection.request(
                {"janus": "hangup", "session_id": self.session.id, "handle_id": self.id})

    async def detach(self) -> None:
        self.session.connection._handles.pop(self.id, None)
        with suppress(JanusError):
            await self.session.connection.request(
                {"janus": "detach", "session_id": self.session.id, "handle_id": self.id})

    async def next_event(self, timeout: float | None = None) -> dict:
        return await asyncio.wait_for(self.events.get(), timeout)


# --- The VideoRoom requests Parley makes ----------------------------------------------------------------------------

@dataclass(frozen=True)
class RoomKeys:
    """A Janus room's number and the two secrets Parley keeps from the clients: `secret` (destroy, kick) and `pin`
    (join)."""

    room: int
    secret: str
    pin: str

    @classmethod
    def generate(cls) -> "RoomKeys":
        return cls(room=secrets.randbelow(2**52) + 1, secret=secrets.token_urlsafe(24), pin=secrets.token_urlsafe(24))


async def create_room(handle: JanusHandle, *, keys: RoomKeys, publishers: int, description: str = "",
                      bitrate: int = 1_000_000) -> None:
    """A private (unlisted), temporary room, VP8 and Opus (what every browser and aiortc speak)."""
    body = {"request": "create", "room": keys.room, "secret": keys.secret, "pin": keys.pin,
            "publishers": publishers, "is_private": True, "permanent": False, "description": description[:100],
            "audiocodec": "opus", "videocodec": "vp8", "bitrate": bitrate, "fir_freq": 10,
            "notify_joining": False}
    admin_key = handle.session.connection.admin_key
    if admin_key:
        body["admin_key"] = admin_key
    await handle.message(body)


async def destroy_room(handle: JanusHandle, *, keys: RoomKeys) -> None:
    await handle.message({"request": "destroy", "room": keys.room, "secret": keys.secret, "permanent": False})


async def room_exists(handle: JanusHandle, *, room: int) -> bool:
    data, _ = await handle.message({"request": "exists", "room": room})
    return bool(data.get("exists"))


async def join_as_publisher(handle: JanusHandle, *, keys: RoomKeys, display: str, feed: int | None = None) -> dict:
    """Join the room as a publisher (not yet sending): Janus's `joined` data, with `id` (the feed), `private_id` and
    the `publishers` already there."""
    body = {"request": "join", "ptype": "publisher", "room": keys.room, "pin": keys.pin, "display": display}
    if feed is not None:
        body["id"] = feed
    data, _ = await handle.message(body)
    return data


async def publish(handle: JanusHandle, *, sdp: str) -> str:
    """The publisher's offer; Janus's answer."""
    _, jsep = await handle.message({"request": "publish"}, jsep={"type": "offer", "sdp": sdp})
    if not jsep or jsep.get("type") != "answer":
        raise JanusError(-1, "Janus answered a publish without an SDP answer")
    return jsep["sdp"]


async def configure(handle: JanusHandle, *, sdp: str) -> str:
    """A publisher's renegotiation (an ICE restart, a track added): its new offer, Janus's answer."""
    _, jsep = await handle.message({"request": "configure"}, jsep={"type": "offer", "sdp": sdp})
    if not jsep or jsep.get("type") != "answer":
        raise JanusError(-1, "Janus answered a configure without an SDP answer")
    return jsep["sdp"]


async def join_as_subscriber(handle: JanusHandle, *, keys: RoomKeys, feeds: list[int],
                             private_id: int | None = None) -> tuple[list[dict], str]:
    """Subscribe to every stream of `feeds`: Janus's `streams` (mid, type, feed_id, ...) and its offer."""
    body = {"request": "join", "ptype": "subscriber", "room": keys.room, "pin": keys.pin,
            "streams": [{"feed": feed} for feed in feeds]}
    if private_id is not None:
        body["private_id"] = private_id
    data, jsep = await handle.message(body)
    if not jsep or jsep.get("type") != "offer":
        raise JanusError(-1, "Janus attached a subscriber without an SDP offer")
    return data.get("streams", []), jsep["sdp"]


async def start(handle: JanusHandle, *, sdp: str) -> None:
    """The subscriber's answer to Janus's offer."""
    await handle.message({"request": "start"}, jsep={"type": "answer", "sdp": sdp})


async def update_subscription(handle: JanusHandle, *, subscribe: list[int] = (), unsubscribe: list[int] = ()
                              ) -> tuple[list[dict], str | None]:
    """Add and remove feeds of a subscription: the new `streams` and Janus's new offer (None: nothing changed)."""
    body = {"request": "update"}  # Janus refuses an empty list: only the non-empty ones are sent
    if subscribe:
        body["subscribe"] = [{"feed": feed} for feed in subscribe]
    if unsubscribe:
        body["unsubscribe"] = [{"feed": feed} for feed in unsubscribe]
    data, jsep = await handle.message(body)
    return data.get("streams", []), (jsep or {}).get("sdp")


async def leave(handle: JanusHandle) -> None:
    with suppress(JanusError):
        await handle.message({"request": "leave"})
