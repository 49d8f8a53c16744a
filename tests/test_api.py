"""The room-management REST API: every endpoint, without live sockets (tests/test_api_live.py has those)."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework import status
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from calls import services
from calls.models import Call, CallParticipant, Invite, Room
from calls.services import Reason
from tests.helpers import an_invite, api_as, in_call

pytestmark = pytest.mark.django_db


# --- Rooms ----------------------------------------------------------------------------------------


def test_creating_a_room_makes_the_caller_its_owner(alice):
    response = api_as(alice).post("/api/rooms/", {"name": "Stand-up", "visibility": "public"}, format="json")
    assert response.status_code == status.HTTP_201_CREATED
    body = response.json()
    assert body["slug"] == "stand-up"
    assert body["role"] == "owner" and body["owner"]["username"] == "alice"
    assert body["participant_count"] == 0 and body["url"].endswith("/rooms/stand-up/")
    assert Room.objects.get(slug="stand-up").role_of(alice) == "owner"


def test_a_room_made_from_a_taken_name_gets_the_next_free_slug(alice, public_room):
    response = api_as(alice).post("/api/rooms/", {"name": "Town hall"}, format="json")
    assert response.status_code == status.HTTP_201_CREATED
    assert response.json()["slug"] == "town-hall-2"
    assert response.json()["visibility"] == "private"  # the default


def test_a_duplicate_slug_is_a_conflict(alice, bob, public_room):
    response = api_as(bob).post("/api/rooms/", {"name": "Mine", "slug": "town-hall"}, format="json")
    assert response.status_code == status.HTTP_409_CONFLICT
    assert "town-hall" in response.json()["detail"]


def test_invalid_room_fields_are_field_errors(alice):
    response = api_as(alice).post("/api/rooms/", {"name": "", "max_participants": 99, "visibility": "secret"},
                                      format="json")
    assert response.status_code == status.HTTP_400_BAD_REQUEST
    assert set(response.json()) == {"name", "max_participants", "visibility"}


def test_the_room_list_has_public_rooms_and_the_callers_own(alice, bob, mallory, public_room, private_room):
    slugs = lambda user: [r["slug"] for r in api_as(user).get("/api/rooms/").json()["results"]]  # noqa: E731
    assert slugs(bob) == ["board-room", "town-hall"]
    assert slugs(mallory) == ["town-hall"]


def test_the_room_list_filters_searches_and_orders(bob, mallory, public_room, private_room):
    services.create_room(owner=mallory, name="Mallory's den", visibility="public")  # bob is no member
    api = api_as(bob)

    def slugs(query):
        response = api.get(f"/api/rooms/{query}")
        assert response.status_code == status.HTTP_200_OK
        return [r["slug"] for r in response.json()["results"]]

    assert slugs("?visibility=private") == ["board-room"]
    assert slugs("?mine=true") == ["board-room", "town-hall"]
    assert slugs("?search=town") == ["town-hall"]
    assert slugs("?ordering=-name") == ["town-hall", "mallorys-den", "board-room"]
    assert api.get("/api/rooms/?visibility=secret").status_code == status.HTTP_400_BAD_REQUEST


def test_the_room_list_is_paginated(alice):
    for n in range(3):
        services.create_room(owner=alice, name=f"Room {n}")
    api = api_as(alice)
    page = api.get("/api/rooms/?page_size=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    assert len(api.get(page["next"]).json()["results"]) == 1
    assert api.get("/api/rooms/?page=9").status_code == status.HTTP_404_NOT_FOUND


def test_a_page_size_above_the_maximum_is_capped_not_refused(alice, monkeypatch, settings):
    from calls.pagination import Pagination

    assert Pagination.max_page_size == settings.PARLEY_API_MAX_PAGE_SIZE
    monkeypatch.setattr(Pagination, "max_page_size", 2)  # a maximum below the number of rooms there are
    for n in range(3):
        services.create_room(owner=alice, name=f"Room {n}")
    for size in (3, 100000):
        response = api_as(alice).get(f"/api/rooms/?page_size={size}")
        assert response.status_code == status.HTTP_200_OK
        assert response.json()["count"] == 3 and len(response.json()["results"]) == 2


def test_room_detail_shows_the_live_participant_count_and_the_callers_role(room, alice, bob, carol):
    in_call(room, bob)
    in_call(room, carol)
    body = api_as(bob).get(f"/api/rooms/{room.slug}/").json()
    assert body["participant_count"] == 2
    assert body["role"] == "member"
    assert api_as(carol).get(f"/api/rooms/{room.slug}/").json()["role"] == "moderator"


def test_an_outsider_sees_a_public_room_without_a_role(public_room, mallory):
    body = api_as(mallory).get(f"/api/rooms/{public_room.slug}/").json()
    assert body["role"] is None and body["name"] == "Town hall"


def test_a_private_room_looks_exactly_like_a_missing_one_to_an_outsider(room, mallory):
    api = api_as(mallory)
    for suffix in ("", "members/", "invites/", "participants/"):
        private, missing = api.get(f"/api/rooms/{room.slug}/{suffix}"), api.get(f"/api/rooms/no-such-room/{suffix}")
        assert private.status_code == missing.status_code == status.HTTP_404_NOT_FOUND
        assert private.json() == missing.json()
        assert room.name not in private.content.decode()


def test_the_moderator_renames_the_room_but_the_slug_stays(room, carol):
    response = api_as(carol).patch(f"/api/rooms/{room.slug}/", {"name": "Boardroom", "slug": "x"}, format="json")
    assert response.status_code == status.HTTP_200_OK
    room.refresh_from_db()
    assert (room.name, room.slug) == ("Boardroom", "board-room")


def test_put_replaces_the_editable_fields(room, alice):
    response = api_as(alice).put(
        f"/api/rooms/{room.slug}/", {"name": "New", "visibility": "public", "max_participants": 4, "locked": True},
        format="json",
    )
    assert response.status_code == status.HTTP_200_OK
    room.refresh_from_db()
    assert (room.name, room.visibility, room.max_participants, room.locked) == ("New", "public", 4, True)


def test_locking_a_room_ends_the_call_for_members_but_not_moderators(room, alice, bob, carol):
    bob_peer, carol_peer = in_call(room, bob), in_call(room, carol)
    response = api_as(alice).patch(f"/api/rooms/{room.slug}/", {"locked": True}, format="json")
    assert response.status_code == status.HTTP_200_OK
    assert response.json()["participant_count"] == 1
    bob_peer.refresh_from_db(), carol_peer.refresh_from_db()
    assert bob_peer.leave_reason == CallParticipant.LeaveReason.ROOM_LOCKED
    assert carol_peer.is_live


def test_deleting_a_room_ends_its_call_and_keeps_the_call_log(room, alice, bob):
    peer = in_call(room, bob)
    assert api_as(alice).delete(f"/api/rooms/{room.slug}/").status_code == status.HTTP_204_NO_CONTENT
    assert not Room.objects.filter(pk=room.pk).exists()
    peer.refresh_from_db()
    assert peer.leave_reason == "room-closed" and peer.call.ended_at is not None and peer.call.room is None
    history = api_as(bob).get(f"/api/calls/{peer.call_id}/").json()
    assert history["room"] is None and history["room_name"] == room.name


# --- Members --------------------------------------------------------------------------------------


def test_members_list_shows_users_and_roles(room, bob):
    body = api_as(bob).get(f"/api/rooms/{room.slug}/members/").json()
    assert [(m["user"]["username"], m["role"]) for m in body["results"]] == [
        ("alice", "owner"), ("bob", "member"), ("carol", "moderator")
    ]
    assert "email" not in body["results"][0]["user"]


def test_the_owner_adds_a_moderator(room, alice, mallory):
    response = api_as(alice).post(f"/api/rooms/{room.slug}/members/", {"username": "mallory", "role": "moderator"},
                                      format="json")
    assert response.status_code == status.HTTP_201_CREATED
    assert response.json()["role"] == "moderator" and response.json()["user"]["username"] == "mallory"
    assert room.role_of(mallory) == "moderator"


def test_a_moderator_adds_members_but_not_moderators(room, carol, mallory):
    api = api_as(carol)
    url = f"/api/rooms/{room.slug}/members/"
    assert api.post(url, {"username": "mallory", "role": "moderator"}, format="json").status_code == 403
    assert api.post(url, {"username": "mallory"}, format="json").status_code == status.HTTP_201_CREATED
    assert room.role_of(mallory) == "member"


def test_adding_someone_already_there_is_a_conflict(room, alice):
    response = api_as(alice).post(f"/api/rooms/{room.slug}/members/", {"username": "bob"}, format="json")
    assert response.status_code == status.HTTP_409_CONFLICT
    assert response.json() == {"detail": "bob is a member already."}


def test_adding_an_unknown_user_or_an_owner_is_a_field_error(room, alice):
    url = f"/api/rooms/{room.slug}/members/"
    assert set(api_as(alice).post(url, {"username": "nobody"}, format="json").json()) == {"username"}
    response = api_as(alice).post(url, {"username": "bob", "role": "owner"}, format="json")
    assert response.status_code == status.HTTP_400_BAD_REQUEST and set(response.json()) == {"role"}


def test_the_owner_changes_roles_but_not_their_own(room, alice, bob):
    api = api_as(alice)
    response = api.patch(f"/api/rooms/{room.slug}/members/bob/", {"role": "moderator"}, format="json")
    assert response.status_code == status.HTTP_200_OK and response.json() == {"role": "moderator"}
    assert room.role_of(bob) == "moderator"
    assert api.patch(f"/api/rooms/{room.slug}/members/alice/", {"role": "member"}, format="json").status_code == 403


def test_a_moderator_cannot_remove_another_moderator_or_the_owner(room, carol, another_moderator):
    api = api_as(carol)
    assert api.delete(f"/api/rooms/{room.slug}/members/{another_moderator.username}/").status_code == 403
    assert api.delete(f"/api/rooms/{room.slug}/members/alice/").status_code == status.HTTP_403_FORBIDDEN
    assert api.delete(f"/api/rooms/{room.slug}/members/bob/").status_code == status.HTTP_204_NO_CONTENT


def test_a_member_leaves_and_the_private_room_disappears_for_them(room, bob):
    api = api_as(bob)
    assert api.delete(f"/api/rooms/{room.slug}/members/bob/").status_code == status.HTTP_204_NO_CONTENT
    assert api.get(f"/api/rooms/{room.slug}/").status_code == status.HTTP_404_NOT_FOUND


def test_the_owner_cannot_leave(room, alice):
    response = api_as(alice).delete(f"/api/rooms/{room.slug}/members/alice/")
    assert response.status_code == status.HTTP_403_FORBIDDEN
    assert room.role_of(alice) == "owner"


def test_removing_someone_who_is_not_a_member_is_not_found(room, alice, mallory):
    assert api_as(alice).delete(f"/api/rooms/{room.slug}/members/mallory/").status_code == 404


# --- Invites --------------------------------------------------------------------------------------


def test_a_moderator_creates_an_invite_link_with_expiry_and_use_limit(room, carol):
    before = timezone.now()
    response = api_as(carol).post(f"/api/rooms/{room.slug}/invites/", {"expires_in": 3600, "max_uses": 2},
                                      format="json")
    assert response.status_code == status.HTTP_201_CREATED
    body = response.json()
    invite = Invite.objects.get(pk=body["id"])
    assert body["url"].endswith(f"/invite/{invite.token}/")
    assert body["state"] == "active" and body["max_uses"] == 2 and body["use_count"] == 0
    assert timedelta(seconds=3590) < invite.expires_at - before <= timedelta(seconds=3601)
    assert invite.created_by == carol


def test_invites_are_listed_and_revoked(room, alice):
    api = api_as(alice)
    invite_id = api.post(f"/api/rooms/{room.slug}/invites/", {}, format="json").json()["id"]
    assert [i["id"] for i in api.get(f"/api/rooms/{room.slug}/invites/").json()["results"]] == [invite_id]
    assert api.delete(f"/api/rooms/{room.slug}/invites/{invite_id}/").status_code == status.HTTP_204_NO_CONTENT
    assert api.get(f"/api/rooms/{room.slug}/invites/").json()["results"][0]["state"] == "revoked"


def test_an_invite_of_another_room_cannot_be_revoked_through_this_one(room, alice, public_room):
    response = api_as(alice).delete(f"/api/rooms/{room.slug}/invites/{an_invite(public_room).pk}/")
    assert response.status_code == status.HTTP_404_NOT_FOUND


def test_invite_fields_are_validated(room, alice):
    response = api_as(alice).post(f"/api/rooms/{room.slug}/invites/", {"expires_in": 5, "max_uses": 0},
                                      format="json")
    assert response.status_code == status.HTTP_400_BAD_REQUEST
    assert set(response.json()) == {"expires_in", "max_uses"}


# --- Participants, kick, ticket -------------------------------------------------------------------


def test_participants_lists_the_live_peers_with_their_media_state(room, bob, carol):
    peer = in_call(room, bob)
    services.record_media_state(peer_id=peer.peer_id, audio=True, video=False, screen=False)
    gone = in_call(room, carol)
    services.leave_call(peer_id=gone.peer_id, reason=Reason.LEFT)
    body = api_as(bob).get(f"/api/rooms/{room.slug}/participants/").json()
    assert body == [{"peer_id": str(peer.peer_id), "user": {"id": bob.pk, "username": "bob", "display_name": ""},
                     "joined_at": body[0]["joined_at"], "audio": True, "video": False, "screen": False}]


def test_kicking_a_peer_records_it(room, alice, bob):
    peer = in_call(room, bob)
    response = api_as(alice).post(f"/api/rooms/{room.slug}/participants/{peer.peer_id}/kick/")
    assert response.status_code == status.HTTP_204_NO_CONTENT
    peer.refresh_from_db()
    assert peer.leave_reason == CallParticipant.LeaveReason.KICKED and not peer.is_live


def test_a_moderator_cannot_kick_the_owner(room, alice, carol):
    peer = in_call(room, alice)
    response = api_as(carol).post(f"/api/rooms/{room.slug}/participants/{peer.peer_id}/kick/")
    assert response.status_code == status.HTTP_403_FORBIDDEN
    peer.refresh_from_db()
    assert peer.is_live


def test_kicking_a_peer_of_another_room_or_one_gone_is_not_found(room, alice, bob, public_room):
    elsewhere = in_call(public_room, bob)
    api = api_as(alice)
    assert api.post(f"/api/rooms/{room.slug}/participants/{elsewhere.peer_id}/kick/").status_code == 404
    gone = in_call(room, bob)
    services.leave_call(peer_id=gone.peer_id, reason=Reason.LEFT)
    assert api.post(f"/api/rooms/{room.slug}/participants/{gone.peer_id}/kick/").status_code == 404


def test_a_member_gets_a_signaling_ticket(room, bob):
    response = api_as(bob).post(f"/api/rooms/{room.slug}/ticket/")
    assert response.status_code == status.HTTP_200_OK
    body = response.json()
    assert body["ticket"] and body["expires_in"] == 60


def test_no_ticket_for_a_member_of_a_locked_room(room, alice, bob):
    services.update_room(by=alice, room=room, locked=True)
    response = api_as(bob).post(f"/api/rooms/{room.slug}/ticket/")
    assert response.status_code == status.HTTP_403_FORBIDDEN
    assert response.json() == {"detail": "The room is locked."}


# --- Call history ---------------------------------------------------------------------------------


@pytest.fixture
def history(room, public_room, alice, bob, carol, mallory):
    """An ended call in alice's private room (bob, carol) and one in the public room (mallory only)."""
    bob_peer, carol_peer = in_call(room, bob), in_call(room, carol)
    services.leave_call(peer_id=bob_peer.peer_id, reason=Reason.LEFT)
    services.leave_call(peer_id=carol_peer.peer_id, reason=Reason.DISCONNECTED)
    mallory_peer = in_call(public_room, mallory)
    services.leave_call(peer_id=mallory_peer.peer_id, reason=Reason.LEFT)
    return {"private": bob_peer.call, "public": mallory_peer.call}


