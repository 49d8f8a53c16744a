"""Issue 10, row 3: when credentials or access end, the user's signaling sockets end too, on every server process.

Everything here runs against real daphne processes with real WebSocket clients: people log in through the login
page (a session cookie), and the logout, password change or removal is a real HTTP request to a server.
"""

import asyncio
import os
import re
import time
from html.parser import HTMLParser

import pytest
import requests
import websockets
from asgiref.sync import sync_to_async
from django.contrib.auth.tokens import default_token_generator
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from rest_framework.authtoken.models import Token

from calls import services
from calls.models import Call, CallParticipant, Room
from tests.live_sockets import Socket, ticket_socket
from tests.servers import DaphneServer

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

OFFER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
DEADLINE = 5.0  # seconds within which a socket must be closed (the figure)
NEW_PASSWORD = "a-brand-new-pass-phrase"


# --- Helpers: browsers' sessions over plain HTTP, sockets over real WebSockets ------------------------------------


class FormParser(HTMLParser):
    """The fields of the first form with `id` (or the first POST form) of a page, as a browser would submit them."""

    def __init__(self, form_id: str | None = None):
        super().__init__()
        self.form_id, self.inside, self.done = form_id, False, False
        self.fields: list[tuple[str, str]] = []
        self.select: str | None = None
        self.textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and not self.done:
            self.inside = a.get("id") == self.form_id if self.form_id else a.get("method", "").lower() == "post"
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "button", "file"):
            if a.get("type") in ("checkbox", "radio"):
                if "checked" in a:
                    self.fields.append((name, a.get("value", "on")))
            else:
                self.fields.append((name, a.get("value") or ""))
        elif tag == "select" and name:
            self.select = name
        elif tag == "option" and self.select and "selected" in a:
            self.fields.append((self.select, a.get("value", "")))
        elif tag == "textarea" and name:
            self.textarea = name
            self.fields.append((name, ""))

    def handle_data(self, data):
        if self.textarea:
            self.fields[-1] = (self.textarea, self.fields[-1][1] + data)

    def handle_endtag(self, tag):
        if tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None
        elif tag == "form" and self.inside:
            self.inside, self.done = False, True


def form_fields(html: str, form_id: str | None = None) -> dict[str, str | list[str]]:
    parser = FormParser(form_id)
    parser.feed(html)
    fields: dict[str, str | list[str]] = {}
    for name, value in parser.fields:
        if name in fields:
            previous = fields[name]
            fields[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[name] = value
    return fields


class Browser:
    """A requests session that behaves like a browser tab on one server: CSRF token, Referer, cookies."""

    def __init__(self, server: DaphneServer):
        self.server = server
        self.http = requests.Session()

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.http.get(self.server.url + path, timeout=10, **kwargs)

    def post(self, path: str, data: dict, **kwargs) -> requests.Response:
        data = {"csrfmiddlewaretoken": self.http.cookies.get("csrftoken", ""), **data}
        return self.http.post(self.server.url + path, data=data, headers={"Referer": self.server.url + path},
                              timeout=10, **kwargs)

    def submit(self, path: str, changes: dict, *, form_id: str | None = None) -> requests.Response:
        """GET the page and POST its form back with `changes` (a value of None drops the field)."""
        page = self.get(path)
        assert page.status_code == 200, page.status_code
        fields = {**form_fields(page.text, form_id), **changes}
        return self.post(path, {k: v for k, v in fields.items() if v is not None}, allow_redirects=False)

    def log_in(self, username: str, password: str, path: str = "/accounts/login/") -> "Browser":
        self.get(path)
        response = self.post(path, {"username": username, "password": password}, allow_redirects=False)
        assert response.status_code == 302, (response.status_code, response.text[:500])
        return self

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.http.cookies)


async def in_thread(func, *args, **kwargs):
    return await asyncio.to_thread(func, *args, **kwargs)


async def session_socket(server: DaphneServer, browser: Browser, room) -> Socket:
    """A browser's socket: authenticated by its session cookie, with its page's Origin."""
    ws = await websockets.connect(f"{server.ws_url}/ws/rooms/{room.slug}/",
                                  additional_headers={"Cookie": browser.cookie_header, "Origin": server.url})
    return await Socket(ws).start()


async def keep_offering(sender: Socket, to: str, sent: list) -> None:
    """Send offers every 10 ms until the socket is closed, as a client that did not notice would."""
    try:
        while True:
            await sender.send({"type": "offer", "to": to, "sdp": OFFER})
            sent.append(time.monotonic())
            await asyncio.sleep(0.01)
    except websockets.ConnectionClosed:
        pass


