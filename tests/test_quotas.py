"""Quotas: rooms owned, calls at once, call minutes per month. Exceeding one is refused (HTTP 403 with
`code: quota-exceeded`, or close code 4402 at join, through a real server too) and audited; GET /api/me/ shows
the use against the limits."""

import uuid
from datetime import timedelta

import pytest
import websockets
from asgiref.sync import sync_to_async
from rest_framework import status

from accounts.models import AuditEvent, Quota
from calls import services, tickets
from calls.protocol import CloseCode
from tests.helpers import a_past_call, api_as, in_call
from tests.servers import DaphneServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def quotas(settings):
    def set_quotas(**limits):
        settings.PARLEY_QUOTAS = {**settings.PARLEY_QUOTAS, **limits}
    return set_quotas


def join(room, user):
    return services.join_call(room_slug=room.slug, user=user, peer_id=str(uuid.uuid4()), relay_node="test-node")


def test_no_quota_is_set_by_default_so_nothing_is_limited(mallory):
    me = api_as(mallory).get("/api/me/").json()
    assert me["quotas"] == {"rooms": {"limit": None, "used": 0}, "concurrent_calls": {"limit": None, "used": 0},
                            "call_minutes": {"limit": None, "used": 0}}


def test_a_room_over_the_quota_is_refused_with_403_and_audited(quotas, mallory):
    quotas(rooms=2)
    api = api_as(mallory)
    for name in ("One", "Two"):
        assert api.post("/api/rooms/", {"name": name}, format="json").status_code == status.HTTP_201_CREATED
    refused = api.post("/api/rooms/", {"name": "Three"}, format="json")
    assert refused.status_code == status.HTTP_403_FORBIDDEN
    assert refused.json() | {"detail": ""} == {"code": "quota-exceeded", "quota": "rooms", "limit": 2, "used": 2,
                                                "detail": ""}
    assert mallory.owned_rooms.count() == 2
    event = AuditEvent.objects.get(action="quota.refused")
    assert (event.actor, event.detail) == (mallory, {"quota": "rooms", "limit": 2, "used": 2})
    assert api.get("/api/me/").json()["quotas"]["rooms"] == {"limit": 2, "used": 2}


def test_the_room_page_says_the_quota_is_reached(quotas, client, mallory):
    quotas(rooms=1)
    client.force_login(mallory)
    client.post("/", {"name": "One", "visibility": "private", "max_participants": 8})
    page = client.post("/", {"name": "Two", "visibility": "private", "max_participants": 8})
    assert page.status_code == 200 and b"Quota exceeded" in page.content
    assert mallory.owned_rooms.count() == 1


def test_a_users_own_quota_overrides_the_default(quotas, mallory):
    quotas(rooms=1)
    Quota.objects.create(user=mallory, rooms=3)
    api = api_as(mallory)
    codes = [api.post("/api/rooms/", {"name": f"R{n}"}, format="json").status_code for n in range(4)]
    assert codes == [201, 201, 201, 403]
    assert api.get("/api/me/").json()["quotas"]["rooms"] == {"limit": 3, "used": 3}


def test_a_zero_override_means_unlimited(quotas, mallory):
    quotas(rooms=1)
    Quota.objects.create(user=mallory, rooms=0)
    api = api_as(mallory)
    assert [api.post("/api/rooms/", {"name": f"R{n}"}, format="json").status_code for n in range(3)] == [201] * 3


def test_a_second_call_at_once_is_refused_with_4402_and_audited(quotas, bob, room, public_room):
    quotas(concurrent_calls=1)
    in_call(room, bob)
    in_call(room, bob)  # a second tab in the same call is the same call
    with pytest.raises(services.JoinRefused) as refused:
        join(public_room, bob)
    assert refused.value.close_code == CloseCode.QUOTA_EXCEEDED == 4402
    event = AuditEvent.objects.get(action="quota.refused")
    assert (event.actor, event.target, event.detail["quota"]) == (bob, f"room:{public_room.slug}", "concurrent_calls")
    assert api_as(bob).get("/api/me/").json()["quotas"]["concurrent_calls"] == {"limit": 1, "used": 1}


def test_the_call_minutes_of_the_month_are_counted_and_limit_joins(quotas, bob, room):
    quotas(call_minutes=10)
    a_past_call(room, [bob], minutes_ago=15, length=timedelta(minutes=12))
    assert api_as(bob).get("/api/me/").json()["quotas"]["call_minutes"] == {"limit": 10, "used": 12}
    with pytest.raises(services.JoinRefused) as refused:
        join(room, bob)
    assert refused.value.close_code == 4402
    assert not bob.call_participations.live().exists()


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_a_real_server_closes_a_join_over_the_quota_with_4402(bob, room, public_room):
    await sync_to_async(in_call)(room, bob)
    with DaphneServer(env={"PARLEY_QUOTA_CONCURRENT_CALLS": "1"}) as server:
        ticket = await sync_to_async(tickets.issue_ticket)(user=bob, room=public_room)
        async with websockets.connect(f"{server.ws_url}/ws/rooms/{public_room.slug}/?ticket={ticket}") as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4402
    assert await AuditEvent.objects.filter(action="quota.refused", actor=bob).acount() == 1