def ids(response) -> list[int]:
    assert response.status_code == status.HTTP_200_OK, response.content
    return [call["id"] for call in response.json()["results"]]


def test_call_history_has_the_calls_taken_part_in_and_all_calls_of_owned_rooms(history, alice, bob, mallory):
    assert sorted(ids(api_as(alice).get("/api/calls/"))) == sorted([history["private"].pk, history["public"].pk])
    assert ids(api_as(bob).get("/api/calls/")) == [history["private"].pk]
    assert ids(api_as(mallory).get("/api/calls/")) == [history["public"].pk]


def test_a_call_shows_its_participants_and_durations(history, bob):
    body = api_as(bob).get(f"/api/calls/{history['private'].pk}/").json()
    assert body["room"] == {"slug": "board-room", "name": "Board room"}
    assert body["is_live"] is False and body["duration"] >= 0
    assert [(p["user"]["username"], p["leave_reason"]) for p in body["participants"]] == [
        ("bob", "left"), ("carol", "disconnected")
    ]
    assert all(p["duration"] >= 0 for p in body["participants"])
    assert "user_agent" not in body["participants"][0]


def test_someone_else_s_call_is_not_found(history, mallory):
    assert api_as(mallory).get(f"/api/calls/{history['private'].pk}/").status_code == 404


