"""SFU mode end to end (docs/sfu.md): aiortc clients speak Parley's signaling to a real daphne process, which relays
their frames to "sfu" to a real Janus; every client publishes one colour and must decode every other client's colour
(and only theirs) from the streams the server's offers list.

Video is small (160x120, 10 fps) to keep six encoders and thirty decoders modest on a shared machine.
"""

import asyncio
import json
from contextlib import AsyncExitStack, suppress

import pytest
import websockets
from asgiref.sync import sync_to_async

from calls import services, tickets
from calls.models import CallParticipant, Room
from sfu.models import JanusRoom
from tests.helpers import eventually
from tests.janus import ColourTrack, Janus, mean_yuv, near, same_host_only
from tests.servers import DaphneServer

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

TIMEOUT = 30
# Flat YUV colours, far enough apart for VP8 at a low bitrate: red, green, blue, yellow, cyan, magenta.
COLOURS = [(81, 90, 240), (145, 54, 34), (41, 240, 110), (210, 16, 146), (170, 166, 16), (107, 202, 222)]


@pytest.fixture(scope="module")
def janus():
    with Janus() as server:
        yield server


@pytest.fixture(scope="module")
def sfu_server(janus, django_db_setup, django_db_blocker):
    """A daphne process of its own, told where Janus is (PARLEY_MESH_MAX stays at its default, 4)."""
    with django_db_blocker.unblock():
        server = DaphneServer(env={"PARLEY_JANUS_URL": janus.url, "PARLEY_JANUS_API_SECRET": janus.api_secret,
                                   "PARLEY_JANUS_ADMIN_KEY": janus.admin_key, "PARLEY_MESH_MAX": "4"})
        server.start()
    yield server
    server.stop()


@pytest.fixture
def people(django_user_model, password, alice, bob, carol):
    """Six people of the public room: alice owns it, carol moderates, the others are members."""
    others = [django_user_model.objects.create_user(name, password=password) for name in ("dave", "erin", "frank")]
    return [alice, bob, carol, *others]


@pytest.fixture
def call_room(people, public_room):
    for person in people[3:]:
        services.add_member(by=people[0], room=public_room, user=person, role=services.Role.MEMBER)
    return public_room


@pytest.fixture(autouse=True)
async def calls_recorded_before_the_flush():
    """After each test, wait for the server to record the last leaves: the test database is flushed next, and a
    leave still being written then deadlocks with the flush (harmless, but it litters the server's log; the people
    app's presence receiver, a moment after the leave, may still meet the flush now and then)."""
    yield
    await eventually(no_live_participant, timeout=15)


async def no_live_participant() -> bool:
    return not await CallParticipant.objects.filter(left_at__isnull=True).aexists()


async def set_media(room: Room, media: str) -> None:
    room.media = media
    await room.asave(update_fields=["media"])


async def ws_url(server, user, room) -> str:
    ticket = await sync_to_async(tickets.issue_ticket)(user=user, room=room)
    return f"{server.ws_url}/ws/rooms/{room.slug}/?ticket={ticket}"


def follow_new_ssrcs(pc) -> None:
    """aiortc routes a receiver's RTP by the SSRCs of its first negotiation only (RTCRtpReceiver.receive starts
    once), so when Janus reuses an m-line for another feed (someone left, someone came) the new SSRC would be
    dropped. Register each receiver's current SSRCs again, as a browser follows them by itself."""
    for transceiver in pc.getTransceivers():
        if transceiver.currentDirection in ("recvonly", "sendrecv"):
            parameters = pc._RTCPeerConnection__remoteRtp(transceiver)
            transceiver.receiver.transport._register_rtp_receiver(transceiver.receiver, parameters)


