"""Who may connect, and how refusals look: the server accepts, then closes with a documented code."""

import pytest
from channels.db import database_sync_to_async

from accounts.models import AuditEvent
from calls import services, tickets
from calls.models import CallParticipant
from tests.signaling import ORIGIN, ticket_path

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def close_code_for(peers):
    """The code the server closes a socket to `path` with."""
    async def close_code(path: str, headers=None) -> int:
        return await (await peers.open(path, headers=headers)).closed_with()
    return close_code


async def session_cookie(client, user) -> tuple[bytes, bytes]:
    """The header of a browser that logged in as the user."""
    await database_sync_to_async(client.force_login)(user)
    return b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()


async def test_no_credentials_is_4401(close_code_for, public_room):
    assert await close_code_for(f"/ws/rooms/{public_room.slug}/") == 4401


async def test_a_forged_ticket_is_4401(close_code_for, public_room):
    assert await close_code_for(f"/ws/rooms/{public_room.slug}/?ticket=alice:forged") == 4401


async def test_a_ticket_works_once(peers, close_code_for, public_room, alice):
    path = await ticket_path(alice, public_room)
    first = await peers.open(path)
    assert (await first.receive())["type"] == "welcome"
    assert await close_code_for(path) == 4401


async def test_a_ticket_is_bound_to_its_room(close_code_for, public_room, private_room, alice):
    ticket = await database_sync_to_async(tickets.issue_ticket)(user=alice, room=private_room)
    assert await close_code_for(f"/ws/rooms/{public_room.slug}/?ticket={ticket}") == 4401


async def test_an_expired_ticket_is_4401(close_code_for, public_room, alice, settings):
    path = await ticket_path(alice, public_room)
    settings.PARLEY_SIGNALING = {**settings.PARLEY_SIGNALING, "TICKET_TTL": -1}
    assert await close_code_for(path) == 4401


async def test_a_session_cookie_authenticates_a_browser(peers, public_room, alice, client):
    peer = await peers.open(f"/ws/rooms/{public_room.slug}/", headers=[ORIGIN, await session_cookie(client, alice)])
    welcome = await peer.receive_type("welcome")
    assert (await CallParticipant.objects.aget(peer_id=welcome["peer_id"])).user_id == alice.id


async def test_a_foreign_origin_is_refused_with_4403(close_code_for, public_room, alice):
    path = await ticket_path(alice, public_room)
    assert await close_code_for(path, headers=[(b"origin", b"https://evil.example")]) == 4403


async def test_a_trusted_origin_is_accepted(peers, public_room, alice, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example"]
    peer = await peers(alice, public_room, headers=[(b"origin", b"https://app.example")])
    assert peer.peer_id


async def test_programs_without_an_origin_header_may_use_a_ticket(peers, public_room, alice):
    peer = await peers(alice, public_room, headers=[])
    assert peer.peer_id


async def test_a_missing_room_is_4404_for_a_session_user(close_code_for, alice, client):
    assert await close_code_for("/ws/rooms/nowhere/", headers=[ORIGIN, await session_cookie(client, alice)]) == 4404


async def test_an_outsider_is_told_a_private_room_does_not_exist(close_code_for, private_room, mallory):
    assert await close_code_for(await ticket_path(mallory, private_room)) == 4404


async def test_members_may_join_a_private_room(peers, private_room, bob):
    peer = await peers(bob, private_room)
    assert peer.welcome["room"]["slug"] == private_room.slug


async def test_a_locked_room_admits_owner_and_moderators_only(peers, close_code_for, private_room, alice, bob,
                                                              carol):
    await database_sync_to_async(services.update_room)(by=alice, room=private_room, locked=True)
    assert await close_code_for(await ticket_path(bob, private_room)) == 4403
    owner, moderator = await peers(alice, private_room), await peers(carol, private_room)
    assert owner.peer_id and moderator.peer_id


async def test_a_full_room_refuses_the_next_peer_with_4409(peers, close_code_for, public_room, alice, bob, mallory):
    await database_sync_to_async(services.update_room)(by=alice, room=public_room, max_participants=2)
    await peers(alice, public_room)
    bob_peer = await peers(bob, public_room)
    assert await close_code_for(await ticket_path(mallory, public_room)) == 4409
    await bob_peer.leave()
    assert (await peers(mallory, public_room)).peer_id  # room again


async def test_over_the_joins_waiting_a_socket_is_told_busy_at_once_and_its_resume_token_still_works(
        peers, public_room, alice, settings):
    first = await peers(alice, public_room)
    await first.drop()  # a lost connection: the participation waits for a resume
    limits = settings.PARLEY_SIGNALING
    settings.PARLEY_SIGNALING = {**limits, "MAX_JOINING": 0}
    assert await (await peers.open(await ticket_path(alice, public_room, resume=first))).closed_with() == 4503
    assert not await AuditEvent.objects.filter(action="join.refused").aexists()  # shedding writes nothing
    settings.PARLEY_SIGNALING = limits
    again = await peers(alice, public_room, resume=first)
    assert again.welcome["resumed"] and again.welcome["peer_id"] == first.welcome["peer_id"]