def test_call_history_filters_by_room_and_date_range(history, alice):
    api = api_as(alice)
    assert ids(api.get("/api/calls/?room=town-hall")) == [history["public"].pk]
    Call.objects.filter(pk=history["private"].pk).update(started_at=timezone.now() - timedelta(days=3))
    Call.objects.filter(pk=history["private"].pk).update(ended_at=timezone.now() - timedelta(days=3) +
                                                         timedelta(minutes=5))
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert ids(api.get("/api/calls/", {"started_after": since})) == [history["public"].pk]
    assert ids(api.get("/api/calls/", {"started_before": since})) == [history["private"].pk]
    assert api.get("/api/calls/?started_after=yesterday").status_code == status.HTTP_400_BAD_REQUEST


# --- ICE servers, auth, throttling ----------------------------------------------------------------


def test_ice_servers_without_turn_are_the_stun_urls(alice, settings):
    settings.PARLEY_STUN_URLS = ["stun:stun.example.org:3478"]
    settings.PARLEY_TURN_URLS, settings.PARLEY_TURN_SECRET = [], ""
    response = api_as(alice).get("/api/ice-servers/")
    assert response.json() == {"ice_servers": [{"urls": "stun:stun.example.org:3478"}], "ttl": None}
    assert "no-store" in response["Cache-Control"]


