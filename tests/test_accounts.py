import pytest
from django.core import mail
from django.urls import reverse
from rest_framework import status
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db


def test_sign_up_creates_the_user_and_logs_them_in(client, django_user_model):
    response = client.post(
        reverse("signup"),
        {"username": "dora", "display_name": "Dora", "email": "dora@example.com",
         "password1": "a-long-pass-phrase", "password2": "a-long-pass-phrase"},
    )
    assert response.status_code == 302 and response.url == reverse("home")
    user = django_user_model.objects.get(username="dora")
    assert user.display_name == "Dora"
    assert client.get(reverse("home")).context["user"] == user


def test_sign_up_rejects_mismatched_passwords(client, django_user_model):
    response = client.post(reverse("signup"), {"username": "dora", "password1": "a-long-pass-phrase",
                                               "password2": "something-else-1"})
    assert response.status_code == 200
    assert "password2" in response.context["form"].errors
    assert not django_user_model.objects.filter(username="dora").exists()


def test_sign_up_ignores_an_offsite_next_url(client):
    response = client.post(reverse("signup") + "?next=https://evil.example/",
                           {"username": "dora", "password1": "a-long-pass-phrase", "password2": "a-long-pass-phrase",
                            "next": "https://evil.example/"})
    assert response.url == reverse("home")


def test_log_in_and_log_out(client, alice, password):
    response = client.post(reverse("login"), {"username": "alice", "password": password})
    assert response.status_code == 302
    assert client.get(reverse("home")).context["user"] == alice
    assert client.get(reverse("logout")).status_code == 405  # logging out takes a POST
    client.post(reverse("logout"))
    assert not client.get(reverse("home")).context["user"].is_authenticated


def test_log_in_with_a_wrong_password_fails(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert response.context["form"].errors


def test_profile_changes_the_display_name(client, alice):
    client.force_login(alice)
    client.post(reverse("profile"), {"display_name": "Alice Liddell", "email": "alice@example.com"})
    alice.refresh_from_db()
    assert alice.display_name == "Alice Liddell"


def test_password_change(client, alice, password):
    client.force_login(alice)
    response = client.post(reverse("password_change"), {"old_password": password, "new_password1": "n3w-pass-phrase",
                                                        "new_password2": "n3w-pass-phrase"})
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("n3w-pass-phrase")


def test_password_reset_sends_a_link_by_email(client, alice):
    response = client.post(reverse("password_reset"), {"email": "alice@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert "/accounts/reset/" in mail.outbox[0].body
    assert mail.outbox[0].subject == "Reset your Parley password"


@pytest.mark.parametrize("name", ["login", "signup", "password_reset"])
def test_account_pages_render(client, name):
    assert client.get(reverse(name)).status_code == 200


def test_token_is_issued_for_good_credentials(api, alice, password):
    response = api.post("/api/auth/token/", {"username": "alice", "password": password}, format="json")
    assert response.status_code == status.HTTP_200_OK
    assert response.json()["token"] == Token.objects.get(user=alice).key
    assert response.json()["user"] == {"id": alice.id, "username": "alice", "display_name": "Alice A."}


def test_wrong_credentials_get_a_400_with_a_json_error(api, alice):
    response = api.post("/api/auth/token/", {"username": "alice", "password": "wrong"}, format="json")
    assert response.status_code == status.HTTP_400_BAD_REQUEST
    assert response.json() == {"detail": "Unable to log in with the provided credentials."}


def test_missing_fields_get_field_errors(api):
    response = api.post("/api/auth/token/", {}, format="json")
    assert response.status_code == status.HTTP_400_BAD_REQUEST
    assert set(response.json()) == {"username", "password"}


def test_repeated_failures_are_throttled_but_not_the_first_ones(api, alice, password, settings):
    # Other usernames each time: the lockout of one username (tests/test_security_login.py) would come first.
    for n in range(10):
        assert api.post("/api/auth/token/", {"username": f"user{n}", "password": "x"},
                        format="json").status_code == 400
    response = api.post("/api/auth/token/", {"username": "alice", "password": password}, format="json")
    assert response.status_code == status.HTTP_429_TOO_MANY_REQUESTS
    assert "detail" in response.json()


def test_successful_logins_are_not_throttled(api, alice, password):
    for _ in range(15):
        assert api.post("/api/auth/token/", {"username": "alice", "password": password},
                        format="json").status_code == 200


def test_token_authenticates_and_can_be_revoked(api, alice, password):
    token = api.post("/api/auth/token/", {"username": "alice", "password": password}, format="json").json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    me = api.get("/api/me/")
    assert me.status_code == 200 and me.json()["username"] == "alice"

    assert api.delete("/api/auth/token/").status_code == status.HTTP_204_NO_CONTENT
    assert api.get("/api/me/").status_code == status.HTTP_401_UNAUTHORIZED
    assert not Token.objects.filter(user=alice).exists()


def test_me_needs_authentication(api):
    response = api.get("/api/me/")
    assert response.status_code == status.HTTP_401_UNAUTHORIZED
    assert "detail" in response.json()
