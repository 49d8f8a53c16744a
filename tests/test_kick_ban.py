"""Someone removed from a call cannot join the same call again for PARLEY_KICK_BAN_SECONDS: the rule reads the
call log (a `kicked` participation of theirs in the live call), and the join is refused with 4403 saying so."""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from calls import services
from calls.models import CallParticipant
from calls.services import JoinRefused
from tests.helpers import in_call
from tests.signaling import ticket_path

pytestmark = pytest.mark.django_db


def kicked(room, by, user) -> CallParticipant:
    participant = in_call(room, user)
    services.kick_participant(by=by, participant=participant)
    return participant


def test_a_removed_member_is_refused_with_4403_and_told_for_how_long(room, alice, bob, carol):
    in_call(room, carol)  # the call goes on without bob
    kicked(room, alice, bob)
    with pytest.raises(JoinRefused) as refusal:
        in_call(room, bob)
    assert refusal.value.close_code == 4403
    assert str(refusal.value) == "You were removed from this call. You can join it again in 5 min."
    assert CallParticipant.objects.filter(user=bob).count() == 1  # no new row


def test_the_ban_ends_after_its_time(room, alice, bob, carol, settings):
    in_call(room, carol)
    participant = kicked(room, alice, bob)
    earlier = timezone.now() - timedelta(seconds=400)
    CallParticipant.objects.filter(pk=participant.pk).update(joined_at=earlier, left_at=earlier + timedelta(seconds=99))
    assert in_call(room, bob).user == bob


def test_the_ban_is_for_that_call_only(room, public_room, alice, bob, carol):
    kicked(room, alice, bob)  # bob was the only one: the call ended with his removal
    assert in_call(room, bob).user == bob  # a new call of the same room
    assert in_call(public_room, bob).user == bob


def test_no_ban_when_the_setting_is_zero(room, alice, bob, carol, settings):
    settings.PARLEY_KICK_BAN_SECONDS = 0
    in_call(room, carol)
    kicked(room, alice, bob)
    assert in_call(room, bob).user == bob


def test_other_leave_reasons_do_not_ban(room, bob, carol):
    in_call(room, carol)
    services.leave_call(peer_id=in_call(room, bob).peer_id, reason=services.Reason.LEFT)
    assert in_call(room, bob).user == bob


def test_the_call_state_says_why_before_the_camera_starts(client, room, alice, bob, carol):
    in_call(room, carol)
    kicked(room, alice, bob)
    client.force_login(bob)
    state = client.get(f"/rooms/{room.slug}/call-state/").json()
    assert state["may_join"] is False and state["close_code"] == 4403
    assert state["refusal"].startswith("You were removed from this call.")
    assert state["banned_until"] is not None
    body = client.get(room.get_absolute_url()).content.decode()
    assert "You were removed from this call." in body and 'id="join-button" disabled' in body


@pytest.mark.django_db(transaction=True)
async def test_the_socket_of_a_removed_person_is_closed_4403_on_rejoin(peers, public_room, alice, bob):
    a, b = await peers.together(public_room, alice, bob)
    participant = await CallParticipant.objects.aget(peer_id=b.peer_id)
    await database_sync_to_async(services.kick_participant)(by=alice, participant=participant)
    assert await b.closed_with() == 4403
    again = await peers.open(await ticket_path(bob, public_room))
    assert await again.closed_with() == 4403
    assert await CallParticipant.objects.filter(user=bob).acount() == 1
