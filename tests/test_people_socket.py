"""The per-user socket /ws/me/ on the in-memory layer and on real Redis: presence to contacts only, every tab of a
user, ring frames for every outcome, live rooms, liveness, and the protocol's conventions."""

import asyncio
import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from calls import tickets
from calls.protocol import CloseCode
from people import presence, services
from people.models import MeSocket
from tests.helpers import eventually

pytestmark = pytest.mark.django_db(transaction=True)


class Me:
    """One /ws/me/ socket (a tab) of one user."""

    def __init__(self, peer):
        self.peer = peer
        self.welcome = None

    async def send(self, frame):
        await self.peer.ws.send_to(text_data=json.dumps(frame))

    async def next(self, kind: str, timeout: float = 5) -> dict:
        """The next frame of that type (frames of other types before it are skipped)."""
        async def wait():
            while True:
                frame = await self.peer.receive_raw(timeout)
                if frame["type"] == kind:
                    return frame
        return await asyncio.wait_for(wait(), timeout)

    async def nothing_of(self, kind: str, timeout: float = 0.5) -> bool:
        try:
            await self.next(kind, timeout)
        except (TimeoutError, AssertionError):
            return True
        return False


@pytest.fixture
async def me(peers):
    async def open_for(user, *, headers=None):
        ticket = await database_sync_to_async(tickets.issue_ticket)(user=user, target=tickets.ME)
        socket = Me(await peers.open(f"/ws/me/?ticket={ticket}", headers=headers))
        socket.welcome = await socket.peer.receive_raw()
        assert socket.welcome["type"] == "welcome", socket.welcome
        return socket
    return open_for


@pytest.fixture(autouse=True)
def _short_liveness(settings):
    settings.PARLEY_SIGNALING = {**settings.PARLEY_SIGNALING, "NODE_BEAT_SECONDS": 0.3}


async def test_the_welcome_says_who_and_what_is_ringing(me, alice, bob, room):
    ring = await database_sync_to_async(services.start_ring)(caller=alice, callee_username="bob")
    bob_tab = await me(bob)
    assert bob_tab.welcome["user"]["username"] == "bob" and bob_tab.welcome["presence"] == "online"
    assert [r["id"] for r in bob_tab.welcome["rings"]] == [ring.pk]


async def test_presence_reaches_contacts_and_no_one_else(me, alice, bob, mallory, room):
    alice_tab, mallory_tab = await me(alice), await me(mallory)
    bob_tab = await me(bob)
    frame = await alice_tab.next("presence")
    assert frame["user"]["username"] == "bob" and frame["presence"] == "online"
    await bob_tab.peer.leave()
    assert (await alice_tab.next("presence"))["presence"] == "offline"
    assert await mallory_tab.nothing_of("presence")


async def test_a_user_is_offline_only_when_their_last_tab_closes(me, alice, bob, room):
    alice_tab = await me(alice)
    first, second = await me(bob), await me(bob)
    assert (await alice_tab.next("presence"))["presence"] == "online"
    await first.peer.leave()
    assert await alice_tab.nothing_of("presence")
    await second.peer.leave()
    assert (await alice_tab.next("presence"))["presence"] == "offline"
    assert not await database_sync_to_async(MeSocket.objects.filter(user=bob).exists)()


async def test_a_ring_and_its_answer_reach_every_tab_of_both(me, alice, bob, room):
    alice_tab, bob_one, bob_two = await me(alice), await me(bob), await me(bob)
    ring = await database_sync_to_async(services.start_ring)(caller=alice, callee_username="bob")
    for tab in (bob_one, bob_two):
        frame = await tab.next("ring")
        assert frame["ring"]["id"] == ring.pk and frame["ring"]["caller"]["username"] == "alice"
    await database_sync_to_async(services.accept_ring)(by=bob, ring_id=ring.pk)
    for tab in (alice_tab, bob_one, bob_two):
        answered = await tab.next("ring-answered")
        assert answered["ring"]["state"] == "answered" and answered["ring"]["room"]["slug"].startswith("direct-")


@pytest.mark.parametrize("outcome, frame, state", [("decline", "ring-declined", "declined"),
                                                   ("busy", "ring-declined", "busy"),
                                                   ("cancel", "ring-ended", "cancelled")])
async def test_every_other_outcome_reaches_both(me, alice, bob, room, outcome, frame, state):
    alice_tab, bob_tab = await me(alice), await me(bob)
    ring = await database_sync_to_async(services.start_ring)(caller=alice, callee_username="bob")
    await bob_tab.next("ring")
    if outcome == "cancel":
        await database_sync_to_async(services.cancel_ring)(by=alice, ring_id=ring.pk)
    else:
        await database_sync_to_async(services.decline_ring)(by=bob, ring_id=ring.pk, busy=outcome == "busy")
    for tab in (alice_tab, bob_tab):
        assert (await tab.next(frame))["ring"]["state"] == state


def only_here_a_minute_passes(settings, monkeypatch):
    """Rings run out a minute from now for every other process on the test database, and now for this one.

    The session's live server sweeps the test database too: a ring it ended would be told on its own channel layer,
    never on the test's. So rings last 60 s, and this process's timer (after 1 s) and sweep see the time 61 s on."""
    settings.PARLEY_RING_SECONDS = 60
    expire_rings, expire_later, sweep = services.expire_rings, services.expire_later, services.sweep
    later = lambda: timezone.now() + timedelta(seconds=61)  # noqa: E731
    monkeypatch.setattr(services, "expire_rings", lambda **kwargs: expire_rings(**{"now": later(), **kwargs}))
    monkeypatch.setattr(services, "expire_later", lambda ring_id, seconds: expire_later(ring_id, 1))
    monkeypatch.setattr(services, "sweep", lambda: sweep(now=later()))


