"""Who may do what: every action of the room API for every persona, on a private and on a public room.

Personas: anonymous, outsider (mallory), member (bob), moderator (carol), owner (alice). A private room does not
exist for the first two: 401 for anonymous (on every endpoint), 404 for the outsider, never 403.
"""

import pytest

from tests.helpers import an_invite, api_as, in_call

pytestmark = pytest.mark.django_db

PERSONAS = ("anonymous", "outsider", "member", "moderator", "owner")


@pytest.fixture
def world(room, public_room, alice, bob, carol, mallory, another_member, another_moderator):
    """The private `room` and the `public_room`, each with another member (dave) in its live call, another
    moderator (frank) and an invite."""
    rooms = {}
    for visibility, each in (("private", room), ("public", public_room)):
        peer = in_call(each, another_member)
        rooms[visibility] = {"room": each, "peer": peer.peer_id, "invite": an_invite(each, created_by=alice).pk}
    return {"users": {"outsider": mallory, "member": bob, "moderator": carol, "owner": alice}, "rooms": rooms}


@pytest.fixture
def newcomer(django_user_model):  # erin: has an account and no part in the world; the one members are added as
    return django_user_model.objects.create_user("erin")


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
def test_permission_matrix(world, newcomer, visibility, action, persona, expected):
    user = world["users"].get(persona)  # None: anonymous
    room = world["rooms"][visibility]
    response = request(api_as(user), action, room, user.username if user else "nobody")
    assert response.status_code == expected, response.content
    if expected in (401, 403, 404):
        assert set(response.json()) == {"detail"}
        assert room["room"].name not in response.content.decode()


def test_nothing_of_a_private_room_leaks_into_an_outsider_s_lists(world, mallory):
    client = api_as(mallory)
    private = world["rooms"]["private"]["room"]
    for url in ("/api/rooms/", "/api/rooms/?mine=true", "/api/rooms/?visibility=private", "/api/calls/",
                "/api/rooms/?search=board"):
        body = client.get(url).content.decode()
        assert private.slug not in body and private.name not in body, url


def test_an_outsider_in_a_public_room_s_call_sees_no_private_room_or_email(world, mallory):
    client = api_as(mallory)
    public = world["rooms"]["public"]["room"]
    body = client.get(f"/api/rooms/{public.slug}/").json()
    assert body["role"] is None and "email" not in body["owner"]
    participants = client.get(f"/api/rooms/{public.slug}/participants/").json()
    assert [p["user"]["username"] for p in participants] == ["dave"]
    assert all(set(p["user"]) == {"id", "username", "display_name"} for p in participants)
