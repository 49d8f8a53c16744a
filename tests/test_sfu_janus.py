"""sfu.janus against a real Janus (Debian's, started on loopback by tests/janus.py): sessions, rooms with their secret
and pin, and two aiortc peers that publish through it and receive each other's video."""

import asyncio
from contextlib import suppress

import pytest

from sfu import janus as api
from sfu.janus import JanusConnection, JanusError, RoomKeys
from tests.janus import ColourTrack, Janus, mean_yuv, near, same_host_only

TIMEOUT = 20
ALICE_COLOUR, BOB_COLOUR = (81, 90, 240), (145, 54, 34)  # YUV: red, green


@pytest.fixture(scope="module")
def janus():
    with Janus() as server:
        yield server


@pytest.fixture
async def connection(janus):
    async with await JanusConnection.open(janus.url, api_secret=janus.api_secret, admin_key=janus.admin_key) as c:
        yield c


@pytest.fixture
async def room(connection):
    """A Janus room made the way Parley makes them; destroyed after the test."""
    session = await connection.create_session()
    handle = await session.attach()
    keys = RoomKeys.generate()
    await api.create_room(handle, keys=keys, publishers=6, description="test room")
    yield keys
    with suppress(JanusError):  # a test may have destroyed it
        await api.destroy_room(handle, keys=keys)
    await session.destroy()


async def test_janus_answers_with_the_videoroom_plugin_loaded(connection):
    info = await connection.info()
    assert "janus.plugin.videoroom" in info["plugins"]
    assert list(info["transports"]) == ["janus.transport.websockets"]


async def test_a_request_without_the_api_secret_is_refused(janus):
    async with await JanusConnection.open(janus.url, api_secret="wrong") as stranger:
        with pytest.raises(JanusError) as refused:
            await stranger.create_session()
    assert refused.value.code == 403  # JANUS_ERROR_UNAUTHORIZED


async def test_an_unreachable_janus_is_a_janus_error():
    from tests.servers import free_port

    with pytest.raises(JanusError) as refused:
        await JanusConnection.open(f"ws://127.0.0.1:{free_port()}", timeout=2)
    assert refused.value.code == 0


async def test_a_room_cannot_be_created_without_the_admin_key(janus):
    async with await JanusConnection.open(janus.url, api_secret=janus.api_secret) as keyless:
        session = await keyless.create_session()
        handle = await session.attach()
        with pytest.raises(JanusError) as refused:
            await api.create_room(handle, keys=RoomKeys.generate(), publishers=4)
        await session.destroy()
    assert refused.value.code == 429  # JANUS_VIDEOROOM_ERROR_UNAUTHORIZED


async def test_a_room_exists_until_destroyed_with_its_secret(connection):
    session = await connection.create_session()
    handle = await session.attach()
    keys = RoomKeys.generate()
    await api.create_room(handle, keys=keys, publishers=4)
    assert await api.room_exists(handle, room=keys.room)
    with pytest.raises(JanusError):
        await api.destroy_room(handle, keys=RoomKeys(room=keys.room, secret="guess", pin=keys.pin))
    assert await api.room_exists(handle, room=keys.room)
    await api.destroy_room(handle, keys=keys)
    assert not await api.room_exists(handle, room=keys.room)
    await session.destroy()


async def test_joining_needs_the_rooms_pin(connection, room):
    session = await connection.create_session()
    handle = await session.attach()
    with pytest.raises(JanusError) as refused:
        await api.join_as_publisher(handle, keys=RoomKeys(room=room.room, secret="", pin="guess"), display="mallory")
    assert refused.value.code == 433  # JANUS_VIDEOROOM_ERROR_UNAUTHORIZED (pin)
    joined = await api.join_as_publisher(handle, keys=room, display="alice")
    assert joined["videoroom"] == "joined" and joined["id"] and joined["private_id"]
    await session.destroy()


async def test_the_session_stays_alive_with_keepalives(connection):
    session = await connection.create_session()
    await session.keepalive()
    handle = await session.attach()
    assert handle.id
    await handle.detach()
    await session.destroy()
    with pytest.raises(JanusError):
        await session.keepalive()