def relayed_after_left(receiver: Socket, sender_peer_id: str) -> int:
    """Frames from `sender_peer_id` that reached `receiver` after its peer-left: none may."""
    left = next(i for i, f in enumerate(receiver.frames)
                if f["type"] == "peer-left" and f["peer_id"] == sender_peer_id)
    return sum(1 for f in receiver.frames[left:] if f.get("from") == sender_peer_id)


async def assert_unknown_to(sender: Socket, peer_id: str) -> None:
    """Nothing is relayed to a peer that was signed out: the server answers unknown-peer."""
    before = len(sender.frames)
    await sender.send({"type": "offer", "to": peer_id, "sdp": OFFER})
    error = await sender.frame(lambda f: f["type"] == "error", start=before)
    assert error["code"] == "unknown-peer"


@pytest.fixture
def hashed_as_in_production(settings, password, django_user_model):
    """The personas' passwords hashed with Django's default hashers, which the server processes use (the test
    process hashes with MD5 for speed, which they cannot check)."""
    from django.conf import global_settings
    from django.contrib.auth.hashers import make_password

    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS

    def rehash(*users):
        for user in users:
            django_user_model.objects.filter(pk=user.pk).update(password=make_password(password))

    return rehash


@pytest.fixture
def two_servers(redis_url, live_server_process):
    """Two daphne processes sharing Redis and the database, as behind a load balancer."""
    prefix = f"parley-sec-{os.getpid()}"
    env = {"REDIS_URL": redis_url, "PARLEY_CHANNEL_PREFIX": prefix}
    with DaphneServer(env=env) as first, DaphneServer(env=env) as second:
        first.prefix = second.prefix = prefix
        yield first, second


@pytest.fixture
def same_layer_as(settings):
    """Point this test process's channel layer at the servers' Redis, as `manage.py shell` in production would."""
    from channels.layers import channel_layers

    from config.settings import channel_layer_for

    def configure(server):
        settings.CHANNEL_LAYERS = {"default": channel_layer_for(server.env["REDIS_URL"], prefix=server.prefix)}
        channel_layers.backends.clear()

    yield configure
    channel_layers.backends.clear()


# --- Credentials end sockets: 4401 on every process -------------------------------------------------------------


def log_out(alice_browser, first, second, alice, admin_user, password, same_layer_as):
    assert alice_browser.post("/accounts/logout/", {}, allow_redirects=False).status_code == 302


