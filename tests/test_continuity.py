"""A participation outlives its socket: suspend, resume, replay (docs/signaling.md, "Resume")."""

import asyncio

import pytest

from calls.models import Call, CallParticipant
from calls.protocol import CloseCode
from calls.services import Reason
from tests.signaling import join

pytestmark = [pytest.mark.django_db(transaction=True)]

CANDIDATE = {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", "sdpMid": "0",
             "sdpMLineIndex": 0, "usernameFragment": "abcd"}


@pytest.fixture
def limits(settings):
    def set_limits(**changes):
        settings.PARLEY_SIGNALING = {**settings.PARLEY_SIGNALING, **changes}
    return set_limits


async def drop(peer) -> None:
    """The client's connection is lost: no close frame."""
    await peer.ws.send_input({"type": "websocket.disconnect", "code": 1006})


async def candidates_to(sender, target, n: int) -> list[dict]:
    sent = []
    for i in range(n):
        candidate = {**CANDIDATE, "candidate": f"candidate:{i} 1 udp 2122260223 127.0.0.1 {50000 + i} typ host"}
        await sender.send({"type": "candidate", "to": target.peer_id, "candidate": candidate})
        sent.append(candidate)
    await sender.send({"type": "ping"})  # frames are handled in order: once this is answered, those were
    assert await sender.receive() == {"type": "pong"}
    return sent


async def test_a_dropped_peer_resumes_with_the_same_peer_id_and_gets_what_it_missed(layer, public_room, alice, bob):
    a, b = await join(alice, public_room), await join(bob, public_room)
    assert (await a.receive_type("peer-joined"))["peer"]["peer_id"] == b.peer_id
    assert b.welcome["resume_seconds"] == 30 and b.welcome["resumed"] is False and len(b.welcome["resume_token"]) >= 22

    await drop(b)
    assert await a.receive() == {"type": "peer-state", "peer_id": b.peer_id, "state": "reconnecting"}
    sent = await candidates_to(a, b, 3)  # accepted for the replay: no unknown-peer, no error

    again = await join(bob, public_room, resume=b)
    assert again.welcome["resumed"] is True and again.welcome["replay"] == "complete"
    assert again.peer_id == b.peer_id and again.welcome["resume_token"] != b.welcome["resume_token"]
    assert [p["peer_id"] for p in again.welcome["peers"]] == [a.peer_id]
    assert again.welcome["peers"][0]["polite"] is True  # unchanged: bob joined after alice
    replayed = [await again.receive_raw() for _ in range(3)]
    assert [f["seq"] for f in replayed] == [b.last_seq + 1, b.last_seq + 2, b.last_seq + 3]
    assert [f["candidate"] for f in replayed] == sent and all(f["from"] == a.peer_id for f in replayed)
    assert await a.receive() == {"type": "peer-state", "peer_id": b.peer_id, "state": "connected"}

    rows = [p async for p in CallParticipant.objects.filter(user=bob)]
    assert len(rows) == 1 and rows[0].reconnects == 1 and rows[0].left_at is None and rows[0].suspended_at is None
    await again.send({"type": "offer", "to": a.peer_id, "sdp": "v=0\r\n"})
    assert (await a.receive_type("offer"))["from"] == b.peer_id
    await again.leave(), await a.leave()


async def test_frames_the_socket_was_sent_but_the_client_never_saw_are_replayed(layer, public_room, alice, bob):
    a, b = await join(alice, public_room), await join(bob, public_room)
    await a.receive_type("peer-joined")
    sent = await candidates_to(a, b, 2)
    await b.receive_raw()  # bob's page saw the first one only: the second was lost with the connection
    b.last_seq = 1
    await drop(b)
    await a.receive_type("peer-state")
    again = await join(bob, public_room, resume=b)
    assert again.welcome["replay"] == "complete"
    assert (await again.receive())["candidate"] == sent[1]
    await again.leave(), await a.leave()


async def test_a_resume_closes_a_half_open_old_socket_with_4410(layer, public_room, alice, bob):
    a, b = await join(alice, public_room), await join(bob, public_room)
    await a.receive_type("peer-joined")
    again = await join(bob, public_room, resume=b)  # the old socket never noticed it was gone
    assert again.welcome["resumed"] is True and again.peer_id == b.peer_id
    assert await b.closed_with() == CloseCode.REPLACED
    assert await a.receive() == {"type": "peer-state", "peer_id": b.peer_id, "state": "connected"}
    assert await a.nothing()  # no peer-left, no peer-joined
    assert await CallParticipant.objects.filter(user=bob).acount() == 1
    await again.leave(), await a.leave()


async def test_when_the_window_ends_the_others_see_peer_left_dated_at_the_loss(layer, public_room, alice, bob,
                                                                               limits):
    limits(RESUME_SECONDS=0.5, NODE_BEAT_SECONDS=0.1)
    a, b = await join(alice, public_room), await join(bob, public_room)
    await a.receive_type("peer-joined")
    await drop(b)
    await a.receive_type("peer-state")
    lost_at = (await CallParticipant.objects.aget(peer_id=b.peer_id)).suspended_at
    assert await a.receive(timeout=5) == {"type": "peer-left", "peer_id": b.peer_id, "reason": "disconnected"}
    row = await CallParticipant.objects.aget(peer_id=b.peer_id)
    assert row.left_at == lost_at and row.leave_reason == Reason.DISCONNECTED

    late = await join(bob, public_room, resume=b)
    assert late.welcome["resumed"] is False and late.peer_id != b.peer_id
    await late.leave(), await a.leave()