class SfuClient:
    """A Parley client in SFU mode: one publisher connection (its colour), one subscriber connection (whatever the
    server's offers carry). In mesh mode it only listens: the mesh's own media is tested elsewhere."""

    def __init__(self, url: str, name: str, colour: tuple[int, int, int]):
        self.url, self.name, self.colour = url, name, colour
        self.publisher_pc = self.subscriber_pc = None
        self.streams: list[dict] = []  # the last offer's
        self.colours: dict[str, list] = {}  # peer id -> colours decoded from its stream
        self.frames: dict[str, int] = {}  # peer id -> frames decoded
        self.events: list[dict] = []
        self.errors: list[dict] = []
        self.offers = 0
        self.tasks: list[asyncio.Task] = []
        self.published = asyncio.Event()
        self.last_seq = 0
        self.unnumbered_from_sfu = 0

    async def __aenter__(self) -> "SfuClient":
        self.ws = await websockets.connect(self.url, open_timeout=TIMEOUT)
        self.welcome = json.loads(await asyncio.wait_for(self.ws.recv(), TIMEOUT))
        assert self.welcome["type"] == "welcome", self.welcome
        self.media = self.welcome["media"]
        self.tasks.append(asyncio.create_task(self.listen()))
        if self.media == "sfu":
            await self.publish()
        return self

    async def drop_and_resume(self, url: str, *, drop: bool = True) -> None:
        """The socket is lost (no close frame; or with `drop=False` the server closed it), then resumed on `url` (a
        fresh ticket's): the SFU connections start again, as after every welcome in SFU mode."""
        if drop:
            self.ws.transport.abort()
        for task in self.tasks:
            task.cancel()
        for pc in (self.publisher_pc, self.subscriber_pc):
            if pc is not None:
                await pc.close()
        self.publisher_pc = self.subscriber_pc = None
        self.streams, self.colours, self.tasks = [], {}, []
        self.url = f"{url}&resume={self.welcome['resume_token']}&last_seq={self.last_seq}"
        await self.__aenter__()

    @property
    def peer_id(self) -> str:
        return self.welcome["peer_id"]

    async def send(self, frame: dict) -> None:
        await self.ws.send(json.dumps(frame))

    async def publish(self) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection

        self.publisher_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.publisher_pc.addTransceiver(ColourTrack(self.colour, width=160, height=120, fps=10),
                                         direction="sendonly")
        await self.publisher_pc.setLocalDescription(await self.publisher_pc.createOffer())
        await self.send({"type": "offer", "to": "sfu", "sdp": self.publisher_pc.localDescription.sdp})

    async def listen(self) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        async for text in self.ws:
            frame = json.loads(text)
            kind = frame["type"]
            if "seq" in frame:
                self.last_seq = frame["seq"]
            elif frame.get("from") == "sfu":
                self.unnumbered_from_sfu += 1
            if kind == "answer" and frame.get("from") == "sfu":
                await self.publisher_pc.setRemoteDescription(RTCSessionDescription(sdp=frame["sdp"], type="answer"))
                self.published.set()
            elif kind == "offer" and frame.get("from") == "sfu":
                if self.subscriber_pc is None:
                    self.subscriber_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
                    self.subscriber_pc.on("track", lambda track: self.tasks.append(
                        asyncio.create_task(self.read(track))))
                self.streams = frame["streams"]
                await self.subscriber_pc.setRemoteDescription(RTCSessionDescription(sdp=frame["sdp"], type="offer"))
                await self.subscriber_pc.setLocalDescription(await self.subscriber_pc.createAnswer())
                follow_new_ssrcs(self.subscriber_pc)
                await self.send({"type": "answer", "to": "sfu", "sdp": self.subscriber_pc.localDescription.sdp})
                self.offers += 1
            elif kind == "media-mode":
                self.events.append(frame)
                if frame["media"] == "sfu" and self.media != "sfu":
                    self.media = "sfu"
                    await self.publish()
            elif kind == "error":
                self.errors.append(frame)
            else:
                self.events.append(frame)

    def peer_of_mid(self, mid: str) -> str | None:
        return next((s["peer_id"] for s in self.streams if s["mid"] == mid and s["kind"] == "video"), None)

    async def read(self, track) -> None:
        from aiortc.mediastreams import MediaStreamError

        mid = next(t.mid for t in self.subscriber_pc.getTransceivers() if t.receiver.track is track)
        count = 0
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            peer_id = self.peer_of_mid(mid)
            if peer_id is None:
                continue
            count += 1
            self.frames[peer_id] = self.frames.get(peer_id, 0) + 1
            if count % 3 == 1:  # the colour of one frame in three: enough, and cheaper
                self.colours.setdefault(peer_id, []).append(mean_yuv(frame))

    def streamed_peers(self) -> set[str]:
        return {s["peer_id"] for s in self.streams if s["kind"] == "video"}

    async def receives(self, others: list["SfuClient"], frames: int = 5) -> None:
        """Wait until `frames` frames of each of `others`' colours were decoded from the stream listed as theirs."""
        async def wait():
            while not all(sum(near(c, o.colour) for c in self.colours.get(o.peer_id, [])) >= frames for o in others):
                await asyncio.sleep(0.2)
        try:
            await asyncio.wait_for(wait(), TIMEOUT)
        except asyncio.TimeoutError:
            seen = {p[:8]: c[-2:] for p, c in self.colours.items()}
            if self.subscriber_pc is not None:
                seen["transceivers"] = [(t.mid, t.direction, t.currentDirection, t.receiver.track.readyState)
                                        for t in self.subscriber_pc.getTransceivers()]
                seen["readers"] = [t.done() for t in self.tasks]
                seen["frames"] = {p[:8]: n for p, n in self.frames.items()}
            raise AssertionError(f"{self.name}: streams {self.streams}, colours {seen}, errors {self.errors}") from None

    async def close(self) -> None:
        with suppress(Exception):
            await self.ws.close()
        for pc in (self.publisher_pc, self.subscriber_pc):
            if pc is not None:
                await pc.close()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with suppress(asyncio.CancelledError, Exception):
                await task

    async def __aexit__(self, *exc) -> None:
        await self.close()


