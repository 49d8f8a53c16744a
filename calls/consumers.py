"""The signaling consumer: authenticate, authorise, validate, relay and record. It never reads SDP."""

import asyncio
import logging
import uuid
from collections import deque
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from accounts import audit
from calls import announcements, continuity, liveness, metrics, protocol, quality, services, tickets
from calls.db_threads import in_db_thread
from calls.ice import ice_servers_for
from calls.outgoing import QueuedSender
from calls.protocol import CloseCode, ErrorCode, ProtocolError
from calls.relay import Item
from calls.services import Joined, JoinRefused, Reason
from sfu import bridge as sfu_bridge

logger = logging.getLogger(__name__)

# The close reason of a socket whose participation was resumed on another one (4410 too, but nothing is
# recorded or announced: the participation goes on). A 4410 with reason "replaced" is a newer join's doing.
HANDED_OVER = "resumed elsewhere"



class TokenBucket:
    """Frames per second with a burst allowance; tracks how long the client has been flooding."""

    __slots__ = ("rate", "burst", "tokens", "updated", "limited_since")

    def __init__(self, rate: float, burst: int, now: float):
        self.rate, self.burst, self.tokens, self.updated = rate, burst, float(burst), now
        self.limited_since: float | None = None

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            # The flood ends once the client kept under the rate long enough to refill half its burst: the token
            # that trickles in now and then during a flood (or after a pause of the server) does not end it.
            if self.limited_since is not None and self.tokens >= self.burst / 2:
                self.limited_since = None
            self.tokens -= 1
            return True
        if self.limited_since is None:
            self.limited_since = now
        return False


class SentFrames:
    """The frames last sent on a socket, kept for a replay should its client resume: until the client says it
    handled them (the `last_seq` of its pings), for at most `seconds` (a client notices a dead socket sooner), and
    within `count` frames and `size` characters. An idle socket keeps nothing."""

    __slots__ = ("frames", "size", "count_limit", "size_limit", "seconds")

    def __init__(self, *, count: int, size: int, seconds: float):
        self.frames: deque[tuple[int, str, float]] = deque()
        self.size = 0
        self.count_limit, self.size_limit, self.seconds = count, size, seconds

    def add(self, seq: int, text: str, now: float) -> None:
        frames = self.frames
        frames.append((seq, text, now))
        self.size += len(text)
        if len(frames) > self.count_limit or self.size > self.size_limit or frames[0][2] < now - self.seconds:
            self.forget(now=now)

    def forget(self, *, now: float, handled: int = 0) -> None:
        """Drop what the client handled (seq <= `handled`), what is too old, and what is over the limits."""
        frames, oldest = self.frames, now - self.seconds
        while frames and (frames[0][0] <= handled or frames[0][2] < oldest or len(frames) > self.count_limit
                          or self.size > self.size_limit):
            self.size -= len(frames.popleft()[1])

    def kept(self) -> list[tuple[int, str]]:
        return [(seq, text) for seq, text, _sent in self.frames]


class Unacknowledged:
    """How much of what we sent the client has not acknowledged (the `last_seq` of its pings), and since when:
    a client that stopped reading stops acknowledging. Counted in checkpoints (a few per second, or per 16 KiB),
    not per frame, so that a stuck client costs little to watch. Only clients that acknowledge are watched."""

    __slots__ = ("checkpoints", "sent", "acked")

    STEP_SECONDS, STEP_BYTES = 0.1, 16 * 1024

    def __init__(self):
        self.checkpoints: deque[list] = deque()  # [last seq, bytes sent up to it, when its first frame went]
        self.sent = 0  # bytes of numbered frames sent
        self.acked = 0  # of which the client acknowledged

    def add(self, seq: int, size: int, now: float) -> None:
        self.sent += size
        last = self.checkpoints[-1] if self.checkpoints else None
        if last is None or now - last[2] > self.STEP_SECONDS or self.sent - last[1] > self.STEP_BYTES:
            self.checkpoints.append([seq, self.sent, now])
        else:
            last[0], last[1] = seq, self.sent

    def ack(self, seq: int) -> None:
        checkpoints = self.checkpoints
        while checkpoints and checkpoints[0][0] <= seq:
            self.acked = checkpoints.popleft()[1]

    def bytes(self) -> int:
        return self.sent - self.acked

    def since(self) -> float | None:
        return self.checkpoints[0][2] if self.checkpoints else None


