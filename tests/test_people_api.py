"""The people API: ringing a person (every transition of the ring's state machine), who may ring whom, contacts and
their presence, direct rooms, and rings in the call log (My calls, the admin)."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework import status

from calls import continuity
from calls.models import Room
from people import presence, services
from people.models import MeSocket, Ring
from tests.helpers import api_as, in_call

pytestmark = pytest.mark.django_db


def ring(caller, callee, **extra):
    return api_as(caller).post("/api/rings/", {"callee": callee.username, **extra}, format="json")


def act(user, ring_id, verb, body=None):
    return api_as(user).post(f"/api/rings/{ring_id}/{verb}/", body or {}, format="json")


@pytest.fixture
def ringing(alice, bob, room):
    """Alice rings Bob (they share `room`)."""
    response = ring(alice, bob)
    assert response.status_code == status.HTTP_201_CREATED, response.json()
    return response.json()


# --- The state machine ------------------------------------------------------------------------------


def test_a_ring_is_created_ringing_in_the_pairs_direct_room(ringing, alice, bob, settings):
    assert ringing["state"] == "ringing"
    assert ringing["caller"]["username"] == "alice" and ringing["callee"]["username"] == "bob"
    assert set(ringing) >= {"id", "caller", "callee", "room", "state", "expires_at"}
    row = Ring.objects.get(pk=ringing["id"])
    assert (row.expires_at - row.created_at) == timedelta(seconds=settings.PARLEY_RING_SECONDS)
    room = Room.objects.get(slug=ringing["room"]["slug"])
    assert room.kind == Room.Kind.DIRECT and room.visibility == "private"
    assert set(room.memberships.values_list("user__username", flat=True)) == {"alice", "bob"}


def test_the_callee_accepts_and_the_ring_is_answered(ringing, bob):
    response = act(bob, ringing["id"], "accept")
    assert response.status_code == 200
    assert response.json()["state"] == "answered" and response.json()["answered_at"]


def test_the_callee_declines(ringing, bob):
    response = act(bob, ringing["id"], "decline")
    assert response.status_code == 200 and response.json()["state"] == "declined"


def test_the_callee_in_another_call_declines_as_busy(ringing, bob):
    response = act(bob, ringing["id"], "decline", {"reason": "busy"})
    assert response.status_code == 200 and response.json()["state"] == "busy"


def test_the_caller_cancels(ringing, alice):
    response = act(alice, ringing["id"], "cancel")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    assert Ring.objects.get(pk=ringing["id"]).ended_at is not None


def test_a_ring_nobody_answers_is_missed_when_its_time_runs_out(alice, bob, room, settings):
    settings.PARLEY_RING_SECONDS = 1
    created = ring(alice, bob).json()
    assert services.expire_rings() == 0  # not yet
    assert services.expire_rings(now=timezone.now() + timedelta(seconds=2)) == 1
    row = Ring.objects.get(pk=created["id"])
    assert row.state == "missed" and row.ended_at == row.expires_at
    assert services.expire_rings(now=timezone.now() + timedelta(seconds=2)) == 0  # decided once


def test_an_answer_after_the_ring_ran_out_is_refused_and_the_ring_is_missed(ringing, bob):
    Ring.objects.filter(pk=ringing["id"]).update(created_at=timezone.now() - timedelta(seconds=60),
                                                 expires_at=timezone.now() - timedelta(seconds=1))
    response = act(bob, ringing["id"], "accept")
    assert response.status_code == status.HTTP_409_CONFLICT
    assert Ring.objects.get(pk=ringing["id"]).state == "missed"


@pytest.mark.parametrize("first, then", [("accept", "decline"), ("decline", "accept"), ("accept", "accept")])
def test_a_decided_ring_is_not_decided_again(ringing, bob, first, then):
    assert act(bob, ringing["id"], first).status_code == 200
    response = act(bob, ringing["id"], then)
    assert response.status_code == status.HTTP_409_CONFLICT
    assert "already" in response.json()["detail"]


def test_a_cancel_after_the_answer_is_refused(ringing, alice, bob):
    assert act(bob, ringing["id"], "accept").status_code == 200
    assert act(alice, ringing["id"], "cancel").status_code == status.HTTP_409_CONFLICT
    assert Ring.objects.get(pk=ringing["id"]).state == "answered"


def test_only_the_callee_answers_and_only_the_caller_cancels(ringing, alice, bob):
    assert act(alice, ringing["id"], "accept").status_code == status.HTTP_403_FORBIDDEN
    assert act(alice, ringing["id"], "decline").status_code == status.HTTP_403_FORBIDDEN
    assert act(bob, ringing["id"], "cancel").status_code == status.HTTP_403_FORBIDDEN
    assert Ring.objects.get(pk=ringing["id"]).state == "ringing"


def test_someone_elses_ring_does_not_exist(ringing, carol, mallory):
    for user in (carol, mallory):
        assert act(user, ringing["id"], "accept").status_code == status.HTTP_404_NOT_FOUND
        assert act(user, ringing["id"], "cancel").status_code == status.HTTP_404_NOT_FOUND
    assert act(carol, 2**70, "accept").status_code == status.HTTP_404_NOT_FOUND


def test_the_answered_ring_links_to_the_call_both_join(ringing, alice, bob, django_capture_on_commit_callbacks):
    assert act(bob, ringing["id"], "accept").status_code == 200
    direct = Room.objects.get(slug=ringing["room"]["slug"])
    with django_capture_on_commit_callbacks(execute=True):
        participant = in_call(direct, bob)
    with django_capture_on_commit_callbacks(execute=True):
        in_call(direct, alice)
    assert Ring.objects.get(pk=ringing["id"]).call_id == participant.call_id


# --- Who may ring whom --------------------------------------------------------------------------------


def test_a_user_cannot_ring_themselves(alice, room):
    assert ring(alice, alice).status_code == status.HTTP_400_BAD_REQUEST


def test_an_outsider_learns_nothing_of_who_exists(mallory, alice, room):
    unknown = ring(mallory, type("Nobody", (), {"username": "nobody"})).json()
    response = ring(mallory, alice)
    assert response.status_code == status.HTTP_404_NOT_FOUND
    assert response.json() == unknown  # the same answer as for nobody at all
    assert not Ring.objects.exists()


def test_only_contacts_may_be_rung(alice, mallory, room):
    assert ring(alice, mallory).status_code == status.HTTP_404_NOT_FOUND


def test_a_member_of_the_given_room_may_be_rung_into_it(alice, bob, room):
    response = ring(alice, bob, room=room.slug)
    assert response.status_code == 201 and response.json()["room"]["slug"] == room.slug


def test_a_room_the_caller_cannot_see_is_not_found(mallory, bob, room):
    assert ring(mallory, bob, room=room.slug).status_code == status.HTTP_404_NOT_FOUND


def test_someone_outside_the_given_room_cannot_be_rung_into_it(alice, mallory, room):
    assert ring(alice, mallory, room=room.slug).status_code == status.HTTP_404_NOT_FOUND


def test_a_second_ring_of_the_same_callee_conflicts(ringing, alice, bob):
    response = ring(alice, bob)
    assert response.status_code == status.HTTP_409_CONFLICT
    assert Ring.objects.filter(caller=alice, state="ringing").count() == 1


def test_a_caller_rings_one_person_at_a_time(ringing, alice, carol):
    assert ring(alice, carol).status_code == status.HTTP_409_CONFLICT


def test_after_a_ring_ends_the_caller_may_ring_again(ringing, alice, bob):
    assert act(alice, ringing["id"], "cancel").status_code == 200
    assert ring(alice, bob).status_code == 201


def test_ringing_is_rate_limited(alice, bob, room, settings):
    settings.PARLEY_RING_RATE = "2/minute"
    for _ in range(2):
        created = ring(alice, bob)
        assert created.status_code == 201
        act(alice, created.json()["id"], "cancel")
    assert ring(alice, bob).status_code == status.HTTP_429_TOO_MANY_REQUESTS


def test_the_api_needs_a_user(api, ringing):
    assert api.get("/api/rings/").status_code == status.HTTP_401_UNAUTHORIZED
    assert api.get("/api/contacts/").status_code == status.HTTP_401_UNAUTHORIZED
    assert api.post("/api/me/ticket/").status_code == status.HTTP_401_UNAUTHORIZED


# --- The call log: rings in the API, on My calls, in the admin ---------------------------------------


def test_the_ring_list_holds_ones_own_rings_with_filters(ringing, alice, bob, carol):
    act(bob, ringing["id"], "decline")
    ring(carol, bob)
    assert [r["id"] for r in api_as(alice).get("/api/rings/").json()["results"]] == [ringing["id"]]
    bobs = api_as(bob).get("/api/rings/").json()["results"]
    assert len(bobs) == 2
    assert [r["state"] for r in api_as(bob).get("/api/rings/?outcome=declined").json()["results"]] == ["declined"]
    assert [r["caller"]["username"] for r in api_as(bob).get("/api/rings/?with=carol").json()["results"]] == ["carol"]
    assert api_as(bob).get("/api/rings/?outcome=nonsense").status_code == status.HTTP_400_BAD_REQUEST


def test_my_calls_shows_missed_and_declined_rings_and_the_unseen_count_until_opened(client, alice, bob, room):
    missed = services.start_ring(caller=alice, callee_username="bob")
    services.expire_rings(now=missed.expires_at)
    declined = services.start_ring(caller=alice, callee_username="bob")
    services.decline_ring(by=bob, ring_id=declined.pk)
    client.force_login(bob)
    home = client.get("/").content.decode()
    assert 'id="missed-count"' in home and ">1</span>" in home
    page = client.get("/calls/").content.decode()
    assert "Missed call from Alice A., " in page and "You declined a call from Alice A." in page
    assert 'id="missed-count"' not in page and 'id="missed-count"' not in client.get("/").content.decode()
    client.force_login(alice)
    page = client.get("/calls/").content.decode()
    assert "Call to bob, no answer" in page and "bob declined" in page


def test_rings_are_in_the_admin_read_only(admin_client, ringing):
    assert admin_client.get("/admin/people/ring/").status_code == 200
    assert admin_client.get("/admin/people/ring/?state__exact=ringing").status_code == 200
    assert admin_client.get("/admin/people/ring/add/").status_code == 403
    assert admin_client.post(f"/admin/people/ring/{ringing['id']}/delete/").status_code == 403


def test_a_deleted_callers_rings_keep_their_name(ringing, alice, bob):
    alice.delete()
    row = Ring.objects.get(pk=ringing["id"])
    assert row.caller is None and row.caller_name == "Alice A."
    assert api_as(bob).get("/api/rings/").json()["results"][0]["caller"]["display_name"] == "Alice A."


# --- Direct rooms -------------------------------------------------------------------------------------


def test_a_pair_has_one_direct_room_whoever_calls(ringing, alice, bob):
    act(alice, ringing["id"], "cancel")
    back = ring(bob, alice).json()
    assert back["room"]["slug"] == ringing["room"]["slug"]
    assert Room.objects.filter(kind=Room.Kind.DIRECT).count() == 1


def test_direct_rooms_are_not_listed_among_rooms(client, ringing, alice):
    slugs = [r["slug"] for r in api_as(alice).get("/api/rooms/").json()["results"]]
    assert ringing["room"]["slug"] not in slugs and slugs
    client.force_login(alice)
    assert ringing["room"]["slug"] not in client.get("/").content.decode()


def test_a_direct_room_cannot_be_renamed_locked_or_given_invites(ringing, alice):
    slug = ringing["room"]["slug"]
    for change in ({"name": "Renamed"}, {"locked": True}):
        response = api_as(alice).patch(f"/api/rooms/{slug}/", change, format="json")
        assert response.status_code == status.HTTP_403_FORBIDDEN
        assert "direct room" in response.json()["detail"]
    assert api_as(alice).post(f"/api/rooms/{slug}/invites/", {}, format="json").status_code == 403
    room = Room.objects.get(slug=slug)
    assert room.name == "Alice A. & bob" and not room.locked


# --- Contacts and presence ----------------------------------------------------------------------------


def online(user, node="node-a"):
    continuity.beat_node(channel=node)
    MeSocket.objects.create(user=user, channel_name=f"chan-{user.pk}-{node}", node=node)


def test_contacts_are_the_people_one_shares_a_room_with_with_presence(alice, bob, carol, mallory, room):
    online(bob)
    in_call(room, carol)
    contacts = api_as(alice).get("/api/contacts/").json()
    assert {c["username"]: c["presence"] for c in contacts} == {"bob": "online", "carol": "in-call"}
    assert [c["username"] for c in api_as(alice).get("/api/contacts/?search=car").json()] == ["carol"]


def test_an_outsider_has_no_contacts_and_sees_no_ones_presence(mallory, alice, bob, room, public_room):
    online(alice)
    assert api_as(mallory).get("/api/contacts/").json() == []


def test_people_one_has_called_are_contacts(alice, mallory, room):
    Ring.objects.create(caller=alice, caller_name="Alice A.", callee=mallory, callee_name="mallory",
                        room_name="gone", state="missed", expires_at=timezone.now() + timedelta(seconds=1),
                        ended_at=timezone.now())
    assert [c["username"] for c in api_as(mallory).get("/api/contacts/").json()] == ["alice"]


def test_a_socket_on_a_process_that_stopped_beating_is_offline(alice, bob, room):
    online(bob, node="dead-node")
    from calls.models import RelayNode
    RelayNode.objects.filter(channel="dead-node").update(beat_at=timezone.now() - timedelta(minutes=5))
    assert presence.presence_of(bob.pk) == "offline"
    assert presence.forget_dead_sockets() == 1
    assert not MeSocket.objects.exists()


def test_the_people_page_lists_contacts_with_a_call_button(client, alice, bob, room):
    online(bob)
    client.force_login(alice)
    page = client.get("/people/").content.decode()
    assert 'data-contact="bob"' in page and 'data-presence="online"' in page and 'data-call="bob"' in page
    assert 'data-contact="bob"' not in client.get("/people/?q=car").content.decode()


def test_a_me_ticket_is_issued(alice):
    response = api_as(alice).post("/api/me/ticket/")
    assert response.status_code == 200 and response.json()["ticket"]


def test_logging_out_closes_the_users_me_sockets(client, bob, monkeypatch):
    closed = []
    monkeypatch.setattr(presence, "close_sockets_of", lambda *, user_id: closed.append(user_id))
    client.force_login(bob)
    client.post("/accounts/logout/")
    assert closed == [bob.pk]
