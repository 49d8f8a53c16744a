"""Who may connect, and how refusals look: the server accepts, then closes with a documented code."""

import pytest
from channels.db import database_sync_to_async

from calls import tickets
from calls.models import CallParticipant, RoomMembership
from tests.signaling import ORIGIN, Peer, join, open_socket

pytestmark = [pytest.mark.django_db(transaction=True)]


async def close_code_for(path: str, headers=None) -> int:
    peer = Peer(await open_socket(path, headers=headers))
    return await peer.closed_with()


async def ticket_for(user, room) -> str:
    return await database_sync_to_async(tickets.issue_ticket)(user=user, room=room)


async def test_no_credentials_is_4401(layer, public_room):
    assert await close_code_for(f"/ws/rooms/{public_room.slug}/") == 4401


async def test_a_forged_ticket_is_4401(layer, public_room):
    assert await close_code_for(f"/ws/rooms/{public_room.slug}/?ticket=alice:forged") == 4401


async def test_a_ticket_works_once(layer, public_room, alice):
    ticket = await ticket_for(alice, public_room)
    first = Peer(await open_socket(f"/ws/rooms/{public_room.slug}/?ticket={ticket}"))
    assert (await first.receive())["type"] == "welcome"
    assert await close_code_for(f"/ws/rooms/{public_room.slug}/?ticket={ticket}") == 4401
    await first.leave()


async def test_a_ticket_is_bound_to_its_room(layer, public_room, private_room, alice):
    ticket = await ticket_for(alice, private_room)
    assert await close_code_for(f"/ws/rooms/{public_room.slug}/?ticket={ticket}") == 4401


async def test_an_expired_ticket_is_4401(layer, public_room, alice, settings):
    ticket = await ticket_for(alice, public_room)
    settings.PARLEY_SIGNALING = {**settings.PARLEY_SIGNALING, "TICKET_TTL": -1}
    assert await close_code_for(f"/ws/rooms/{public_room.slug}/?ticket={ticket}") == 4401


async def test_a_session_cookie_authenticates_a_browser(layer, public_room, alice, client):
    await database_sync_to_async(client.force_login)(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    peer = Peer(await open_socket(f"/ws/rooms/{public_room.slug}/", headers=[ORIGIN, (b"cookie", cookie)]))
    welcome = await peer.receive_type("welcome")
    assert (await CallParticipant.objects.aget(peer_id=welcome["peer_id"])).user_id == alice.id
    await peer.leave()


async def test_a_foreign_origin_is_refused_with_4403(layer, public_room, alice):
    ticket = await ticket_for(alice, public_room)
    path = f"/ws/rooms/{public_room.slug}/?ticket={ticket}"
    assert await close_code_for(path, headers=[(b"origin", b"https://evil.example")]) == 4403


async def test_a_trusted_origin_is_accepted(layer, public_room, alice, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example"]
    peer = await join(alice, public_room, headers=[(b"origin", b"https://app.example")])
    assert peer.peer_id
    await peer.leave()


async def test_programs_without_an_origin_header_may_use_a_ticket(layer, public_room, alice):
    peer = await join(alice, public_room, headers=[])
    assert peer.peer_id
    await peer.leave()


async def test_a_missing_room_is_4404_for_a_session_user(layer, alice, client):
    await database_sync_to_async(client.force_login)(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    assert await close_code_for("/ws/rooms/nowhere/", headers=[ORIGIN, (b"cookie", cookie)]) == 4404


async def test_an_outsider_is_told_a_private_room_does_not_exist(layer, private_room, mallory):
    ticket = await ticket_for(mallory, private_room)
    assert await close_code_for(f"/ws/rooms/{private_room.slug}/?ticket={ticket}") == 4404


async def test_members_may_join_a_private_room(layer, private_room, bob):
    peer = await join(bob, private_room)
    assert peer.welcome["room"]["slug"] == private_room.slug
    await peer.leave()


async def test_a_locked_room_admits_owner_and_moderators_only(layer, private_room, alice, bob, mallory):
    private_room.locked = True
    await private_room.asave()
    await RoomMembership.objects.acreate(room=private_room, user=mallory, role="moderator")
    ticket = await ticket_for(bob, private_room)
    assert await close_code_for(f"/ws/rooms/{private_room.slug}/?ticket={ticket}") == 4403
    owner, moderator = await join(alice, private_room), await join(mallory, private_room)
    await owner.leave(), await moderator.leave()


async def test_a_full_room_refuses_the_next_peer_with_4409(layer, public_room, alice, bob, mallory):
    public_room.max_participants = 2
    await public_room.asave()
    a, b = await join(alice, public_room), await join(bob, public_room)
    ticket = await ticket_for(mallory, public_room)
    assert await close_code_for(f"/ws/rooms/{public_room.slug}/?ticket={ticket}") == 4409
    await b.leave()
    c = await join(mallory, public_room)  # room again
    await a.leave(), await c.leave()