async def test_a_replay_that_overflows_its_buffer_is_partial(layer, public_room, alice, bob, limits):
    limits(RESUME_BUFFER=2)
    a, b = await join(alice, public_room), await join(bob, public_room)
    await a.receive_type("peer-joined")
    sent = await candidates_to(a, b, 5)  # b's socket sent all five, and keeps the last two for a replay
    await drop(b)
    await a.receive_type("peer-state")
    again = await join(bob, public_room, resume=b)
    assert again.welcome["resumed"] is True and again.welcome["replay"] == "partial"
    assert [(await again.receive_raw())["candidate"] for _ in range(2)] == sent[-2:]  # the newest are kept
    await again.leave(), await a.leave()


async def test_frames_for_an_away_peer_past_its_buffer_are_refused_to_the_sender(layer, public_room, alice, bob,
                                                                                  limits):
    limits(RESUME_BUFFER=2)
    a, b = await join(alice, public_room), await join(bob, public_room)
    await a.receive_type("peer-joined")
    await drop(b)
    await a.receive_type("peer-state")
    await candidates_to(a, b, 2)
    await a.send({"type": "candidate", "to": b.peer_id, "candidate": CANDIDATE})
    refused = await a.receive_type("error")
    assert refused["code"] == "undeliverable" and "reconnecting" in refused["detail"]
    again = await join(bob, public_room, resume=b)
    assert [(await again.receive_raw())["type"] for _ in range(2)] == ["candidate", "candidate"]
    await again.leave(), await a.leave()


async def test_a_rotated_or_foreign_token_is_a_fresh_join(layer, public_room, alice, bob, mallory):
    a, b = await join(alice, public_room), await join(bob, public_room)
    await a.receive_type("peer-joined")
    again = await join(bob, public_room, resume=b)
    assert again.welcome["resumed"] is True
    await a.receive_type("peer-state")

    stale = await join(bob, public_room, resume=b)  # b's token was rotated by the resume
    assert stale.welcome["resumed"] is False and stale.peer_id not in (b.peer_id, again.peer_id)
    thief = await join(mallory, public_room, resume=again)  # another user's token
    assert thief.welcome["resumed"] is False and thief.peer_id != again.peer_id
    assert await CallParticipant.objects.filter(peer_id=again.peer_id, user=bob, left_at__isnull=True).aexists()
    for peer in (thief, stale, again, a):
        await peer.leave()


async def test_the_leave_frame_and_a_clean_close_end_the_participation_at_once(layer, public_room, alice, bob):
    a, b, c = await join(alice, public_room), await join(bob, public_room), await join(bob, public_room)
    await a.receive_type("peer-joined"), await a.receive_type("peer-joined")
    await b.send({"type": "leave"})
    assert await b.closed_with() == CloseCode.NORMAL
    assert await a.receive() == {"type": "peer-left", "peer_id": b.peer_id, "reason": "left"}
    await c.ws.send_input({"type": "websocket.disconnect", "code": CloseCode.NORMAL})
    assert await a.receive() == {"type": "peer-left", "peer_id": c.peer_id, "reason": "left"}
    rows = [row async for row in CallParticipant.objects.filter(user=bob)]
    assert all(row.leave_reason == Reason.LEFT and row.suspended_at is None for row in rows)
    await a.leave()


async def test_two_peers_blipping_together_keep_one_call(layer, public_room, alice, bob):
    a, b = await join(alice, public_room), await join(bob, public_room)
    await a.receive_type("peer-joined")
    await drop(a), await drop(b)
    await asyncio.sleep(0.1)
    a2 = await join(alice, public_room, resume=a)
    b2 = await join(bob, public_room, resume=b)
    assert a2.welcome["resumed"] and b2.welcome["resumed"]
    assert a2.welcome["call_id"] == b2.welcome["call_id"] == a.welcome["call_id"]
    assert await Call.objects.filter(room=public_room).acount() == 1
    call = await Call.objects.aget(pk=a.welcome["call_id"])
    assert call.ended_at is None
    await a2.leave(), await b2.leave()


async def test_frames_a_client_acknowledged_in_its_ping_are_forgotten(layer, public_room, alice, bob):
    a, b = await join(alice, public_room), await join(bob, public_room)
    await a.receive_type("peer-joined")
    await candidates_to(a, b, 2)
    await b.receive(), await b.receive()
    await b.send({"type": "ping", "last_seq": b.last_seq})  # "I handled everything up to here"
    assert await b.receive() == {"type": "pong"}
    await drop(b)
    await a.receive_type("peer-state")
    b.last_seq = 0  # claims it saw nothing: what it acknowledged is gone, so the replay cannot be complete
    again = await join(bob, public_room, resume=b)
    assert again.welcome["resumed"] is True and again.welcome["replay"] == "partial"
    assert await again.nothing()
    await again.leave(), await a.leave()


@pytest.mark.parametrize("last_seq", [-1, "3", 1.5, True, 2**60])
async def test_a_ping_with_a_bad_last_seq_is_refused(layer, public_room, alice, last_seq):
    a = await join(alice, public_room)
    await a.send({"type": "ping", "last_seq": last_seq})
    assert (await a.receive_type("error"))["code"] == "bad-message"
    await a.leave()
