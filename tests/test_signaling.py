"""The signaling consumer, rule by rule, on the in-memory layer and on real Redis."""

import asyncio

import pytest

from calls.models import Call, CallParticipant
from calls.services import Reason

pytestmark = [pytest.mark.django_db(transaction=True)]

OFFER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
CANDIDATE = {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", "sdpMid": "0",
             "sdpMLineIndex": 0, "usernameFragment": "abcd"}


async def test_welcome_describes_the_call_and_the_peers_already_there(peers, public_room, alice, bob):
    first = await peers(alice, public_room)
    assert first.welcome["peers"] == []
    assert first.welcome["room"] == {"slug": "town-hall", "name": "Town hall"}
    assert isinstance(first.welcome["call_id"], int) and isinstance(first.welcome["ice_servers"], list)

    second = await peers(bob, public_room)
    assert second.welcome["call_id"] == first.welcome["call_id"]
    [seen] = second.welcome["peers"]
    assert seen["peer_id"] == first.peer_id
    assert seen["user"] == {"id": alice.id, "username": "alice", "display_name": "Alice A."}
    assert seen["polite"] is True  # the later joiner is polite toward those already there

    joined = await first.receive_type("peer-joined")
    assert joined["peer"]["peer_id"] == second.peer_id and joined["peer"]["polite"] is False


async def test_offer_reaches_only_its_target_with_from_added(peers, public_room, alice, bob, mallory):
    a, b, c = await peers.together(public_room, alice, bob, mallory)

    await c.send({"type": "offer", "to": a.peer_id, "sdp": OFFER})
    assert await a.receive() == {"type": "offer", "to": a.peer_id, "sdp": OFFER, "from": c.peer_id}
    assert await b.nothing()

    await a.send({"type": "answer", "to": c.peer_id, "sdp": OFFER})
    assert (await c.receive())["from"] == a.peer_id
    await a.send({"type": "candidate", "to": c.peer_id, "candidate": CANDIDATE})
    assert await c.receive() == {"type": "candidate", "to": c.peer_id, "candidate": CANDIDATE, "from": a.peer_id}
    await a.send({"type": "candidate", "to": c.peer_id, "candidate": None})
    assert (await c.receive())["candidate"] is None
    assert await b.nothing()


async def test_the_server_sets_from_and_ignores_a_forged_one(peers, public_room, alice, bob):
    a, b = await peers.together(public_room, alice, bob)
    await b.send({"type": "offer", "to": a.peer_id, "sdp": OFFER, "from": "someone-else", "extra": 1})
    assert await a.receive() == {"type": "offer", "to": a.peer_id, "sdp": OFFER, "from": b.peer_id}


async def test_peers_of_other_calls_are_unknown_and_get_nothing(peers, public_room, private_room, alice, bob):
    a, b = await peers(alice, public_room), await peers(bob, private_room)
    for to in (b.peer_id, "00000000-0000-0000-0000-000000000000", a.peer_id):
        await a.send({"type": "offer", "to": to, "sdp": OFFER})
        error = await a.receive_type("error")
        assert error["code"] == "unknown-peer"
    assert await b.nothing()


@pytest.mark.parametrize("frame, code", [
    ("{not json", "bad-json"),
    ("[1, 2]", "bad-message"),
    ('{"no": "type"}', "bad-message"),
    ('{"type": "shout"}', "unknown-type"),
    ('{"type": "offer", "sdp": "v=0"}', "bad-message"),
    ('{"type": "offer", "to": "not-a-peer", "sdp": "v=0"}', "unknown-peer"),
    ('{"type": "offer", "to": "00000000-0000-0000-0000-000000000000", "sdp": 5}', "bad-message"),
    ('{"type": "candidate", "to": "00000000-0000-0000-0000-000000000000"}', "bad-message"),
    ('{"type": "candidate", "to": "00000000-0000-0000-0000-000000000000", "candidate": {"sdpMid": "0"}}',
     "bad-message"),
    ('{"type": "media-state", "audio": "yes", "video": true, "screen": false}', "bad-message"),
])
async def test_bad_frames_get_a_documented_error_and_the_socket_stays_open(peers, public_room, alice, frame, code):
    peer = await peers(alice, public_room)
    await peer.ws.send_to(text_data=frame)
    error = await peer.receive_type("error")
    assert error["code"] == code and error["detail"]
    await peer.send({"type": "ping"})
    assert await peer.receive() == {"type": "pong"}