async def no_janus_room() -> bool:
    return not await JanusRoom.objects.aexists()


def assert_own_colour_never_came_back(client: SfuClient) -> None:
    for peer_id, colours in client.colours.items():
        assert peer_id != client.peer_id
        assert not any(near(c, client.colour) for c in colours), f"{client.name} got its own colour back"


async def test_five_peers_in_an_sfu_room_each_receive_the_other_four_then_a_sixth_then_one_leaves(
        sfu_server, janus, people, call_room, monkeypatch):
    same_host_only(monkeypatch, janus.ice_address)
    await set_media(call_room, "sfu")
    async with AsyncExitStack() as stack:
        clients = []
        for n, person in enumerate(people[:5]):
            client = SfuClient(await ws_url(sfu_server, person, call_room), person.username, COLOURS[n])
            clients.append(await stack.enter_async_context(client))
            assert client.media == "sfu"
        for client in clients:
            await client.receives([other for other in clients if other is not client])

        sixth = await stack.enter_async_context(
            SfuClient(await ws_url(sfu_server, people[5], call_room), people[5].username, COLOURS[5]))
        clients.append(sixth)
        for client in clients:
            await client.receives([other for other in clients if other is not client])

        leaver = clients.pop(1)
        await leaver.send({"type": "leave"})
        await leaver.close()
        await eventually(lambda: all(leaver.peer_id not in c.streamed_peers() for c in clients), timeout=TIMEOUT)
        for client in clients:
            await client.receives([other for other in clients if other is not client])
            assert_own_colour_never_came_back(client)
            assert not client.errors
    await eventually(no_janus_room, timeout=10)  # destroyed with the call


async def test_an_auto_room_moves_from_mesh_to_the_sfu_when_a_fifth_person_joins(
        sfu_server, janus, people, call_room, monkeypatch):
    same_host_only(monkeypatch, janus.ice_address)
    assert call_room.media == "auto"
    async with AsyncExitStack() as stack:
        clients = []
        for n, person in enumerate(people[:4]):
            client = SfuClient(await ws_url(sfu_server, person, call_room), person.username, COLOURS[n])
            clients.append(await stack.enter_async_context(client))
            assert client.media == "mesh"
        assert not await JanusRoom.objects.aexists()

        fifth = await stack.enter_async_context(
            SfuClient(await ws_url(sfu_server, people[4], call_room), people[4].username, COLOURS[4]))
        assert fifth.media == "sfu"
        clients.append(fifth)
        for client in clients[:4]:
            await eventually(lambda c=client: {"type": "media-mode", "media": "sfu"} in
                             [{k: v for k, v in e.items() if k != "seq"} for e in c.events], timeout=10)
        for client in clients:
            await client.receives([other for other in clients if other is not client])
            assert len(client.streamed_peers()) == 4


async def test_a_kicked_peers_stream_goes_from_everyone(sfu_server, janus, people, call_room, monkeypatch):
    same_host_only(monkeypatch, janus.ice_address)
    await set_media(call_room, "sfu")
    alice, bob, carol = people[:3]
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(
            SfuClient(await ws_url(sfu_server, person, call_room), person.username, COLOURS[n]))
            for n, person in enumerate((alice, bob, carol))]
        for client in clients:
            await client.receives([other for other in clients if other is not client])
        # Through the server's REST API, so that the kick happens in the process holding the socket (the test's
        # own channel layer may be the in-memory one).
        status = await asyncio.to_thread(
            post_as, alice, f"{sfu_server.url}/api/rooms/{call_room.slug}/participants/{clients[1].peer_id}/kick/")
        assert status == 204
        for client in (clients[0], clients[2]):
            await eventually(lambda c=client: bob_gone(c, clients[1]), timeout=TIMEOUT)