def test_a_program_uses_a_token(alice, password, api):
    token = api.post("/api/auth/token/", {"username": "alice", "password": password}, format="json").json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.post("/api/rooms/", {"name": "By script"}, format="json").status_code == status.HTTP_201_CREATED
    assert api.get("/api/me/").json()["username"] == "alice"
    assert api.delete("/api/auth/token/").status_code == status.HTTP_204_NO_CONTENT
    assert not Token.objects.filter(user=alice).exists()
    assert api.get("/api/me/").status_code == status.HTTP_401_UNAUTHORIZED


def test_a_browser_session_needs_the_csrf_token_to_write(alice, password):
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(alice)  # login() calls authenticate() without a request, which django-axes refuses
    assert browser.get("/api/rooms/").status_code == status.HTTP_200_OK
    response = browser.post("/api/rooms/", {"name": "No CSRF"}, format="json")
    assert response.status_code == status.HTTP_403_FORBIDDEN and "CSRF" in response.json()["detail"]


def test_anonymous_callers_are_throttled(api, monkeypatch):
    monkeypatch.setattr(AnonRateThrottle, "rate", "2/minute", raising=False)
    codes = [api.get("/api/schema/").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_authenticated_callers_are_throttled_with_retry_after(alice, monkeypatch):
    monkeypatch.setattr(UserRateThrottle, "rate", "2/minute", raising=False)
    api = api_as(alice)
    responses = [api.get("/api/rooms/") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert int(responses[-1]["Retry-After"]) > 0 and "throttled" in responses[-1].json()["detail"]


def test_an_unknown_api_address_is_a_json_404(alice):
    for url in ("/api/nothing-here/", "/api/rooms/not a slug/members/"):
        response = api_as(alice).post(url, {}, format="json")
        assert response.status_code == status.HTTP_404_NOT_FOUND
        assert response.json() == {"detail": "Not found."}