class Person:
    """One aiortc client of the SFU: a publisher PeerConnection sending its colour, a subscriber PeerConnection
    receiving the others' feeds; signaling straight through sfu.janus (what Parley's bridge does for a browser)."""

    def __init__(self, connection: JanusConnection, keys: RoomKeys, name: str, colour: tuple[int, int, int]):
        from aiortc import RTCConfiguration, RTCPeerConnection

        self.connection, self.keys, self.name, self.colour = connection, keys, name, colour
        self.publisher_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.subscriber_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.colours: dict[str, list[tuple[int, int, int]]] = {}  # subscriber mid -> colours decoded
        self.readers: list[asyncio.Task] = []
        self.feed = self.private_id = None
        self.streams: list[dict] = []

        @self.subscriber_pc.on("track")
        def on_track(track):
            self.readers.append(asyncio.create_task(self._read(track)))

    async def _read(self, track) -> None:
        from aiortc.mediastreams import MediaStreamError

        mid = next(t.mid for t in self.subscriber_pc.getTransceivers() if t.receiver.track is track)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.colours.setdefault(mid, []).append(mean_yuv(frame))

    async def publish(self) -> None:
        from aiortc import RTCSessionDescription

        self.session = await self.connection.create_session()
        self.publisher = await self.session.attach()
        joined = await api.join_as_publisher(self.publisher, keys=self.keys, display=self.name)
        self.feed, self.private_id = joined["id"], joined["private_id"]
        self.publisher_pc.addTransceiver(ColourTrack(self.colour), direction="sendonly")
        await self.publisher_pc.setLocalDescription(await self.publisher_pc.createOffer())
        answer = await api.publish(self.publisher, sdp=self.publisher_pc.localDescription.sdp)
        await self.publisher_pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def published(self) -> None:
        """Janus's `webrtcup` on the publisher handle: its PeerConnection is up, its feed can be subscribed to."""
        while (await self.publisher.next_event(TIMEOUT)).get("janus") != "webrtcup":
            pass

    async def subscribe(self, feeds: list[int]) -> None:
        from aiortc import RTCSessionDescription

        self.subscriber = await self.session.attach()
        self.streams, offer = await api.join_as_subscriber(self.subscriber, keys=self.keys, feeds=feeds,
                                                           private_id=self.private_id)
        await self.subscriber_pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await self.subscriber_pc.setLocalDescription(await self.subscriber_pc.createAnswer())
        await api.start(self.subscriber, sdp=self.subscriber_pc.localDescription.sdp)

    def mid_of(self, feed: int) -> str:
        return next(s["mid"] for s in self.streams if s.get("feed_id") == feed and s["type"] == "video")

    async def frames_from(self, other: "Person", count: int = 10) -> list[tuple[int, int, int]]:
        """Wait until `count` frames of `other`'s colour were decoded from its stream."""
        mid = self.mid_of(other.feed)

        async def wait():
            while sum(near(c, other.colour) for c in self.colours.get(mid, [])) < count:
                await asyncio.sleep(0.1)
        try:
            await asyncio.wait_for(wait(), TIMEOUT)
        except asyncio.TimeoutError:
            seen = {m: colours[-3:] for m, colours in self.colours.items()}
            raise AssertionError(f"{self.name}: no {count} frames of {other.name} on mid {mid}: {seen}") from None
        return self.colours[mid]

    async def close(self) -> None:
        await self.publisher_pc.close()
        await self.subscriber_pc.close()
        for reader in self.readers:
            reader.cancel()
        await self.session.destroy()


async def test_two_aiortc_peers_receive_each_others_video_through_janus(janus, connection, room, monkeypatch):
    same_host_only(monkeypatch, janus.ice_address)
    alice = Person(connection, room, "alice", ALICE_COLOUR)
    bob = Person(connection, room, "bob", BOB_COLOUR)
    try:
        await alice.publish()
        await bob.publish()
        await alice.published()
        await bob.published()
        await alice.subscribe([bob.feed])
        await bob.subscribe([alice.feed])

        seen_by_alice = await alice.frames_from(bob)
        seen_by_bob = await bob.frames_from(alice)
        assert not any(near(c, ALICE_COLOUR) for c in seen_by_alice), "alice got her own video back"
        assert not any(near(c, BOB_COLOUR) for c in seen_by_bob), "bob got his own video back"
        for pc in (alice.publisher_pc, alice.subscriber_pc, bob.publisher_pc, bob.subscriber_pc):
            ice = pc.getTransceivers()[0].receiver.transport.transport
            pairs = ice._connection._nominated.values()  # aioice: the candidate pairs in use
            assert pairs and all(pair.local_candidate.host == pair.remote_candidate.host == janus.ice_address
                                 for pair in pairs), list(pairs)
    finally:
        await alice.close()
        await bob.close()


def test_a_missing_janus_fails_under_ci_and_skips_locally(monkeypatch, tmp_path):
    import tests.janus as fixture

    monkeypatch.setattr(fixture, "PLUGINS", tmp_path)  # no libjanus_videoroom.so there
    monkeypatch.setattr(fixture, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="apt-get install janus"):
        fixture.require_janus()
    monkeypatch.setattr(fixture, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception):
        fixture.require_janus()
