"""The chat frame (docs/signaling.md, "Chat"): relayed through the signaling socket to everyone else in the call, as
the page does in SFU mode; on the in-memory layer and on real Redis. It needs no Janus: the frame is the same in
both modes."""

import pytest

pytestmark = [pytest.mark.django_db(transaction=True)]


async def test_a_chat_message_reaches_everyone_else_in_the_call_with_from_set(peers, public_room, alice, bob, carol):
    a, b, c = await peers.together(public_room, alice, bob, carol)
    await b.send({"type": "chat", "text": "Hello, both of you", "from": a.peer_id, "to": c.peer_id})
    for other in (a, c):
        assert await other.receive() == {"type": "chat", "from": b.peer_id, "text": "Hello, both of you"}
    assert await b.nothing()  # not echoed to the sender


async def test_chat_stays_in_its_own_call(peers, public_room, private_room, alice, bob, mallory):
    a, m = await peers.together(public_room, alice, mallory)
    b = await peers(bob, private_room)
    await m.send({"type": "chat", "text": "only for this call"})
    assert (await a.receive())["text"] == "only for this call"
    assert await b.nothing()


@pytest.mark.parametrize("frame", [
    {"type": "chat"},
    {"type": "chat", "text": 5},
    {"type": "chat", "text": "   "},
    {"type": "chat", "text": "x" * 2001},
])
async def test_a_bad_chat_frame_is_bad_message_and_relays_nothing(peers, public_room, alice, bob, frame):
    a, b = await peers.together(public_room, alice, bob)
    await a.send(frame)
    assert (await a.receive_type("error"))["code"] == "bad-message"
    assert await b.nothing()


async def test_chat_counts_against_the_frame_rate_limit(peers, public_room, alice, bob, settings):
    settings.PARLEY_SIGNALING = {**settings.PARLEY_SIGNALING, "RATE_PER_SECOND": 1, "RATE_BURST": 3,
                                 "FLOOD_GRACE_SECONDS": 60}
    a, b = await peers.together(public_room, alice, bob)
    for n in range(3):
        await a.send({"type": "chat", "text": f"message {n}"})
    await a.send({"type": "chat", "text": "one too many"})
    assert (await a.receive_type("error"))["code"] == "rate-limited"
    assert [(await b.receive())["text"] for _ in range(3)] == ["message 0", "message 1", "message 2"]
    assert await b.nothing()


async def test_a_peer_back_from_a_suspension_gets_the_chat_it_missed(peers, public_room, alice, bob):
    a, b = await peers.together(public_room, alice, bob)
    await b.drop()
    assert (await a.receive_type("peer-state"))["state"] == "reconnecting"
    await a.send({"type": "chat", "text": "while you were away"})
    assert await a.nothing()  # kept for bob's replay, no error
    back = await peers(bob, public_room, resume=b)
    assert back.welcome["replay"] == "complete"
    assert await back.receive() == {"type": "chat", "from": a.peer_id, "text": "while you were away"}