async def test_binary_frames_are_refused_with_an_error(peers, public_room, alice):
    peer = await peers(alice, public_room)
    await peer.ws.send_to(bytes_data=b"\x00\x01")
    assert (await peer.receive_type("error"))["code"] == "bad-message"
    await peer.send({"type": "ping"})
    assert await peer.receive() == {"type": "pong"}


async def test_a_70_kib_frame_is_too_large_and_the_socket_stays_open(peers, public_room, alice, bob):
    a, b = await peers.together(public_room, alice, bob)
    await b.send({"type": "offer", "to": a.peer_id, "sdp": "x" * 70 * 1024})
    assert (await b.receive_type("error"))["code"] == "too-large"
    assert await a.nothing()
    await b.send({"type": "ping"})
    assert await b.receive() == {"type": "pong"}


async def test_media_state_is_broadcast_with_from_and_recorded(peers, public_room, alice, bob):
    a, b = await peers.together(public_room, alice, bob)
    await b.send({"type": "media-state", "audio": False, "video": True, "screen": False})
    assert await a.receive() == {"type": "media-state", "from": b.peer_id, "audio": False, "video": True,
                                 "screen": False}
    assert await b.nothing()
    row = await CallParticipant.objects.aget(peer_id=b.peer_id)
    assert (row.audio, row.video, row.screen) == (False, True, False)
    c = await peers(alice, public_room)
    assert [p["media"] for p in c.welcome["peers"]] == [None, {"audio": False, "video": True, "screen": False}]


async def test_leaving_is_announced_recorded_and_the_last_one_out_ends_the_call(peers, public_room, alice, bob):
    a, b = await peers.together(public_room, alice, bob)
    await b.leave()
    left = await a.receive_type("peer-left")
    assert left == {"type": "peer-left", "peer_id": b.peer_id, "reason": "left"}
    call = await Call.objects.aget(pk=a.welcome["call_id"])
    assert call.is_live
    await a.leave()
    call = await Call.objects.aget(pk=a.welcome["call_id"])
    assert not call.is_live
    rows = [(p.user_id, p.leave_reason, p.left_at is not None) async for p in call.participants.all()]
    assert rows == [(alice.id, "left", True), (bob.id, "left", True)]


async def test_an_abrupt_drop_suspends_the_participation(peers, public_room, alice, bob):
    a, b = await peers.together(public_room, alice, bob)
    await b.drop()
    assert await a.receive() == {"type": "peer-state", "peer_id": b.peer_id, "state": "reconnecting"}
    row = await CallParticipant.objects.aget(peer_id=b.peer_id)
    assert row.left_at is None and row.suspended_at is not None and row.suspend_reason == Reason.DISCONNECTED


async def test_concurrent_first_joins_start_exactly_one_call(peers, public_room, alice, bob, mallory):
    joined = await asyncio.gather(*(peers(user, public_room) for user in (alice, bob, mallory, alice)))
    assert len({p.welcome["call_id"] for p in joined}) == 1
    assert await Call.objects.filter(room=public_room).acount() == 1
    # Of every pair, exactly one saw the other in its welcome: the later one, polite toward the earlier.
    seen = {p.peer_id: {q["peer_id"] for q in p.welcome["peers"]} for p in joined}
    for p in joined:
        for q in joined:
            if p is not q:
                assert (q.peer_id in seen[p.peer_id]) != (p.peer_id in seen[q.peer_id])