async def test_a_ring_nobody_answers_ends_missed_by_the_servers_timer(me, alice, bob, room, settings, monkeypatch):
    only_here_a_minute_passes(settings, monkeypatch)
    alice_tab, bob_tab = await me(alice), await me(bob)
    await database_sync_to_async(services.start_ring)(caller=alice, callee_username="bob")
    await bob_tab.next("ring")
    for tab in (alice_tab, bob_tab):
        assert (await tab.next("ring-ended", timeout=4))["ring"]["state"] == "missed"


async def test_the_sweep_ends_a_ring_whose_timer_is_gone(me, alice, bob, room, settings, monkeypatch):
    only_here_a_minute_passes(settings, monkeypatch)
    monkeypatch.setattr(services, "expire_later", lambda ring_id, seconds: None)  # its process died, say
    alice_tab = await me(alice)
    await database_sync_to_async(services.start_ring)(caller=alice, callee_username="bob")
    assert (await alice_tab.next("ring-ended", timeout=10))["ring"]["state"] == "missed"


async def test_a_call_makes_its_people_in_call_and_its_room_live(me, peers, alice, bob, room):
    alice_tab = await me(alice)
    bob_peer = await peers(bob, room)
    assert (await alice_tab.next("presence"))["presence"] == "in-call"
    live = await alice_tab.next("room-live")
    assert live["room"] == {"slug": room.slug, "name": room.name}
    assert [p["username"] for p in live["participants"]] == ["bob"]
    await bob_peer.ws.send_to(text_data=json.dumps({"type": "leave"}))
    assert (await alice_tab.next("presence"))["presence"] == "offline"  # told before the room's news
    assert (await alice_tab.next("room-live"))["participants"] == []


async def test_a_silent_socket_times_out_and_goes_offline(me, alice, bob, room, settings):
    settings.PARLEY_SIGNALING = {**settings.PARLEY_SIGNALING, "PEER_TIMEOUT": 1.0, "HEARTBEAT_SECONDS": 0.2}
    alice_tab = await me(alice)

    async def keep_alive():  # Alice's page pings; Bob's socket is dead without a close (no frame, no FIN)
        while True:
            await alice_tab.send({"type": "ping"})
            await asyncio.sleep(0.2)

    pinging = asyncio.create_task(keep_alive())
    try:
        bob_tab = await me(bob)
        await alice_tab.next("presence")
        assert await bob_tab.peer.closed_with(timeout=4) == CloseCode.TIMED_OUT
        assert (await alice_tab.next("presence"))["presence"] == "offline"
    finally:
        pinging.cancel()
    assert await eventually(lambda: database_sync_to_async(lambda: not MeSocket.objects.filter(user=bob).exists())())


async def test_pings_are_answered_and_bad_frames_refused(me, alice):
    tab = await me(alice)
    await tab.send({"type": "ping"})
    assert await tab.peer.receive_raw() == {"type": "pong"}
    await tab.send({"type": "ring"})
    assert (await tab.peer.receive_raw())["code"] == "unknown-type"
    await tab.peer.ws.send_to(text_data="{nope")
    assert (await tab.peer.receive_raw())["code"] == "bad-json"
    await tab.peer.ws.send_to(text_data=json.dumps({"type": "ping", "pad": "x" * 70_000}))
    assert (await tab.peer.receive_raw())["code"] == "too-large"


async def test_a_socket_without_credentials_or_from_a_foreign_origin_is_refused(peers, alice):
    anonymous = await peers.open("/ws/me/")
    assert await anonymous.closed_with() == CloseCode.NOT_AUTHENTICATED
    ticket = await database_sync_to_async(tickets.issue_ticket)(user=alice, target=tickets.ME)
    foreign = await peers.open(f"/ws/me/?ticket={ticket}", headers=[(b"origin", b"http://evil.example")])
    assert await foreign.closed_with() == CloseCode.FORBIDDEN


async def test_a_room_ticket_does_not_open_the_me_socket(peers, alice, room):
    ticket = await database_sync_to_async(tickets.issue_ticket)(user=alice, room=room)
    socket = await peers.open(f"/ws/me/?ticket={ticket}")
    assert await socket.closed_with() == CloseCode.NOT_AUTHENTICATED


async def test_signing_out_closes_every_me_socket_of_the_user(me, alice, bob, room):
    first, second = await me(bob), await me(bob)
    await database_sync_to_async(presence.close_sockets_of)(user_id=bob.pk)
    for tab in (first, second):
        assert await tab.peer.closed_with() == CloseCode.NOT_AUTHENTICATED
    assert await eventually(lambda: database_sync_to_async(lambda: not MeSocket.objects.filter(user=bob).exists())())


@pytest.mark.parametrize("change", ["password", "deactivation"])
async def test_a_new_password_or_a_deactivation_closes_the_me_sockets(me, alice, bob, room, change):
    tab = await me(bob)

    def change_credentials():
        if change == "password":
            bob.set_password("an entirely new pass phrase")
        else:
            bob.is_active = False
        bob.save()

    await database_sync_to_async(change_credentials)()
    assert await tab.peer.closed_with() == CloseCode.NOT_AUTHENTICATED
