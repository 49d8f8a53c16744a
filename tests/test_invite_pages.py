"""The invite link page (/invite/<token>/): whom it makes a member of the room, and what an unusable link says.

The invites themselves are made and revoked through the API (tests/test_api.py).
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from calls.models import Invite
from tests.helpers import an_invite

pytestmark = pytest.mark.django_db

A_DAY = timedelta(days=1)


def test_opening_an_invite_link_makes_the_user_a_member_and_lands_them_in_the_room(client, room, mallory):
    invite = an_invite(room, max_uses=1)
    client.force_login(mallory)
    assert f"Join {room.name}?" in client.get(f"/invite/{invite.token}/").content.decode()  # asks first
    response = client.post(f"/invite/{invite.token}/")
    assert response.status_code == 302 and response.url == f"/rooms/{room.slug}/"
    assert room.role_of(mallory) == "member"
    invite.refresh_from_db()
    assert invite.use_count == 1


def test_an_anonymous_visitor_is_asked_to_log_in_first(client, room):
    invite = an_invite(room)
    response = client.get(f"/invite/{invite.token}/")
    assert response.status_code == 302 and response.url == f"/accounts/login/?next=/invite/{invite.token}/"


def test_a_newcomer_signs_up_from_the_invite_link_and_lands_in_the_room(client, room, django_user_model):
    invite = an_invite(room)
    login_page = client.get(f"/invite/{invite.token}/", follow=True)
    assert f"/accounts/signup/?next=/invite/{invite.token}/" in login_page.content.decode()
    response = client.post(f"/accounts/signup/?next=/invite/{invite.token}/", {
        "username": "dora", "password1": "a-long-pass-phrase", "password2": "a-long-pass-phrase",
        "next": f"/invite/{invite.token}/"}, follow=True)
    assert response.redirect_chain[-1][0] == f"/invite/{invite.token}/"
    response = client.post(f"/invite/{invite.token}/", follow=True)
    assert response.redirect_chain[-1][0] == f"/rooms/{room.slug}/"
    assert room.role_of(django_user_model.objects.get(username="dora")) == "member"


def test_an_existing_member_does_not_use_up_the_invite(client, room, bob):
    invite = an_invite(room, max_uses=1)
    client.force_login(bob)
    assert client.get(f"/invite/{invite.token}/").status_code == 302
    assert client.post(f"/invite/{invite.token}/").status_code == 302
    invite.refresh_from_db()
    assert invite.use_count == 0 and room.role_of(bob) == "member"


@pytest.mark.parametrize(
    ("fields", "status_code", "says"),
    [
        ({"revoked_at": timezone.now()}, 410, "was revoked"),
        ({"max_uses": 1, "use_count": 1}, 410, "used as many times"),
        ({"expired": True}, 410, "has expired"),
    ],
)
def test_an_unusable_invite_link_says_why(client, room, mallory, fields, status_code, says):
    if fields.pop("expired", False):
        invite = Invite.objects.create(room=room, created_at=timezone.now() - 2 * A_DAY,
                                       expires_at=timezone.now() - A_DAY)
    else:
        invite = an_invite(room, **fields)
    client.force_login(mallory)
    response = client.get(f"/invite/{invite.token}/")
    assert response.status_code == status_code
    assert says in response.content.decode()
    assert room.role_of(mallory) is None


def test_an_unknown_invite_token_is_not_found(client, mallory):
    client.force_login(mallory)
    response = client.get("/invite/not-a-real-token/")
    assert response.status_code == 404 and "not valid" in response.content.decode()
