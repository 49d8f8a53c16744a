"""Adding members: a search that completes usernames and display names (any case), for those who may add; and a
username in the wrong case still finds the person."""

import pytest
from rest_framework import status

from tests.helpers import api_as

pytestmark = pytest.mark.django_db


@pytest.fixture
def ben(django_user_model):
    return django_user_model.objects.create_user("ben", display_name="Benjamin Roe")


@pytest.fixture
def benedict(django_user_model):
    return django_user_model.objects.create_user("benedict")


def candidates(user, room, q):
    return api_as(user).get(f"/api/rooms/{room.slug}/member-candidates/", {"q": q})


def test_owners_and_moderators_find_people_by_username_or_name_in_any_case(alice, carol, ben, benedict, room):
    response = candidates(alice, room, "BEN")
    assert response.status_code == status.HTTP_200_OK
    assert [u["username"] for u in response.json()] == ["ben", "benedict"]
    assert candidates(carol, room, "roe").json() == [{"id": ben.pk, "username": "ben", "display_name": "Benjamin Roe"}]


def test_members_already_in_the_room_and_short_queries_give_nothing(alice, bob, room):
    assert candidates(alice, room, "bo").json() == []  # bob is a member already
    assert candidates(alice, room, "b").json() == []  # too short to search


def test_members_and_outsiders_cannot_search(bob, mallory, ben, room, public_room):
    assert candidates(bob, room, "ben").status_code == status.HTTP_403_FORBIDDEN
    assert candidates(mallory, room, "ben").status_code == status.HTTP_404_NOT_FOUND  # private: does not exist
    assert candidates(mallory, public_room, "ben").status_code == status.HTTP_403_FORBIDDEN


def test_adding_Ben_adds_ben_and_an_unknown_name_says_so(alice, ben, room):
    response = api_as(alice).post(f"/api/rooms/{room.slug}/members/", {"username": "Ben"}, format="json")
    assert response.status_code == status.HTTP_201_CREATED
    assert response.json()["user"]["username"] == "ben"
    response = api_as(alice).post(f"/api/rooms/{room.slug}/members/", {"username": "Bent"}, format="json")
    assert response.status_code == status.HTTP_400_BAD_REQUEST
    message = response.json()["username"][0]
    assert message.startswith('Nobody has the username "Bent".') and "does not exist" not in message


def test_an_exact_match_wins_over_another_case(alice, room, django_user_model):
    django_user_model.objects.create_user("Sam")
    sam = django_user_model.objects.create_user("sam")
    response = api_as(alice).post(f"/api/rooms/{room.slug}/members/", {"username": "sam"}, format="json")
    assert response.json()["user"]["id"] == sam.pk


def test_a_bare_token_is_refused_saying_the_prefix_is_missing(alice, api):
    from rest_framework.authtoken.models import Token

    key = Token.objects.create(user=alice).key
    response = api.get("/api/me/", HTTP_AUTHORIZATION=key)
    assert response.status_code == status.HTTP_401_UNAUTHORIZED
    assert 'the "Token " prefix is missing' in response.json()["detail"]
    assert key not in response.json()["detail"]  # the key is not echoed back whole
    assert api.get("/api/me/", HTTP_AUTHORIZATION=f"Token {key}").json()["username"] == "alice"


def test_the_api_docs_explain_the_token_form(client, api):
    schema = api.get("/api/schema/?format=json").json()
    scheme = schema["components"]["securitySchemes"]["tokenAuth"]
    assert scheme["type"] == "apiKey" and "`Token <key>`" in scheme["description"]
    page = client.get("/api/docs/").content.decode()
    assert 'id="token-help"' in page and "Token &lt;key&gt;" in page
