"""Room.media (docs/sfu.md): mesh, sfu or auto (the default), kept valid by the database, shown and changed in the
REST API by those who may change the room."""

import pytest
from django.db import IntegrityError, transaction
from rest_framework import status

from calls.models import Room
from tests.helpers import api_as

pytestmark = pytest.mark.django_db


def test_a_new_room_is_automatic(public_room):
    assert public_room.media == Room.Media.AUTO == "auto"


def test_the_database_refuses_an_unknown_media(public_room):
    with pytest.raises(IntegrityError), transaction.atomic():
        Room.objects.filter(pk=public_room.pk).update(media="p2p")


def test_the_api_shows_the_media_of_a_room(bob, public_room):
    response = api_as(bob).get(f"/api/rooms/{public_room.slug}/")
    assert response.status_code == status.HTTP_200_OK
    assert response.json()["media"] == "auto"


def test_a_room_can_be_created_for_the_sfu(alice):
    response = api_as(alice).post("/api/rooms/", {"name": "All hands", "media": "sfu"}, format="json")
    assert response.status_code == status.HTTP_201_CREATED
    assert response.json()["media"] == "sfu"
    assert Room.objects.get(slug="all-hands").media == Room.Media.SFU


def test_the_owner_can_make_a_room_mesh_only(alice, public_room):
    response = api_as(alice).patch(f"/api/rooms/{public_room.slug}/", {"media": "mesh"}, format="json")
    assert response.status_code == status.HTTP_200_OK
    public_room.refresh_from_db()
    assert public_room.media == Room.Media.MESH


def test_a_member_cannot_change_the_media(bob, public_room):
    response = api_as(bob).patch(f"/api/rooms/{public_room.slug}/", {"media": "sfu"}, format="json")
    assert response.status_code == status.HTTP_403_FORBIDDEN
    public_room.refresh_from_db()
    assert public_room.media == Room.Media.AUTO


def test_an_unknown_media_is_a_field_error(alice):
    response = api_as(alice).post("/api/rooms/", {"name": "Odd", "media": "p2p"}, format="json")
    assert response.status_code == status.HTTP_400_BAD_REQUEST
    assert set(response.json()) == {"media"}
