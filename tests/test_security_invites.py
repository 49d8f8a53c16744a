"""Issue 10, row 8: an invite link asks "Join <room>?"; only its POST, with the CSRF token, makes the member."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from calls.models import Invite

pytestmark = pytest.mark.django_db


@pytest.fixture
def invite(private_room):
    return Invite.objects.create(room=private_room, expires_at=timezone.now() + timedelta(hours=1), max_uses=1)


def test_opening_the_link_asks_and_changes_nothing(client, invite, mallory):
    client.force_login(mallory)
    for _ in range(3):  # a link preview, a prefetch, the person
        response = client.get(invite.get_absolute_url())
        assert response.status_code == 200
    body = response.content.decode()
    assert "Join Board room?" in body and 'method="post"' in body and "csrfmiddlewaretoken" in body
    assert invite.room.role_of(mallory) is None
    invite.refresh_from_db()
    assert invite.use_count == 0


def test_the_post_makes_the_member(client, invite, mallory):
    client.force_login(mallory)
    response = client.post(invite.get_absolute_url())
    assert response.status_code == 302 and response.url == invite.room.get_absolute_url()
    assert invite.room.role_of(mallory) == "member"


def test_a_post_without_the_csrf_token_is_refused(invite, mallory):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(mallory)
    assert browser.post(invite.get_absolute_url()).status_code == 403
    assert invite.room.role_of(mallory) is None


def test_a_post_with_the_pages_csrf_token_joins(invite, mallory):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(mallory)
    browser.get(invite.get_absolute_url())
    token = browser.cookies["csrftoken"].value
    assert browser.post(invite.get_absolute_url(), {"csrfmiddlewaretoken": token}).status_code == 302
    assert invite.room.role_of(mallory) == "member"


def test_an_unusable_link_says_so_on_get_and_post(client, invite, mallory):
    invite.revoked_at = timezone.now()
    invite.save()
    client.force_login(mallory)
    assert client.get(invite.get_absolute_url()).status_code == 410
    assert client.post(invite.get_absolute_url()).status_code == 410
    assert invite.room.role_of(mallory) is None