def post_as(user, url: str) -> int:
    import urllib.request

    from rest_framework.authtoken.models import Token

    token, _ = Token.objects.get_or_create(user=user)
    request = urllib.request.Request(url, method="POST", headers={"Authorization": f"Token {token.key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def bob_gone(client: SfuClient, kicked: SfuClient) -> bool:
    return kicked.peer_id not in client.streamed_peers() and any(
        e.get("type") == "peer-left" and e.get("peer_id") == kicked.peer_id and e.get("reason") == "kicked"
        for e in client.events)


async def test_a_mesh_call_says_mesh_and_refuses_frames_to_the_sfu(sfu_server, people, call_room):
    await set_media(call_room, "mesh")
    async with websockets.connect(await ws_url(sfu_server, people[0], call_room)) as ws:
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert welcome["media"] == "mesh"
        await ws.send(json.dumps({"type": "offer", "to": "sfu", "sdp": "v=0\r\n"}))
        error = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert error["type"] == "error" and error["code"] == "unknown-peer"
    assert not await JanusRoom.objects.aexists()


async def test_clients_never_see_the_janus_rooms_secret_or_pin(sfu_server, people, call_room):
    await set_media(call_room, "sfu")
    async with websockets.connect(await ws_url(sfu_server, people[0], call_room)) as ws:
        text = await asyncio.wait_for(ws.recv(), 10)
        assert json.loads(text)["media"] == "sfu"
        row = await eventually(lambda: JanusRoom.objects.afirst(), timeout=10)
        assert row.secret not in text and row.pin not in text and str(row.room) not in text


async def test_a_peer_receives_only_its_own_calls_streams(sfu_server, janus, people, call_room, room, monkeypatch):
    """Two SFU calls at once on one Janus: each side's offers list, and its client decodes, only its own call's
    feeds. A client has no way to name a stream: the server subscribes it to its call's feeds, and answering an
    offer it never made is refused."""
    same_host_only(monkeypatch, janus.ice_address)
    alice, bob, carol = people[:3]
    await set_media(call_room, "sfu")
    await set_media(room, "sfu")  # alice's private board room: carol moderates it, bob is a member
    async with AsyncExitStack() as stack:
        town = [await stack.enter_async_context(
            SfuClient(await ws_url(sfu_server, person, call_room), f"town-{person.username}", COLOURS[n]))
            for n, person in enumerate((alice, bob))]
        board = [await stack.enter_async_context(
            SfuClient(await ws_url(sfu_server, person, room), f"board-{person.username}", COLOURS[n + 2]))
            for n, person in enumerate((carol, bob))]
        for group in (town, board):
            for client in group:
                await client.receives([other for other in group if other is not client])
        for client in town + board:
            own = town if client in town else board
            assert client.streamed_peers() == {o.peer_id for o in own if o is not client}
            foreign = board if client in town else town
            assert not any(near(c, o.colour) for colours in client.colours.values() for c in colours
                           for o in foreign), f"{client.name} decoded another call's video"
        rows = [r async for r in JanusRoom.objects.all()]
        assert len({r.room for r in rows}) == 2

        await town[0].send({"type": "answer", "to": "sfu", "sdp": "v=0\r\n"})  # no offer of the SFU pending
        await eventually(lambda: town[0].errors, timeout=10)
        assert town[0].errors[-1]["code"] == "bad-message"


@pytest.fixture(scope="module")
def server_without_janus(django_db_setup, django_db_blocker):
    """A server whose Janus is down: PARLEY_JANUS_URL names a loopback port nobody listens on."""
    from tests.servers import free_port

    with django_db_blocker.unblock():
        server = DaphneServer(env={"PARLEY_JANUS_URL": f"ws://127.0.0.1:{free_port()}",
                                   "PARLEY_JANUS_API_SECRET": "x", "PARLEY_JANUS_ADMIN_KEY": "x"})
        server.start()
    yield server
    server.stop()


async def closed_with(ws) -> int:
    with suppress(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    return ws.close_code


async def test_with_janus_down_small_calls_stay_mesh_and_the_fifth_person_is_refused_4503(
        server_without_janus, people, call_room):
    async with AsyncExitStack() as stack:
        sockets = []
        for person in people[:4]:
            ws = await stack.enter_async_context(websockets.connect(await ws_url(server_without_janus, person,
                                                                                 call_room)))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["media"] == "mesh"
            sockets.append(ws)
        fifth = await stack.enter_async_context(websockets.connect(await ws_url(server_without_janus, people[4],
                                                                                call_room)))
        assert await closed_with(fifth) == 4503
        participant = await CallParticipant.objects.aget(user=people[4])
        assert participant.left_at is not None and participant.leave_reason == "disconnected"


async def test_with_janus_down_an_sfu_room_refuses_4503(server_without_janus, people, call_room):
    await set_media(call_room, "sfu")
    async with websockets.connect(await ws_url(server_without_janus, people[0], call_room)) as ws:
        assert await closed_with(ws) == 4503


async def test_a_resumed_sfu_peer_publishes_again_and_everyone_receives_it(sfu_server, janus, people, call_room,
                                                                          monkeypatch):
    same_host_only(monkeypatch, janus.ice_address)
    await set_media(call_room, "sfu")
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(
            SfuClient(await ws_url(sfu_server, person, call_room), person.username, COLOURS[n]))
            for n, person in enumerate(people[:3])]
        for client in clients:
            await client.receives([other for other in clients if other is not client])
        dropped = clients[2]
        peer_id = dropped.peer_id
        await dropped.drop_and_resume(await ws_url(sfu_server, people[2], call_room))
        assert dropped.welcome["resumed"] and dropped.peer_id == peer_id and dropped.media == "sfu"
        for client in clients[:2]:
            client.colours = {}  # what comes from now on: the resumed peer's new feed
        for client in clients:
            await client.receives([other for other in clients if other is not client])
        assert all(c.unnumbered_from_sfu >= 2 for c in clients)  # frames from sfu: no seq, never replayed
        assert not any(c.errors for c in clients)


async def test_the_janus_room_of_a_call_that_ended_without_a_last_leave_is_swept(sfu_server, janus, people,
                                                                                call_room, room):
    """A call the reaper ended (its server died) keeps its Janus room until the next call that makes one."""
    from django.utils import timezone

    from calls.models import Call
    from sfu import janus as api
    from sfu.janus import JanusConnection, RoomKeys

    async with await JanusConnection.open(janus.url, api_secret=janus.api_secret, admin_key=janus.admin_key) as c:
        handle = await (await c.create_session()).attach()
        stale = RoomKeys.generate()
        await api.create_room(handle, keys=stale, publishers=4)
        now = timezone.now()
        ended = await Call.objects.acreate(room=room, room_name=room.name, started_at=now, ended_at=now)
        await JanusRoom.objects.acreate(call=ended, room=stale.room, secret=stale.secret, pin=stale.pin)

        await set_media(call_room, "sfu")
        async with websockets.connect(await ws_url(sfu_server, people[0], call_room)) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["media"] == "sfu"
            await eventually(lambda: stale_gone(handle, stale, ended), timeout=10)


async def stale_gone(handle, stale, ended) -> bool:
    from sfu import janus as api

    return not await JanusRoom.objects.filter(call=ended).aexists() and not await api.room_exists(handle,
                                                                                                  room=stale.room)


@pytest.fixture
def janus_and_server(django_db_blocker):
    """A Janus and a daphne process of this test's own: the test restarts that Janus."""
    with Janus() as own_janus, django_db_blocker.unblock():
        server = DaphneServer(env={"PARLEY_JANUS_URL": own_janus.url, "PARLEY_JANUS_API_SECRET": own_janus.api_secret,
                                   "PARLEY_JANUS_ADMIN_KEY": own_janus.admin_key})
        server.start()
        yield own_janus, server
        server.stop()


async def test_when_janus_restarts_sfu_sockets_close_4503_and_resume_onto_the_new_janus(
        janus_and_server, people, call_room, monkeypatch):
    own_janus, server = janus_and_server
    same_host_only(monkeypatch, own_janus.ice_address)
    await set_media(call_room, "sfu")
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(
            SfuClient(await ws_url(server, person, call_room), person.username, COLOURS[n]))
            for n, person in enumerate(people[:2])]
        for client in clients:
            await client.receives([other for other in clients if other is not client])

        own_janus.stop()
        for client in clients:
            await eventually(lambda c=client: c.ws.close_code == 4503, timeout=10)
        await asyncio.to_thread(own_janus.start)  # the same port, secrets and key; no rooms

        for client, person in zip(clients, people, strict=False):
            await client.drop_and_resume(await ws_url(server, person, call_room), drop=False)
            assert client.welcome["resumed"] and client.media == "sfu"
        for client in clients:
            await client.receives([other for other in clients if other is not client])
    # While this test's own server still runs (the autouse check comes after it is stopped, and a stopping server
    # suspends the participations it holds instead of recording their leaves).
    await eventually(no_live_participant, timeout=15)
