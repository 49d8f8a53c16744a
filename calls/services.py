"""Writes that span models. Views, API and consumers call these; they never write across models themselves."""

from django.db import transaction
from django.utils.text import slugify

from calls.models import Room, RoomMembership


def unique_slug_for(name: str) -> str:
    base = slugify(name)[:56] or "room"
    slug, n = base, 2
    while Room.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


@transaction.atomic
def create_room(*, owner, name: str, slug: str = "", **fields) -> Room:
    """Create a room and make its creator the owner member."""
    room = Room.objects.create(owner=owner, name=name, slug=slug or unique_slug_for(name), **fields)
    RoomMembership.objects.create(room=room, user=owner, role=RoomMembership.Role.OWNER)
    return room
