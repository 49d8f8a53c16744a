"""Who may do what: every action of the room API for every persona, on a private and on a public room.

Personas: anonymous, outsider (mallory), member (bob), moderator (carol), owner (alice). A private room does not
exist for the first two: 401 for anonymous (on every endpoint), 404 for the outsider, never 403.
"""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from calls import services
from calls.models import Invite, RoomMembership

pytestmark = pytest.mark.django_db

PERSONAS = ("anonymous", "outsider", "member", "moderator", "owner")


@pytest.fixture
def world(alice, bob, carol, mallory, django_user_model):
    """Two rooms of alice's (bob a member, carol and frank moderators), with dave a member in each room's live
    call and an invite per room."""
    dave, frank = django_user_model.objects.create_user("dave"), django_user_model.objects.create_user("frank")
    rooms = {}
    for visibility in ("private", "public"):
        room = services.create_room(owner=alice, name=f"{visibility} room", slug=visibility, visibility=visibility)
        room.memberships.create(user=bob, role=RoomMembership.Role.MEMBER)
        room.memberships.create(user=carol, role=RoomMembership.Role.MODERATOR)
        room.memberships.create(user=dave, role=RoomMembership.Role.MEMBER)
        room.memberships.create(user=frank, role=RoomMembership.Role.MODERATOR)
        peer = services.join_call(room_slug=room.slug, user=dave, peer_id=str(uuid.uuid4()),
                                  relay_node="test-node").participant
        invite = Invite.objects.create(room=room, created_by=alice, expires_at=timezone.now() + timedelta(hours=1))
        rooms[visibility] = {"room": room, "peer": peer.peer_id, "invite": invite.pk}
    return {"users": {"outsider": mallory, "member": bob, "moderator": carol, "owner": alice}, "rooms": rooms}


def request(client, action: str, room: dict, me: str):
    base = f"/api/rooms/{room['room'].slug}/"
    return {
        "retrieve": lambda: client.get(base),
        "update": lambda: client.patch(base, {"name": "Renamed"}, format="json"),
        "replace": lambda: client.put(base, {"name": "Renamed", "visibility": room["room"].visibility},
                                      format="json"),
        "lock": lambda: client.patch(base, {"locked": True}, format="json"),
        "delete": lambda: client.delete(base),
        "members": lambda: client.get(base + "members/"),
        "add-member": lambda: client.post(base + "members/", {"username": "erin"}, format="json"),
        "add-moderator": lambda: client.post(base + "members/", {"username": "erin", "role": "moderator"},
                                             format="json"),
        "change-role": lambda: client.patch(base + "members/dave/", {"role": "moderator"}, format="json"),
        "remove-member": lambda: client.delete(base + "members/dave/"),
        "remove-moderator": lambda: client.delete(base + "members/frank/"),
        "leave": lambda: client.delete(base + f"members/{me}/"),
        "remove-owner": lambda: client.delete(base + "members/alice/"),
        "invites": lambda: client.get(base + "invites/"),
        "create-invite": lambda: client.post(base + "invites/", {"max_uses": 3}, format="json"),
        "revoke-invite": lambda: client.delete(base + f"invites/{room['invite']}/"),
        "participants": lambda: client.get(base + "participants/"),
        "kick": lambda: client.post(base + f"participants/{room['peer']}/kick/"),
        "ticket": lambda: client.post(base + "ticket/"),
    }[action]()


#                                anonymous outsider member moderator owner
PRIVATE = {
    "retrieve":                  (401, 404, 200, 200, 200),
    "update":                    (401, 404, 403, 200, 200),
    "replace":                   (401, 404, 403, 200, 200),
    "lock":                      (401, 404, 403, 200, 200),
    "delete":                    (401, 404, 403, 403, 204),
    "members":                   (401, 404, 200, 200, 200),
    "add-member":                (401, 404, 403, 201, 201),
    "add-moderator":             (401, 404, 403, 403, 201),
    "change-role":               (401, 404, 403, 403, 200),
    "remove-member":             (401, 404, 403, 204, 204),
    "remove-moderator":          (401, 404, 403, 403, 204),
    "remove-owner":              (401, 404, 403, 403, 403),
    "leave":                     (401, 404, 204, 204, 403),
    "invites":                   (401, 404, 403, 200, 200),
    "create-invite":             (401, 404, 403, 201, 201),
    "revoke-invite":             (401, 404, 403, 204, 204),
    "participants":              (401, 404, 200, 200, 200),
    "kick":                      (401, 404, 403, 204, 204),
    "ticket":                    (401, 404, 200, 200, 200),
}
# A public room is visible to everyone logged in; changing it still takes a role in it.
PUBLIC = {
    **PRIVATE,
    **{action: (401, 403, *codes[2:]) for action, codes in PRIVATE.items() if codes[1] == 404},
    "retrieve":                  (401, 200, 200, 200, 200),
    "participants":              (401, 200, 200, 200, 200),
    "ticket":                    (401, 200, 200, 200, 200),
    "leave":                     (401, 404, 204, 204, 403),  # the outsider is no member to remove
}


def cases(table: dict, visibility: str):
    for action, codes in table.items():
        for persona, code in zip(PERSONAS, codes, strict=True):
            yield pytest.param(visibility, action, persona, code, id=f"{visibility}-{action}-{persona}")


@pytest.mark.parametrize(("visibility", "action", "persona", "expected"),
                         [*cases(PRIVATE, "private"), *cases(PUBLIC, "public")])
def test_permission_matrix(world, django_user_model, visibility, action, persona, expected):
    django_user_model.objects.create_user("erin")
    client, me = APIClient(), "nobody"
    if persona != "anonymous":
        client.force_authenticate(world["users"][persona])
        me = world["users"][persona].username
    room = world["rooms"][visibility]
    response = request(client, action, room, me)
    assert response.status_code == expected, response.content
    if expected in (401, 403, 404):
        assert set(response.json()) == {"detail"}
        assert room["room"].name not in response.content.decode()


def test_nothing_of_a_private_room_leaks_into_an_outsider_s_lists(world, mallory):
    client = APIClient()
    client.force_authenticate(mallory)
    private = world["rooms"]["private"]["room"]
    for url in ("/api/rooms/", "/api/rooms/?mine=true", "/api/rooms/?visibility=private", "/api/calls/",
                "/api/rooms/?search=private"):
        body = client.get(url).content.decode()
        assert private.slug not in body.replace("public", "") and private.name not in body, url


def test_an_outsider_in_a_public_room_s_call_sees_no_private_room_or_email(world, mallory):
    client = APIClient()
    client.force_authenticate(mallory)
    body = client.get("/api/rooms/public/").json()
    assert body["role"] is None and "email" not in body["owner"]
    participants = client.get("/api/rooms/public/participants/").json()
    assert [p["user"]["username"] for p in participants] == ["dave"]
    assert all(set(p["user"]) == {"id", "username", "display_name"} for p in participants)
