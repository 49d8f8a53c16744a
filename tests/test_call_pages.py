"""Server-side rendering of the call page, the room settings page and My calls."""

import json
import re

import pytest

pytestmark = pytest.mark.django_db


def test_room_page_carries_the_call_ui_and_its_config(client, bob, private_room):
    client.force_login(bob)
    response = client.get(private_room.get_absolute_url())
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="call"' in body and "js/call.js" in body
    config = json.loads(re.search(r'id="call-config"[^>]*>(.*?)</script>', body, re.S).group(1))
    assert config == {"slug": private_room.slug, "can_moderate": False, "max_participants": 8,
                      "state_url": f"/rooms/{private_room.slug}/call-state/", "kick_ban_seconds": 300}
    assert "Room settings" not in body


def test_owner_sees_settings_link_and_moderation(client, alice, private_room):
    client.force_login(alice)
    body = client.get(private_room.get_absolute_url()).content.decode()
    assert f"/rooms/{private_room.slug}/settings/" in body
    assert '"can_moderate": true' in body


def test_member_and_outsider_cannot_open_settings(client, bob, mallory, private_room):
    for user in (bob, mallory):
        client.force_login(user)
        assert client.get(f"/rooms/{private_room.slug}/settings/").status_code == 404


def test_owner_opens_settings(client, alice, private_room):
    client.force_login(alice)
    response = client.get(f"/rooms/{private_room.slug}/settings/")
    assert response.status_code == 200
    assert b"js/settings.js" in response.content


def test_my_calls_needs_a_login(client):
    response = client.get("/calls/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