class SignalingConsumer(QueuedSender, AsyncWebsocketConsumer):
    """One socket of one participation. A lost socket suspends the participation instead of ending it: the
    others see `peer-state: reconnecting`, frames for it are kept, and a resume (on any process) picks it up."""

    # Connections talk through calls.relay (one channel per process), not through a channel each.
    channel_layer_alias = "parley.none"

    peer_id = ""
    joined = False
    counted = False  # in the open-sockets gauge
    relay_count = 0  # frames relayed: one in metrics.RELAY_SAMPLE_EVERY is timed
    changes: tuple | list = ()  # the join's calls.announcements, told after the welcome
    audit_user = None  # who authenticated (a ticket's user), for the audit events of refusals and closes

    async def __call__(self, scope, receive, send):
        # Channels' own loop (await_many_dispatch) makes a task and an asyncio.wait for every message, to listen
        # to the channel layer too; this socket has no channel of its own (the relay node has one per process), so
        # one source of messages, read in a plain loop.
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        except asyncio.CancelledError:
            # daphne cancels every connection when it shuts down: a restart, resumable on another process.
            self.uncount()
            self.stop_writer()
            await self.suspend(Reason.SERVER_SHUTDOWN)
            raise

    async def dispatch(self, message):
        # Channels runs close_old_connections() through its one thread-sensitive executor before every handler:
        # every join and leave of the process would queue on that one thread. This consumer's database work runs
        # in calls.db_threads, whose calls close stale connections themselves, and relayed frames touch no database.
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
        else:  # connect or disconnect: the socket has no channel of its own, so nothing else arrives
            await getattr(self, get_handler_name(message))(message)

    # --- joining and resuming ------------------------------------------------------------------------

    async def connect(self):
        await self.accept()  # first, so that a refusal can carry its close code
        metrics.ROOM_SOCKETS.inc()
        self.counted = True
        limits = settings.PARLEY_SIGNALING
        self.limits = limits
        self.max_frame_bytes = limits["MAX_FRAME_BYTES"]
        self.flood_grace = limits["FLOOD_GRACE_SECONDS"]
        self.loop = asyncio.get_running_loop()
        self.last_heard = self.loop.time()
        self.bucket = TokenBucket(limits["RATE_PER_SECOND"], limits["RATE_BURST"], self.last_heard)
        self.peers: dict[str, str] = {}  # peer id -> relay node ("" while it is suspended), for every other peer
        self.peer_sockets: dict[str, int] = {}  # peer id -> the latest of its sockets heard of (its reconnects)
        self.socket_number = 0  # ours: how many times our participation had resumed when this socket joined
        self.pending: list | None = []  # items relayed to us before our welcome went out
        self.seq = 0  # the last sequence number sent to the client
        self.sent = SentFrames(count=limits["RESUME_BUFFER"], size=limits["RESUME_BUFFER_BYTES"],
                               seconds=limits["RESUME_SECONDS"])
        self.room_slug = self.scope["url_route"]["kwargs"]["slug"]
        self.unacked: Unacknowledged | None = None  # from the client's first acknowledgement on
        self.stats_heard: dict[str, float] = {}  # remote peer id -> when its last stats frame was taken

        if not self.scope.get("origin_allowed", True):
            await self.refuse(CloseCode.FORBIDDEN, "origin not allowed")
            return
        self.node = await liveness.get_node()
        if self.node.joining >= limits["MAX_JOINING"]:
            # Not audited and no database work: shedding a storm must cost next to nothing.
            metrics.JOINS_SHED.inc()
            await self.close(code=CloseCode.UNAVAILABLE, reason="busy")
            return
        self.node.joining += 1
        try:
            await self.join_or_resume()
        finally:
            self.node.joining -= 1

    async def join_or_resume(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        ticket, token = query.get("ticket", [""])[0], query.get("resume", [""])[0]
        try:
            if token:
                user, candidate = await in_db_thread(self.find_resumable)(ticket, token)
                joined = await self.resume(candidate, token, last_seq(query)) or await self.join(user=user)
            else:
                joined = await self.join(ticket=ticket)  # authenticated in the same trip to the database
        except JoinRefused as refusal:
            self.node.forget(self)
            await self.refuse(refusal.close_code, str(refusal))
            return
        if not await sfu_bridge.on_join(self, joined):  # SFU mode (docs/sfu.md): the welcome's "media"
            return
        await self.welcome(joined)
        announcements.batcher().submit(self.changes)
        await sfu_bridge.after_welcome(self)
        metrics.JOIN_SECONDS.observe(self.loop.time() - self.last_heard)  # last_heard: when the socket opened

    async def join(self, *, ticket: str = "", user=None) -> Joined:
        self.peer_id = str(uuid.uuid4())
        self.node.register(self)  # before the row exists, so no frame for us can miss us
        joined, self.welcome_text, self.changes = await in_db_thread(self.enter_call)(ticket=ticket, user=user)
        return joined

    def enter_call(self, *, ticket: str, user) -> tuple[Joined, str, list[announcements.CallChange]]:
        """Authenticate (unless a resume did), join the call and build our welcome, in one trip to a database
        thread. The join's announcements (presence, live rooms) wait until our welcome is out."""
        with announcements.collected() as changes:
            user = user or self.authenticate(ticket)
            joined = services.join_call(room_slug=self.room_slug, user=user, peer_id=self.peer_id,
                                        relay_node=self.node.channel, user_agent=self.header(b"user-agent"))
        return joined, self.welcome_frame(joined), changes

    def find_resumable(self, ticket: str, token: str):
        """Authenticate, and find the participation `token` stands for (or None), in one trip to a database thread."""
        user = self.authenticate(ticket)
        return user, continuity.find_resumable(room_slug=self.room_slug, user=user, token=token)

    async def resume(self, candidate, token: str, last_seq: int) -> Joined | None:
        """Take over the participation `token` stands for; None if it cannot be resumed (then we join afresh)."""
        if candidate is None:
            return None
        if candidate.suspended_at is None:
            # Its old socket may still be open (half-open): close it, which suspends it, and keep its frames.
            old = Item.close(str(candidate.peer_id), code=CloseCode.REPLACED, reason=HANDED_OVER)
            await self.node.deliver(node=candidate.relay_node, item=old)
            await self.until_suspended(str(candidate.peer_id))
        self.peer_id = str(candidate.peer_id)
        self.node.register(self)
        joined = await in_db_thread(self.resume_call)(candidate.pk, token, last_seq)
        if joined is None:  # resumed elsewhere meanwhile
            self.node.forget(self)
            return None
        self.seq = max(last_seq, candidate.sent_seq or 0)
        metrics.RESUMES.inc()
        return joined

    def resume_call(self, participant_id: int, token: str, last_seq: int) -> Joined | None:
        joined = continuity.resume_participation(
            participant_id=participant_id, token=token, relay_node=self.node.channel, last_seq=last_seq,
            buffer_frames=self.limits["RESUME_BUFFER"], buffer_bytes=self.limits["RESUME_BUFFER_BYTES"])
        if joined is not None:
            self.welcome_text = self.welcome_frame(joined)
        return joined

    async def until_suspended(self, peer_id: str) -> None:
        """Wait (briefly) for the old socket's process to record the suspension; a dead process never will."""
        deadline = self.loop.time() + self.limits["HANDOVER_SECONDS"]
        while self.loop.time() < deadline:
            if await in_db_thread(continuity.is_suspended)(peer_id=peer_id):
                return
            await asyncio.sleep(0.05)

    def authenticate(self, ticket: str):
        if ticket:
            try:
                user = tickets.redeem_ticket(ticket=ticket, room_slug=self.room_slug)
            except Exception:  # the cache (Redis) is down: the ticket cannot be checked
                logger.exception("signaling: a ticket could not be redeemed")
                raise JoinRefused(CloseCode.UNAVAILABLE, "Try again in a moment.") from None
        else:
            user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            raise JoinRefused(CloseCode.NOT_AUTHENTICATED, "Not authenticated.")
        self.audit_user = user
        return user

    def welcome_frame(self, joined: Joined) -> str:
        participant = joined.participant
        return protocol.welcome_frame(
            peer_id=self.peer_id, call_id=participant.call_id, room=participant.call.room,
            peers=services.peer_objects(me=participant, others=joined.others),
            ice_servers=ice_servers_for(participant.user), resume_token=joined.resume_token,
            resume_seconds=self.limits["RESUME_SECONDS"], replay=joined.replay)

    async def welcome(self, joined: Joined) -> None:
        """Send the welcome and any replay, then tell the others we are here (again)."""
        self.joined = True
        self.call_id = joined.participant.call_id
        self.socket_number = joined.participant.reconnects
        self.peer_sockets = {str(p.peer_id): p.reconnects for p in joined.others}
        self.peers = {str(p.peer_id): "" if p.suspended_at else p.relay_node for p in joined.others}
        # Everything we send goes through a queue and this socket's own writer (calls.outgoing): a client that
        # stops reading holds up nobody else, and is closed once its unread output passes the limits.
        self.start_writer(slow_bytes=self.limits["SLOW_BYTES"], slow_seconds=self.limits["SLOW_SECONDS"],
                          name=f"signaling-writer-{self.peer_id}")
        self.push(self.welcome_text)
        for seq, text in joined.frames:
            if seq is None:
                self.send_numbered(text)
            else:
                self.remember(seq, text)
                self.push(text)
        pending, self.pending = self.pending, None
        for item in pending:
            await self.relayed(item)
        if joined.replay is None:
            text = protocol.peer_joined_frame(protocol.peer_object(joined.participant, polite=False))
            items = [Item.joined(peer_id, text, node=self.node.channel, peer_id=self.peer_id)
                     for peer_id in self.peers]
        else:
            text = protocol.peer_state_frame(peer_id=self.peer_id, state="connected")
            items = [Item.state(peer_id, text, node=self.node.channel, peer_id=self.peer_id, state="connected",
                                socket=self.socket_number)
                     for peer_id in self.peers]
        for item in items:
            await self.send_to_peer(item)

    async def close(self, code=None, reason=None):
        await self.drain()  # what was queued goes out first
        self.stop_writer()
        # daphne's WebSocket library takes a plain int only: a CloseCode member would become 1011.
        await super().close(code=None if code is None else int(code), reason=reason)

    async def refuse(self, code: int, reason: str) -> None:
        logger.info("signaling refused for %s: %s (%s)", self.scope.get("path"), reason, code)
        await self.record_audit(audit.Action.JOIN_REFUSED, code, reason)
        await self.close(code=code, reason=reason)

    async def record_audit(self, action: str, code: int, reason: str, **detail) -> None:
        """An audit event of a refusal or a close (never of an accepted frame), in a database thread; a failure to
        write it is logged and changes nothing."""
        try:
            await in_db_thread(audit.record_socket)(action, scope=self.scope, user=self.audit_user, code=code,
                                                    reason=reason, **detail)
        except Exception:
            logger.exception("signaling: could not audit %s in %s", action, self.room_slug)

    def header(self, name: bytes) -> str:
        for key, value in self.scope.get("headers", ()):
            if key == name:
                return value.decode("latin-1")
        return ""

    # --- frames from the client ----------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        if not self.joined:
            return
        now = self.loop.time()
        self.last_heard = now
        if not self.bucket.take(now):
            metrics.FRAME_LIMIT.inc()
            if now - self.bucket.limited_since >= self.flood_grace:
                metrics.FLOOD_CLOSE.inc()
                await self.record_audit(audit.Action.SOCKET_RATE_LIMITED, CloseCode.FLOODING, "flooding",
                                        peer_id=self.peer_id, call=self.call_id)
                await self.end(CloseCode.FLOODING, Reason.DISCONNECTED, "flooding")
            else:
                self.push(protocol.error_frame(ErrorCode.RATE_LIMITED, "Slow down."))
            return
        data = None
        try:
            if text_data is None:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, "Binary frames are not part of the protocol.")
            # A character takes 1 to 4 bytes: measure precisely only near the limit.
            if len(text_data) * 4 > self.max_frame_bytes and len(text_data.encode()) > self.max_frame_bytes:
                raise ProtocolError(ErrorCode.TOO_LARGE, f"Frames are limited to {self.max_frame_bytes} bytes.")
            data = protocol.decode(text_data)
            if data.get("to") == sfu_bridge.SFU:  # to the media server, not to a peer (docs/sfu.md)
                await sfu_bridge.from_client(self, data)
                return
            message = protocol.parse_client_message(data, self.peers)
            await self.handle(message)
        except ProtocolError as error:
            metrics.refused(data, error.code)
            self.push(protocol.error_frame(error.code, error.detail))
        except Exception:
            logger.exception("signaling: peer %s in %s: handler failed", self.peer_id, self.room_slug)
            await self.end(CloseCode.SERVER_ERROR, Reason.DISCONNECTED, "server error")

    async def handle(self, message: protocol.ClientMessage) -> None:
        if type(message) is protocol.Relay:
            node = self.peers.get(message.to)
            if node is None:
                node = await self.look_up_peer(message.to)
            message.frame["from"] = self.peer_id
            item = Item.frame(message.to, protocol.encode(message.frame), sender=self.peer_id)
            if not node or not await self.node.deliver(node=node, item=item):
                await self.keep_or_reroute(item)
            metrics.relayed_tally[message.frame["type"]] += 1
            self.relay_count += 1
            if self.relay_count % metrics.RELAY_SAMPLE_EVERY == 0:
                metrics.RELAY_SECONDS.observe(self.loop.time() - self.last_heard)  # last_heard: when it came
        elif type(message) is protocol.Ping:
            self.sent.forget(now=self.loop.time(), handled=message.last_seq or 0)
            if message.last_seq is not None:
                if self.unacked is None:
                    self.unacked = Unacknowledged()
                self.unacked.ack(message.last_seq)
            self.push(protocol.PONG)
        elif type(message) is protocol.MediaState:
            await in_db_thread(services.record_media_state)(
                peer_id=self.peer_id, audio=message.audio, video=message.video, screen=message.screen
            )
            text = protocol.media_state_frame(peer_id=self.peer_id, state=message)
            for peer_id in list(self.peers):
                await self.send_to_peer(Item.frame(peer_id, text))
            metrics.relayed_tally["media-state"] += 1
        elif type(message) is protocol.Chat:  # to everyone else in the call, as media-state goes
            text = protocol.chat_frame(peer_id=self.peer_id, text=message.text)
            for peer_id in list(self.peers):
                await self.send_to_peer(Item.frame(peer_id, text))
            metrics.relayed_tally["chat"] += 1
        elif type(message) is protocol.Leave:
            await self.end(CloseCode.NORMAL, Reason.LEFT, "left")
        elif type(message) is protocol.Stats:  # folded into the pair's quality row, never relayed
            now = self.loop.time()
            if now - self.stats_heard.get(message.peer, -1e9) < settings.PARLEY_QUALITY["STATS_MIN_SECONDS"]:
                metrics.STATS_LIMIT.inc()
                raise ProtocolError(ErrorCode.RATE_LIMITED, "One stats frame per peer every 10 seconds.")
            self.stats_heard[message.peer] = now
            await in_db_thread(quality.fold)(peer_id=self.peer_id, stats=message)
            metrics.STATS_REPORTS.inc()

    async def look_up_peer(self, peer_id: str) -> str:
        """A peer we were never told of (its join was announced while the channel layer was down): ask the
        database, so that it is reachable all the same."""
        participant = None
        if peer_id != self.peer_id:
            participant = await in_db_thread(continuity.find_peer)(call_id=self.call_id, peer_id=peer_id)
        if participant is None:
            raise ProtocolError(ErrorCode.UNKNOWN_PEER, "No such peer in this call.")
        self.peers[peer_id] = "" if participant.suspended_at else participant.relay_node
        return self.peers[peer_id]

    async def send_to_peer(self, item: Item) -> None:
        """A server-made frame for one of our peers, wherever it is, kept for its replay if it is suspended."""
        node = self.peers.get(item.to)
        if not node or not await self.node.deliver(node=node, item=item):
            await self.keep_or_reroute(item, quiet=True)

    async def keep_or_reroute(self, item: Item, *, quiet: bool = False) -> None:
        """A frame for a suspended peer, or one that just left this process: kept for its replay, or sent to where
        it resumed."""
        where = await in_db_thread(continuity.route_or_keep)(peer_id=item.to, text=item.text)
        if where is None:
            self.peers.pop(item.to, None)
            if not quiet:
                raise ProtocolError(ErrorCode.UNDELIVERABLE, "The peer has left.")
        elif where == continuity.KEPT_FULL:
            if not quiet:
                raise ProtocolError(ErrorCode.UNDELIVERABLE, "The peer is reconnecting and has too many frames "
                                                             "waiting for it.")
        elif where:
            self.peers[item.to] = where
            await self.node.deliver(node=where, item=item)

    # --- frames from the relay -----------------------------------------------------------------------

    def send_numbered(self, text: str) -> None:
        """Send a relayed or announced frame with the next sequence number, and keep it for a replay."""
        self.seq += 1
        text = protocol.with_seq(text, self.seq)
        self.remember(self.seq, text)
        if self.unacked is not None:
            self.unacked.add(self.seq, len(text), self.loop.time())
        self.push(text)

    # --- writing to the client (calls.outgoing) ------------------------------------------------------

    def over_limit(self) -> bool:
        return super().over_limit() or bool(self.unacked and self.unacked.bytes() > self.slow_bytes)

    def is_stalled(self, now: float) -> bool:
        """Unread for too long: the writer is stuck on a frame, or the client stopped acknowledging."""
        if super().is_stalled(now):
            return True
        since = self.unacked.since() if self.unacked else None
        return since is not None and now - since > self.slow_seconds

    async def close_slow(self) -> None:
        """Its participation waits for a resume, as after a drop."""
        await self.record_audit(audit.Action.SOCKET_TOO_SLOW, CloseCode.TOO_SLOW, "not reading",
                                peer_id=self.peer_id, call=getattr(self, "call_id", None))
        await self.suspend(Reason.DISCONNECTED)
        await self.close(code=CloseCode.TOO_SLOW, reason="not reading")

    def remember(self, seq: int, text: str) -> None:
        self.sent.add(seq, text, self.loop.time())

    async def relayed(self, item: Item) -> None:
        if self.pending is not None:
            self.pending.append(item)
            return
        kind = item.kind
        if kind == Item.FRAME:
            self.send_numbered(item.text)
        elif kind == Item.JOINED:
            node, peer_id = item.extra
            self.peers[peer_id] = node
            self.send_numbered(item.text)
        elif kind == Item.STATE:
            node, peer_id, state, socket = item.extra
            # The old socket's "reconnecting" can arrive after the new one's "connected" (they come from two
            # processes): news of an older socket than the latest one heard of is stale.
            if socket < self.peer_sockets.get(peer_id, 0):
                return
            self.peer_sockets[peer_id] = socket
            if peer_id in self.peers:
                self.peers[peer_id] = node if state == "connected" else ""
            self.send_numbered(item.text)
        elif kind == Item.LEFT:
            self.peers.pop(item.extra, None)
            self.send_numbered(item.text)
        elif kind == Item.CLOSE:
            code, reason = item.extra
            if reason == HANDED_OVER:  # resumed on another socket: keep our frames for it, say nothing
                await self.suspend(Reason.DISCONNECTED, announce=False)
                await self.close(code=code, reason=reason)
            else:
                await self.end(code, reason, reason)

    async def nodes_died(self, nodes: set[str]) -> None:
        """The processes holding some of our peers died: they are reconnecting (to another process, we hope)."""
        for peer_id, node in list(self.peers.items()):
            if node in nodes:
                self.peers[peer_id] = ""
                self.send_numbered(protocol.peer_state_frame(peer_id=peer_id, state="reconnecting"))

    async def time_out(self) -> None:
        await self.suspend(Reason.TIMED_OUT)
        await self.close(code=CloseCode.TIMED_OUT, reason="silent for too long")

    async def shut_down(self) -> None:
        await self.suspend(Reason.SERVER_SHUTDOWN)
        await self.close(code=CloseCode.RESTARTING, reason="server restarting")

    # --- leaving and suspending ------------------------------------------------------------------------

    async def end(self, code: int, reason: str, detail: str) -> None:
        """End the participation, recording `reason`, then close the socket."""
        await self.leave(reason)  # recorded and announced before the client sees the close
        await self.close(code=code, reason=detail)

    def uncount(self) -> None:
        if self.counted:
            self.counted = False
            metrics.ROOM_SOCKETS.dec()

    async def disconnect(self, code):
        self.uncount()
        self.stop_writer()
        if code == CloseCode.NORMAL:
            await self.leave(Reason.LEFT)
        elif code in protocol.BROKEN_PROTOCOL_CLOSE_CODES:  # refused by the server itself: nothing to resume
            await self.record_audit(audit.Action.SOCKET_PROTOCOL_BROKEN, code, "broke the WebSocket protocol",
                                    peer_id=self.peer_id)
            await self.leave(Reason.DISCONNECTED)
        elif code == CloseCode.SERVICE_RESTART:  # uvicorn closes every socket with 1012 when it stops
            await self.suspend(Reason.SERVER_SHUTDOWN)
        else:  # a reload, a closed tab, a network loss: the participation waits for a resume
            await self.suspend(Reason.DISCONNECTED)

    async def leave(self, reason: str) -> None:
        if not self.joined:
            return
        self.joined = False
        self.node.forget(self)
        await self.recorded(self.record_leave(reason))
        await sfu_bridge.gone(self, left=True)

    async def suspend(self, reason: str, *, announce: bool = True) -> None:
        if not self.joined:
            return
        self.joined = False
        self.node.forget(self)
        await self.recorded(self.record_suspension(reason, announce=announce))
        await sfu_bridge.gone(self, left=False)

    async def recorded(self, recording) -> None:
        # Shielded, and known to the node: a shutdown cancels connections, but their leaves must still be
        # written and announced before the process exits.
        future = asyncio.ensure_future(recording)
        self.node.track_leave(future)
        await asyncio.shield(future)

    async def record_leave(self, reason: str) -> None:
        try:
            await in_db_thread(services.leave_call)(peer_id=self.peer_id, reason=reason)
        finally:
            text = protocol.peer_left_frame(peer_id=self.peer_id, reason=reason)
            await self.tell_others(lambda peer_id: Item.left(peer_id, text, peer_id=self.peer_id))

    async def record_suspension(self, reason: str, *, announce: bool) -> None:
        suspended = await in_db_thread(continuity.suspend_participation)(
            peer_id=self.peer_id, relay_node=self.node.channel, reason=reason, at=timezone.now(),
            sent_seq=self.seq, history=self.sent.kept())
        if suspended and announce:
            text = protocol.peer_state_frame(peer_id=self.peer_id, state="reconnecting")
            await self.tell_others(lambda peer_id: Item.state(peer_id, text, node=self.node.channel,
                                                              peer_id=self.peer_id, state="reconnecting",
                                                              socket=self.socket_number))

    async def tell_others(self, item_for) -> None:
        for peer_id in list(self.peers):
            await self.send_to_peer(item_for(peer_id))


def last_seq(query: dict) -> int:
    try:
        return max(0, int(query.get("last_seq", ["0"])[0]))
    except ValueError:
        return 0
