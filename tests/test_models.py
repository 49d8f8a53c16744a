from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from calls import services
from calls.models import Call, CallParticipant, Room, RoomMembership, format_duration
from calls.services import Reason

pytestmark = pytest.mark.django_db


def test_create_room_makes_the_creator_its_owner(alice):
    room = services.create_room(owner=alice, name="Design review")
    assert room.slug == "design-review"
    assert room.role_of(alice) == "owner"


def test_room_slugs_stay_unique(alice):
    first = services.create_room(owner=alice, name="Stand-up")
    second = services.create_room(owner=alice, name="Stand-up")
    assert (first.slug, second.slug) == ("stand-up", "stand-up-2")


@pytest.mark.parametrize("size", [0, 1, 17, 1000])
def test_database_refuses_max_participants_out_of_bounds(alice, size):
    with pytest.raises(IntegrityError):
        Room.objects.create(owner=alice, name="Too odd", slug="too-odd", max_participants=size)


@pytest.mark.parametrize("size", [2, 8, 16])
def test_database_accepts_max_participants_in_bounds(alice, size):
    Room.objects.create(owner=alice, name="Fine", slug=f"fine-{size}", max_participants=size)


def test_database_refuses_a_second_live_call_in_a_room(public_room, alice):
    Call.objects.create(room=public_room, started_by=alice)
    with pytest.raises(IntegrityError), transaction.atomic():
        Call.objects.create(room=public_room, started_by=alice)


def test_a_new_call_may_start_once_the_last_one_ended(public_room, alice):
    first = Call.objects.create(room=public_room, started_by=alice)
    first.ended_at = timezone.now()
    first.save()
    assert Call.objects.create(room=public_room, started_by=alice).is_live


def test_database_refuses_a_call_ending_before_it_started(public_room):
    now = timezone.now()
    with pytest.raises(IntegrityError):
        Call.objects.create(room=public_room, started_at=now, ended_at=now - timedelta(seconds=1))


def test_database_refuses_a_second_owner(public_room, mallory):
    with pytest.raises(IntegrityError):  # mallory is no member yet: only the one-owner rule can refuse her
        RoomMembership.objects.create(room=public_room, user=mallory, role="owner")


def test_database_refuses_a_duplicate_membership(private_room, bob):
    with pytest.raises(IntegrityError):
        RoomMembership.objects.create(room=private_room, user=bob, role="moderator")


def test_a_participant_that_left_must_say_why(public_room, alice):
    call = Call.objects.create(room=public_room)
    participant = CallParticipant.objects.create(call=call, user=alice)
    participant.left_at = timezone.now()
    with pytest.raises(IntegrityError):
        participant.save()


def test_durations_are_derived_from_the_timestamps(public_room, alice):
    start = timezone.now() - timedelta(minutes=5)
    call = Call.objects.create(room=public_room, started_at=start, ended_at=start + timedelta(seconds=75))
    assert call.duration == timedelta(seconds=75)
    assert format_duration(call.duration) == "0:01:15"


def test_querysets_answer_the_common_questions(public_room, private_room, alice, bob, mallory):
    an_hour_ago = timezone.now() - timedelta(hours=1)
    live = Call.objects.create(room=public_room, started_by=bob)
    ended = Call.objects.create(room=private_room, started_by=bob, started_at=an_hour_ago, ended_at=timezone.now())
    CallParticipant.objects.create(call=live, user=bob)
    CallParticipant.objects.create(call=ended, user=bob, joined_at=an_hour_ago, left_at=timezone.now(),
                                   leave_reason=Reason.LEFT)

    assert list(Call.objects.live()) == [live]
    assert set(Call.objects.for_user(bob)) == {live, ended}
    assert set(Call.objects.for_user(alice)) == {live, ended}  # she owns both rooms
    assert list(Call.objects.for_user(mallory)) == []
    assert set(Room.objects.visible_to(mallory)) == {public_room}
    assert set(Room.objects.visible_to(bob)) == {public_room, private_room}