def change_password(alice_browser, first, second, alice, admin_user, password, same_layer_as):
    response = alice_browser.post("/accounts/password_change/", {
        "old_password": password, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
        allow_redirects=False)
    assert response.status_code == 302, response.text[:500]


def reset_password(alice_browser, first, second, alice, admin_user, password, same_layer_as):
    stranger = Browser(second)  # the reset link is opened anywhere, logged out
    alice.refresh_from_db()  # the token depends on the password hash and last login
    uid = urlsafe_base64_encode(force_bytes(alice.pk))
    link = stranger.get(f"/accounts/reset/{uid}/{default_token_generator.make_token(alice)}/")
    path = link.url.removeprefix(second.url)
    assert path.endswith("/set-password/"), link.url
    response = stranger.post(path, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
                             allow_redirects=False)
    assert response.status_code == 302, response.text[:500]


def deactivate(alice_browser, first, second, alice, admin_user, password, same_layer_as):
    operator = Browser(second).log_in(admin_user.username, password, "/admin/login/")
    response = operator.submit(f"/admin/accounts/user/{alice.pk}/change/", {"is_active": None}, form_id="user_form")
    assert response.status_code == 302, response.text[:2000]


def deactivate_from_a_shell(alice_browser, first, second, alice, admin_user, password, same_layer_as):
    same_layer_as(first)
    from accounts.models import User

    user = User.objects.get(pk=alice.pk)
    user.is_active = False
    user.save()


def delete_in_the_admin(alice_browser, first, second, alice, admin_user, password, same_layer_as):
    operator = Browser(second).log_in(admin_user.username, password, "/admin/login/")
    operator.get(f"/admin/accounts/user/{alice.pk}/delete/")
    response = operator.post(f"/admin/accounts/user/{alice.pk}/delete/", {"post": "yes"}, allow_redirects=False)
    assert response.status_code == 302, response.text[:2000]


@pytest.fixture
def bobs_room(bob):
    """A public room alice does not own (deleting her would delete her rooms too)."""
    return services.create_room(owner=bob, name="Bob's corner", visibility="public")


@pytest.mark.redis
@pytest.mark.parametrize("end_credentials", [log_out, change_password, reset_password, deactivate,
                                             deactivate_from_a_shell, delete_in_the_admin])
async def test_ending_credentials_closes_the_users_sockets_on_every_process_with_4401(
        two_servers, bobs_room, alice, bob, admin_user, password, same_layer_as, end_credentials,
        hashed_as_in_production):
    first, second = two_servers
    await sync_to_async(hashed_as_in_production)(alice, admin_user)
    alice_browser = await in_thread(Browser(first).log_in, "alice", password)
    await sync_to_async(Token.objects.create)(user=alice)
    on_first = await session_socket(first, alice_browser, bobs_room)
    on_second = await session_socket(second, alice_browser, bobs_room)
    bob_socket = await ticket_socket(first, bob, bobs_room)
    sent: list[float] = []
    offering = asyncio.create_task(keep_offering(on_second, bob_socket.peer_id, sent))
    await bob_socket.frame(lambda f: f.get("from") == on_second.peer_id)  # alice's offers do flow

    started = time.monotonic()
    await sync_to_async(end_credentials)(alice_browser, first, second, alice, admin_user, password, same_layer_as)
    done = time.monotonic()
    codes = [await on_first.closed(), await on_second.closed()]
    await offering

    assert codes == [4401, 4401]
    # From the moment the change is made (the request's answer: its transaction has committed). The request itself
    # may take seconds on a busy machine: a password is hashed (and checked) with Django's slow default hasher.
    took = max(on_first.closed_at, on_second.closed_at) - done
    assert took < DEADLINE, took
    print(f"{end_credentials.__name__}: both sockets closed {took:.3f} s after the answer "
          f"({max(on_first.closed_at, on_second.closed_at) - started:.3f} s after the request)")
    for gone in (on_first, on_second):
        left = await bob_socket.frame(lambda f, gone=gone: f["type"] == "peer-left" and f["peer_id"] == gone.peer_id)
        assert left["reason"] == "signed-out"
        assert relayed_after_left(bob_socket, gone.peer_id) == 0
        await assert_unknown_to(bob_socket, gone.peer_id)
    rows = [p async for p in CallParticipant.objects.filter(peer_id__in=[on_first.peer_id, on_second.peer_id])]
    assert [p.leave_reason for p in rows] == ["signed-out", "signed-out"]
    if end_credentials is not log_out:
        assert not await Token.objects.filter(user_id=alice.pk).aexists()
    if end_credentials is delete_in_the_admin:
        assert [(p.user_id, p.display_name) for p in rows] == [(None, "Alice A."), (None, "Alice A.")]
    await bob_socket.close()


async def test_deleting_a_user_closes_the_calls_of_the_rooms_they_owned_with_4404(fresh_server, public_room, alice,
                                                                                 bob, admin_browser):
    server = fresh_server
    owner = await ticket_socket(server, alice, public_room)
    guest = await ticket_socket(server, bob, public_room)
    operator = await admin_browser(server)
    path = f"/admin/accounts/user/{alice.pk}/delete/"
    await in_thread(operator.get, path)
    assert (await in_thread(operator.post, path, {"post": "yes"}, allow_redirects=False)).status_code == 302
    assert [await owner.closed(), await guest.closed()] == [4401, 4404]
    call = await Call.objects.aget(pk=owner.welcome["call_id"])
    assert (call.room_id, call.room_name, call.is_live) == (None, "Town hall", False)
    rows = [(p.user_id, p.name_shown, p.leave_reason) async for p in call.participants.select_related("user")]
    assert rows == [(None, "Alice A.", "signed-out"), (bob.pk, "bob", "room-closed")]


async def test_the_signed_out_session_cannot_join_again(live_server_process, public_room, alice, password,
                                                        hashed_as_in_production):
    server = live_server_process
    await sync_to_async(hashed_as_in_production)(alice)
    browser = await in_thread(Browser(server).log_in, "alice", password)
    socket = await session_socket(server, browser, public_room)
    await in_thread(browser.post, "/accounts/logout/", {})
    assert await socket.closed() == 4401
    ws = await websockets.connect(f"{server.ws_url}/ws/rooms/{public_room.slug}/",
                                  additional_headers={"Cookie": browser.cookie_header, "Origin": server.url})
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd.code == 4401


async def test_a_password_change_revokes_the_api_token(live_server_process, alice, password,
                                                       hashed_as_in_production):
    server = live_server_process
    await sync_to_async(hashed_as_in_production)(alice)
    token = await sync_to_async(Token.objects.create)(user=alice)
    me = await in_thread(requests.get, f"{server.url}/api/me/", headers={"Authorization": f"Token {token.key}"},
                         timeout=10)
    assert me.status_code == 200
    browser = await in_thread(Browser(server).log_in, "alice", password)
    await in_thread(browser.post, "/accounts/password_change/", {
        "old_password": password, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    me = await in_thread(requests.get, f"{server.url}/api/me/", headers={"Authorization": f"Token {token.key}"},
                         timeout=10)
    assert me.status_code == 401


def test_a_login_that_upgrades_the_password_hash_signs_nobody_out(alice, password, public_room, settings):
    """Django rewrites an outdated hash at login; that is not a new password."""
    from django.contrib.auth.hashers import make_password

    from accounts.models import User

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
                                 "django.contrib.auth.hashers.MD5PasswordHasher"]
    User.objects.filter(pk=alice.pk).update(password=make_password(password, hasher="md5"))
    token = Token.objects.create(user=alice)
    participant = CallParticipant.objects.create(call=Call.objects.create(room=public_room, room_name="x"),
                                                 user=alice, relay_node="")
    user = User.objects.get(pk=alice.pk)
    assert user.check_password(password)  # rehashes and saves
    assert User.objects.get(pk=alice.pk).password.startswith("pbkdf2_sha1$")
    assert Token.objects.filter(pk=token.pk).exists()
    participant.refresh_from_db()
    assert participant.is_live


# --- Access ends: 4404 or 4403 -----------------------------------------------------------------------------------


def api(server: DaphneServer, user):
    token = Token.objects.get_or_create(user=user)[0]
    http = requests.Session()
    http.headers["Authorization"] = f"Token {token.key}"
    http.base = server.url
    return http


async def api_call(server, user, method: str, path: str, **kwargs) -> requests.Response:
    http = await sync_to_async(api)(server, user)
    return await in_thread(http.request, method, server.url + path, timeout=10, **kwargs)


async def test_a_member_removed_from_a_private_room_is_closed_with_4404(live_server_process, private_room, alice,
                                                                        bob):
    server = live_server_process
    owner = await ticket_socket(server, alice, private_room)
    member = await ticket_socket(server, bob, private_room)
    started = time.monotonic()
    response = await api_call(server, alice, "DELETE", f"/api/rooms/{private_room.slug}/members/bob/")
    assert response.status_code == 204
    assert await member.closed() == 4404
    assert member.closed_at - started < DEADLINE
    print(f"member removed: closed {member.closed_at - started:.3f} s after the request")
    left = await owner.frame(lambda f: f["type"] == "peer-left")
    assert (left["peer_id"], left["reason"]) == (member.peer_id, "no-access")
    await assert_unknown_to(owner, member.peer_id)
    assert (await CallParticipant.objects.aget(peer_id=member.peer_id)).leave_reason == "no-access"
    await owner.close()


async def test_a_member_who_leaves_a_private_room_is_closed_too(live_server_process, private_room, alice, bob):
    server = live_server_process
    owner = await ticket_socket(server, alice, private_room)
    member = await ticket_socket(server, bob, private_room)
    response = await api_call(server, bob, "DELETE", f"/api/rooms/{private_room.slug}/members/bob/")
    assert response.status_code == 204
    assert await member.closed() == 4404
    await owner.close()


async def test_making_a_public_room_private_closes_the_outsiders_only(live_server_process, public_room, alice, bob,
                                                                      mallory):
    server = live_server_process
    owner = await ticket_socket(server, alice, public_room)
    member = await ticket_socket(server, bob, public_room)
    outsider = await ticket_socket(server, mallory, public_room)
    started = time.monotonic()
    response = await api_call(server, alice, "PATCH", f"/api/rooms/{public_room.slug}/",
                              json={"visibility": "private"})
    assert response.status_code == 200, response.text
    assert await outsider.closed() == 4404
    assert outsider.closed_at - started < DEADLINE
    print(f"room made private: outsider closed {outsider.closed_at - started:.3f} s after the request")
    for staying in (owner, member):
        left = await staying.frame(lambda f: f["type"] == "peer-left")
        assert (left["peer_id"], left["reason"]) == (outsider.peer_id, "no-access")
    await member.send({"type": "ping"})
    assert await member.frame(lambda f: f["type"] == "pong")
    assert member.close_code is None and owner.close_code is None
    await member.close()
    await owner.close()


async def test_a_moderator_made_a_member_of_a_locked_room_is_closed_with_4403(live_server_process, public_room,
                                                                              alice, carol):
    server = live_server_process
    await sync_to_async(Room.objects.filter(pk=public_room.pk).update)(locked=True)
    owner = await ticket_socket(server, alice, public_room)
    moderator = await ticket_socket(server, carol, public_room)
    response = await api_call(server, alice, "PATCH", f"/api/rooms/{public_room.slug}/members/carol/",
                              json={"role": "member"})
    assert response.status_code == 200, response.text
    assert await moderator.closed() == 4403
    await owner.close()


# --- The admin goes through the services (row 6) ------------------------------------------------------------------


@pytest.fixture
def fresh_server(live_server_process):
    """A server process of this test only: a long-lived one caches content type ids, which the database flush
    between transactional tests renumbers (the admin's log entries then fail their foreign key)."""
    with DaphneServer() as server:
        yield server


@pytest.fixture
def admin_browser(admin_user, password, hashed_as_in_production):
    async def log_in(server) -> Browser:
        await sync_to_async(hashed_as_in_production)(admin_user)
        return await in_thread(Browser(server).log_in, admin_user.username, password, "/admin/login/")

    return log_in


async def test_deleting_a_room_in_the_admin_closes_its_call_with_4404_and_records_it(
        fresh_server, public_room, alice, bob, admin_browser):
    server = fresh_server
    owner = await ticket_socket(server, alice, public_room)
    member = await ticket_socket(server, bob, public_room)
    operator = await admin_browser(server)
    path = f"/admin/calls/room/{public_room.pk}/delete/"
    await in_thread(operator.get, path)
    response = await in_thread(operator.post, path, {"post": "yes"}, allow_redirects=False)
    assert response.status_code == 302
    assert [await owner.closed(), await member.closed()] == [4404, 4404]
    call = await Call.objects.aget(pk=owner.welcome["call_id"])
    assert call.room_id is None and not call.is_live
    assert [p.leave_reason async for p in call.participants.all()] == ["room-closed", "room-closed"]


async def test_locking_a_room_in_the_admin_closes_everyone_but_its_moderators_with_4403(
        fresh_server, public_room, alice, bob, admin_browser):
    server = fresh_server
    owner = await ticket_socket(server, alice, public_room)
    member = await ticket_socket(server, bob, public_room)
    operator = await admin_browser(server)
    response = await in_thread(operator.submit, f"/admin/calls/room/{public_room.pk}/change/", {"locked": "on"},
                               form_id="room_form")
    assert response.status_code == 302, re.sub(r"\s+", " ", response.text)[:3000]
    assert await member.closed() == 4403
    left = await owner.frame(lambda f: f["type"] == "peer-left")
    assert (left["peer_id"], left["reason"]) == (member.peer_id, "room-locked")
    assert owner.close_code is None
    await owner.close()


async def test_removing_a_member_in_the_admin_inline_closes_them_with_4404(
        fresh_server, private_room, alice, bob, admin_browser):
    server = fresh_server
    owner = await ticket_socket(server, alice, private_room)
    member = await ticket_socket(server, bob, private_room)
    operator = await admin_browser(server)
    path = f"/admin/calls/room/{private_room.pk}/change/"
    page = await in_thread(operator.get, path)
    fields = form_fields(page.text, "room_form")
    bob_row = next(k.removesuffix("-user") for k, v in fields.items()
                   if k.startswith("memberships-") and k.endswith("-user") and v == str(bob.pk))
    response = await in_thread(operator.submit, path, {f"{bob_row}-DELETE": "on"}, form_id="room_form")
    assert response.status_code == 302, re.sub(r"\s+", " ", response.text)[:3000]
    assert await member.closed() == 4404
    assert await sync_to_async(private_room.role_of)(bob) is None
    await owner.close()


def test_services_record_no_access_for_each_refused_participant(private_room, alice, bob):
    """The rule behind the live tests, on the database alone: whoever could not join now is ended."""
    call = Call.objects.create(room=private_room, room_name=private_room.name)
    stays = CallParticipant.objects.create(call=call, user=alice)
    goes = CallParticipant.objects.create(call=call, user=bob)
    services.remove_member(by=alice, membership=private_room.memberships.get(user=bob))
    stays.refresh_from_db()
    goes.refresh_from_db()
    assert (stays.is_live, goes.leave_reason) == (True, "no-access")
