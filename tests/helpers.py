"""Helpers shared by the test files: what is missing, API clients, waiting for what another process writes, and
data set up for tests."""

import asyncio
import inspect
import os
import time
import uuid
from datetime import timedelta
from typing import NoReturn

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from calls import services
from calls.models import Call, CallParticipant, Invite
from calls.services import Reason

IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(message: str) -> NoReturn:
    """Something a test needs is missing (a service, a program): skip locally; in CI that is a failure."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def api_as(user) -> APIClient:
    """A REST API client authenticated as the user (None: anonymous)."""
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


async def eventually(predicate, timeout: float = 5, interval: float = 0.05):
    """Call `predicate` (a function, or an async one) until it returns something true, and return that.

    For what another process or thread writes a moment after the test sees the cause (a server recording a leave
    after its socket closed): the test fails after `timeout` seconds, with the last value seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"still {value!r} after {timeout} s: {getattr(predicate, '__qualname__', predicate)}")
        await asyncio.sleep(interval)


def in_call(room, user) -> CallParticipant:
    """The user joins the room's live call, as the signaling consumer makes them join (no socket)."""
    joined = services.join_call(room_slug=room.slug, user=user, peer_id=str(uuid.uuid4()), relay_node="test-node")
    return joined.participant


def a_past_call(room, people, *, minutes_ago: float = 120, length: timedelta = timedelta(minutes=12)) -> Call:
    """An ended call that everyone in `people` took part in from start to end (the first one started it)."""
    started = timezone.now() - timedelta(minutes=minutes_ago)
    call = Call.objects.create(room=room, room_name=room.name, started_by=people[0], started_at=started,
                               ended_at=started + length)
    for person in people:
        CallParticipant.objects.create(call=call, user=person, joined_at=started, left_at=started + length,
                                       leave_reason=Reason.LEFT, user_agent="pytest")
    return call


def an_invite(room, **fields) -> Invite:
    """An invite link to the room, valid for an hour unless `fields` say otherwise."""
    return Invite.objects.create(room=room, **{"expires_at": timezone.now() + timedelta(hours=1), **fields})
