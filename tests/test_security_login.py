"""Issue 10, row 5: brute force. Five failures for one username from one address lock it out with 429 for 15
minutes, on the site log-in, the admin log-in and the API token endpoint (django-axes)."""

import logging
from datetime import timedelta

import pytest
import requests
from axes.models import AccessAttempt
from django.utils import timezone
from rest_framework.test import APIClient

from tests.servers import DaphneServer

pytestmark = pytest.mark.django_db

SITE, ADMIN, TOKEN = "/accounts/login/", "/admin/login/", "/api/auth/token/"


def attempt(client, path: str, username: str, password: str, **extra) -> int:
    """One log-in attempt; its status: 302 (site, admin) or 200 (token) in, 200 or 400 refused, 429 locked."""
    if path == TOKEN:
        return client.post(path, {"username": username, "password": password}, format="json", **extra).status_code
    return client.post(path, {"username": username, "password": password, "next": "/"}, **extra).status_code


@pytest.fixture
def clients(client):
    return {SITE: client, ADMIN: client, TOKEN: APIClient()}


def success_code(path):
    return 200 if path == TOKEN else 302


def failure_code(path):
    return 400 if path == TOKEN else 200


@pytest.mark.parametrize("path", [SITE, ADMIN, TOKEN])
def test_five_failures_lock_the_username_out_even_with_the_right_password(clients, path, admin_user, password):
    client = clients[path]
    codes = [attempt(client, path, "root", "wrong") for _ in range(5)]
    assert codes == [failure_code(path)] * 4 + [429]  # the fifth failure already answers that the lock began
    assert attempt(client, path, "root", password) == 429
    assert attempt(client, path, "root", password) == 429


@pytest.mark.parametrize("path", [SITE, TOKEN])
def test_four_failures_then_the_right_password_logs_in_and_resets_the_count(clients, path, alice, password):
    client = clients[path]
    assert [attempt(client, path, "alice", "wrong") for _ in range(4)] == [failure_code(path)] * 4
    assert attempt(client, path, "alice", password) == success_code(path)
    if path == SITE:
        client.logout()
    assert [attempt(client, path, "alice", "wrong") for _ in range(4)] == [failure_code(path)] * 4


def test_the_lock_answer_says_when_to_come_back(client, alice):
    for _ in range(5):
        response = client.post(SITE, {"username": "alice", "password": "wrong"})
    assert response.status_code == 429 and response["Retry-After"] == "900"
    assert "Try again in 15 minutes" in response.content.decode()
    api = APIClient().post(TOKEN, {"username": "alice", "password": "wrong"}, format="json")
    assert api.status_code == 429 and "Try again in 15 minutes" in api.json()["detail"]


def test_the_lock_is_per_username_and_address(client, alice, bob, password):
    for _ in range(5):
        attempt(client, SITE, "alice", "wrong")
    assert attempt(client, SITE, "alice", password) == 429
    assert attempt(client, SITE, "bob", password) == 302  # another username from the same address
    client.logout()
    assert attempt(client, SITE, "alice", password, REMOTE_ADDR="192.0.2.7") == 302  # alice from elsewhere


def test_the_lock_ends_after_15_minutes(client, alice, password):
    for _ in range(5):
        attempt(client, SITE, "alice", "wrong")
    assert attempt(client, SITE, "alice", password) == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=14))
    assert attempt(client, SITE, "alice", password) == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=15, seconds=1))
    assert attempt(client, SITE, "alice", password) == 302


@pytest.mark.parametrize("path", [SITE, TOKEN])
def test_a_client_chosen_x_forwarded_for_gives_no_fresh_budget(clients, path, alice, password):
    client = clients[path]
    codes = [attempt(client, path, "alice", "wrong", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}") for n in range(6)]
    assert codes[-2:] == [429, 429]
    assert attempt(client, path, "alice", password, HTTP_X_FORWARDED_FOR="198.51.100.1") == 429


@pytest.mark.parametrize("path", [SITE, TOKEN])
def test_behind_the_proxy_the_address_it_appended_counts(clients, path, alice, password, settings):
    settings.PARLEY_BEHIND_PROXY = True
    client = clients[path]
    # The client sends its own X-Forwarded-For; the proxy appends the address it saw (198.51.100.20).
    codes = [attempt(client, path, "alice", "wrong", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}, 198.51.100.20")
             for n in range(5)]
    assert codes[-1] == 429
    assert attempt(client, path, "alice", password, HTTP_X_FORWARDED_FOR="10.9.9.9, 198.51.100.20") == 429
    # Another real client behind the same proxy has its own budget.
    assert attempt(client, path, "alice", password, HTTP_X_FORWARDED_FOR="198.51.100.21") == success_code(path)
    assert AccessAttempt.objects.get().ip_address == "198.51.100.20"


def test_the_token_throttle_per_address_ignores_a_client_chosen_x_forwarded_for(django_user_model):
    """The older throttle (10 failures a minute per address, any username) is not bypassed either."""
    api = APIClient()
    codes = [api.post(TOKEN, {"username": f"nobody{n}", "password": "x"}, format="json",
                      HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code for n in range(11)]
    assert codes == [400] * 10 + [429]


def test_failures_and_the_lockout_are_logged(client, alice, caplog):
    with caplog.at_level(logging.INFO):
        for _ in range(5):
            attempt(client, SITE, "alice", "wrong", REMOTE_ADDR="192.0.2.44")
    failures = [r for r in caplog.records if r.name.startswith("axes")
                and ("New login failure" in r.getMessage() or "Repeated login failure" in r.getMessage())]
    assert len(failures) == 5
    assert "alice" in failures[0].getMessage() and "192.0.2.44" in failures[0].getMessage()
    assert any("Locking out" in r.getMessage() for r in caplog.records)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_real_server_locks_out_the_site_and_token_log_ins(live_server_process, alice, password, settings):
    from django.conf import global_settings
    from django.contrib.auth.hashers import make_password

    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS  # what the server checks with
    type(alice).objects.filter(pk=alice.pk).update(password=make_password(password))
    server: DaphneServer = live_server_process
    http = requests.Session()

    def site(pw: str, forwarded: str) -> int:
        http.get(server.url + SITE, timeout=10)
        return http.post(server.url + SITE, timeout=10, allow_redirects=False,
                         data={"username": "alice", "password": pw, "csrfmiddlewaretoken": http.cookies["csrftoken"]},
                         headers={"X-Forwarded-For": forwarded}).status_code

    assert [site("wrong", f"203.0.113.{n}") for n in range(5)] == [200] * 4 + [429]
    assert site(password, "198.51.100.1") == 429
    token = requests.post(server.url + TOKEN, json={"username": "alice", "password": password}, timeout=10)
    assert token.status_code == 429 and token.json()["detail"].startswith("Too many failed log-ins")
