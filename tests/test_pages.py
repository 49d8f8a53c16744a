import pytest
from django.urls import reverse

from calls import services
from calls.models import Room

pytestmark = pytest.mark.django_db


def test_anonymous_visitors_see_the_welcome_page(client):
    response = client.get("/")
    assert response.status_code == 200
    assert b"Create an account" in response.content


def test_home_lists_my_rooms_and_the_other_public_rooms(client, bob, public_room, private_room, mallory):
    others = services.create_room(owner=mallory, name="Mallory's den", visibility="public")  # bob is no member
    client.force_login(bob)
    response = client.get("/")
    assert list(response.context["my_rooms"]) == [private_room, public_room]
    assert list(response.context["public_rooms"]) == [others]
    assert private_room.get_absolute_url().encode() in response.content


def test_outsiders_do_not_see_private_rooms_on_the_home_page(client, mallory, public_room, private_room):
    client.force_login(mallory)
    response = client.get("/")
    assert b"Board room" not in response.content
    assert list(response.context["public_rooms"]) == [public_room]


def test_creating_a_room_from_the_home_page(client, bob):
    client.force_login(bob)
    response = client.post("/", {"name": "Book club", "visibility": "public", "max_participants": 4})
    room = Room.objects.get(slug="book-club")
    assert response.url == room.get_absolute_url()
    assert room.role_of(bob) == "owner" and room.max_participants == 4


def test_creating_a_room_with_a_bad_size_shows_the_error(client, bob):
    client.force_login(bob)
    response = client.post("/", {"name": "Huge", "visibility": "public", "max_participants": 500})
    assert response.status_code == 200
    assert "max_participants" in response.context["form"].errors
    assert not Room.objects.filter(name="Huge").exists()


def test_room_page_shows_members_and_recent_calls(client, bob, private_room):
    client.force_login(bob)
    response = client.get(reverse("room", args=[private_room.slug]))
    assert response.status_code == 200
    assert b"Alice A." in response.content and b"bob" in response.content


def test_a_private_room_is_a_404_for_outsiders(client, mallory, private_room):
    client.force_login(mallory)
    assert client.get(reverse("room", args=[private_room.slug])).status_code == 404


def test_room_page_needs_a_log_in(client, public_room):
    response = client.get(reverse("room", args=[public_room.slug]))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_home_shows_who_is_live_now_with_live_markers(client, bob, carol, public_room, private_room):
    from tests.helpers import in_call

    in_call(public_room, carol)
    client.force_login(bob)
    response = client.get("/")
    assert [room.slug for room in response.context["live_rooms"]] == [public_room.slug]
    body = response.content.decode()
    assert f'data-live-room="{public_room.slug}" data-live="true"' in body
    assert "carol in the call" in body
    assert f'data-live-room="{private_room.slug}" data-live="false"' in body


def test_public_rooms_are_paginated_and_searchable_with_a_bounded_page(client, mallory, alice,
                                                                     django_assert_max_num_queries):
    from calls.models import Room, RoomMembership

    rooms = Room.objects.bulk_create(
        Room(slug=f"public-{n:04d}", name=f"Public {n:04d}", owner=alice, visibility="public") for n in range(300))
    RoomMembership.objects.bulk_create(RoomMembership(room=room, user=alice, role="owner") for room in rooms)
    client.force_login(mallory)
    with django_assert_max_num_queries(20):
        response = client.get("/")
    assert len(response.context["public_rooms"]) == 20
    assert response.context["public_page"].paginator.count == 300
    assert len(response.content) < 60_000
    found = client.get("/?q=public 0123")
    assert [room.slug for room in found.context["public_rooms"]] == ["public-0123"]
    assert [r.slug for r in client.get("/?page=15").context["public_rooms"]][0] == "public-0280"
