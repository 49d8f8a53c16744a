"""Error pages in the site's layout: 404 (a private room's says it may exist), 403, 500."""

import re

import pytest
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory
from django.urls import reverse

from calls import views

pytestmark = pytest.mark.django_db


def test_a_private_room_and_a_missing_one_get_the_same_helpful_404(client, mallory, room, settings):
    settings.DEBUG = True  # even under `make run`: not Django's debug page
    client.force_login(mallory)
    private = client.get(room.get_absolute_url())
    missing = client.get("/rooms/no-such-room/")
    for response in (private, missing):
        assert response.status_code == 404
        body = response.content.decode()
        assert "does not exist, or you do not have access to it" in body
        assert "ask the room's owner" in body and 'class="site-header"' in body
    def without_token(response, slug):  # the same page but for the CSRF token of the log-out form
        return re.sub(rb'name="csrfmiddlewaretoken" value="[^"]*"', b"", response.content).replace(slug.encode(), b"")

    assert without_token(private, room.slug) == without_token(missing, "no-such-room")


def test_other_missing_pages_get_the_styled_404(client, bob, settings):
    settings.DEBUG = False
    client.force_login(bob)
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    assert b"Page not found" in response.content and b'class="site-header"' in response.content
    assert client.get("/api/nothing-here/").json() == {"detail": "Not found."}  # the API keeps its JSON


def test_403_and_500_pages_are_in_the_site_layout(rf: RequestFactory, bob):
    request = rf.get("/")
    request.user = bob
    response = views.permission_denied(request, PermissionDenied("Only the owner may do this."))
    assert response.status_code == 403
    assert b"Only the owner may do this." in response.content and b"site-header" in response.content
    response = views.server_error(rf.get("/"))
    assert response.status_code == 500
    assert b"Something went wrong on our side" in response.content and b"site-header" in response.content


def test_the_handlers_are_installed():
    from config import urls

    assert urls.handler404 == "calls.views.page_not_found"
    assert urls.handler403 == "calls.views.permission_denied"
    assert urls.handler500 == "calls.views.server_error"
    assert reverse("call-detail", args=[1]) == "/calls/1/"
