"""Bench users, rooms and tickets made through Parley's own models.

Pair `i` is the private room `bench-<i>` (at most 2 participants), owned by user `bench-<i>-a`, with user
`bench-<i>-b` as a member. Everything is created idempotently, so runs can repeat against the same database.
This is the only bench module that imports Django; `signal_load.py --django` loads it on demand.

Run on its own it prints a ticket file for `signal_load.py --tickets` (tickets are single use and expire
in 60 s, so use the file at once):

    python bench/fixtures.py --project-dir . --rooms 10 > tickets.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote


def setup_django(project_dir: Path) -> None:
    """Make the project importable and configure Django with its settings."""
    sys.path.insert(0, str(project_dir.resolve()))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def _username(pair: int, side: str) -> str:
    return f"bench-{pair}-{side}"


def _slug(pair: int) -> str:
    return f"bench-{pair}"


def ensure_pairs(count: int) -> None:
    """Create the users, rooms and memberships of pairs 0..count-1 that do not exist yet."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    from calls.models import Room, RoomMembership

    user_model = get_user_model()
    names = [_username(pair, side) for pair in range(count) for side in "ab"]
    slugs = [_slug(pair) for pair in range(count)]
    with transaction.atomic():
        existing = set(user_model.objects.filter(username__in=names).values_list("username", flat=True))
        # make_password(None) is an unusable password: bench users can only join with minted tickets.
        user_model.objects.bulk_create(
            [user_model(username=name, display_name=name, password=make_password(None))
             for name in names if name not in existing])
        users = {user.username: user for user in user_model.objects.filter(username__in=names)}

        existing = set(Room.objects.filter(slug__in=slugs).values_list("slug", flat=True))
        Room.objects.bulk_create(
            [Room(slug=_slug(pair), name=f"Bench {pair}", owner=users[_username(pair, "a")],
                  visibility="private", max_participants=2, locked=False)
             for pair in range(count) if _slug(pair) not in existing])
        # A previous run or a person may have changed these; the bench needs them as documented.
        Room.objects.filter(slug__in=slugs).update(visibility="private", max_participants=2, locked=False)
        rooms = {room.slug: room for room in Room.objects.filter(slug__in=slugs)}

        wanted = {(rooms[_slug(pair)].pk, users[_username(pair, side)].pk): role
                  for pair in range(count) for side, role in (("a", "owner"), ("b", "member"))}
        existing = set(RoomMembership.objects.filter(room__in=rooms.values(), user__in=users.values())
                       .values_list("room_id", "user_id"))
        RoomMembership.objects.bulk_create(
            [RoomMembership(room_id=room_id, user_id=user_id, role=role)
             for (room_id, user_id), role in wanted.items() if (room_id, user_id) not in existing])


def mint_tickets(pairs: Sequence[int]) -> list[dict[str, object]]:
    """Fresh tickets for both sides of `pairs`, in the shape of a `--tickets` file entry."""
    from django.contrib.auth import get_user_model

    from calls.models import Room
    from calls.tickets import sign_ticket

    users = {user.username: user for user in get_user_model().objects.filter(
        username__in=[_username(pair, side) for pair in pairs for side in "ab"])}
    rooms = {room.slug: room for room in Room.objects.filter(slug__in=[_slug(pair) for pair in pairs])}
    entries: list[dict[str, object]] = []
    for pair in pairs:
        room = rooms[_slug(pair)]
        for side in "ab":
            ticket = sign_ticket(user=users[_username(pair, side)], bound=room.slug)
            entries.append({"url_path": f"/ws/rooms/{room.slug}/?ticket={quote(ticket, safe='')}",
                            "pair": pair, "side": side})
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description="Create bench fixtures and print a ticket file.")
    parser.add_argument("--project-dir", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--rooms", type=int, required=True)
    args = parser.parse_args()
    setup_django(args.project_dir)
    ensure_pairs(args.rooms)
    json.dump(mint_tickets(range(args.rooms)), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
