"""The audit trail (issue 14): every listed event, written through the real pages, API, services and sockets as a
user would cause it, with actor, target, address and detail; the admin's read-only list with its filters, search
and CSV export; GET /api/rooms/<slug>/audit/ and who may read it; retention."""

import asyncio
import csv
import io
import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework import status
from rest_framework.test import APIClient

from accounts import audit
from accounts.admin import csv_cell
from accounts.models import AuditEvent
from calls import retention, tickets
from calls.models import CallParticipant, Invite, Room
from calls.protocol import CloseCode
from config.asgi import application
from people import services as people
from tests.helpers import a_past_call, an_invite, api_as, eventually, in_call
from tests.signaling import ORIGIN, TIMEOUT, Peer, ticket_path

ADDRESS = "198.51.100.23"  # where "the user" is: TEST-NET-2


def api_from(user=None, address: str = ADDRESS) -> APIClient:
    """An API client as the user, from `address`."""
    client = api_as(user)
    client.defaults["REMOTE_ADDR"] = address
    return client


def only(action: str, **filters) -> AuditEvent:
    """The one event of `action` (matching `filters`)."""
    events = list(AuditEvent.objects.filter(action=action, **filters))
    assert len(events) == 1, [(e.action, e.target, e.detail) for e in AuditEvent.objects.all()]
    return events[0]


# --- Log-ins, tokens, passwords -------------------------------------------------------------------


def test_a_log_in_on_the_site_is_audited_with_its_address(client, alice, password):
    answer = client.post("/accounts/login/", {"username": "alice", "password": password}, REMOTE_ADDR=ADDRESS)
    assert answer.status_code == 302
    event = only("login.succeeded")
    assert (event.actor, event.target, event.address, event.detail) == (alice, f"user:{alice.pk}", ADDRESS,
                                                                        {"via": "site"})


def test_a_failed_log_in_is_audited_with_the_username_tried_but_never_the_password(client, alice):
    client.post("/accounts/login/", {"username": "alice", "password": "hunter2-wrong"}, REMOTE_ADDR=ADDRESS)
    api_from().post("/api/auth/token/", {"username": "nobody", "password": "x"}, format="json")
    site, token = AuditEvent.objects.filter(action="login.failed").order_by("id")
    assert (site.actor, site.target, site.address) == (None, f"user:{alice.pk}", ADDRESS)
    assert site.detail == {"username": "alice", "via": "site", "locked_out": False}
    assert (token.target, token.detail["username"], token.detail["via"]) == ("", "nobody", "api")
    assert "hunter2" not in json.dumps([e.detail for e in AuditEvent.objects.all()])


def test_a_lockout_is_audited_when_it_starts_and_at_each_attempt_while_it_holds(client, alice, password):
    answers = [client.post("/accounts/login/", {"username": "alice", "password": "wrong"},
                           REMOTE_ADDR=ADDRESS).status_code for _ in range(5)]
    assert answers == [200] * 4 + [429]
    assert client.post("/accounts/login/", {"username": "alice", "password": password},
                       REMOTE_ADDR=ADDRESS).status_code == 429
    locks = list(AuditEvent.objects.filter(action="login.locked-out").order_by("id"))
    assert len(locks) == 2  # the fifth failure locked; the right password while locked is refused
    assert {(e.target, e.address, e.detail["username"]) for e in locks} == {(f"user:{alice.pk}", ADDRESS, "alice")}
    assert not AuditEvent.objects.filter(action="login.succeeded").exists()


def test_an_api_token_is_audited_when_it_is_made_not_when_it_is_handed_out_again(alice, password):
    api = api_from()
    for _ in range(2):
        assert api.post("/api/auth/token/", {"username": "alice", "password": password},
                        format="json").status_code == 200
    event = only("token.created")
    assert (event.actor, event.target, event.address) == (alice, f"user:{alice.pk}", ADDRESS)
    assert AuditEvent.objects.filter(action="login.succeeded", detail__via="api").count() == 2


def test_revoking_the_token_is_audited(alice, password):
    key = api_from().post("/api/auth/token/", {"username": "alice", "password": password}, format="json").json()
    api = api_from()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key['token']}")
    assert api.delete("/api/auth/token/").status_code == status.HTTP_204_NO_CONTENT
    event = only("token.revoked")
    assert (event.actor, event.address, event.detail) == (alice, ADDRESS, {"reason": "by-user"})


def test_a_password_change_is_audited_and_the_token_it_revokes_too(client, alice, password):
    api_from().post("/api/auth/token/", {"username": "alice", "password": password}, format="json")
    client.force_login(alice)
    answer = client.post("/accounts/password_change/", {"old_password": password, "new_password1": "N3w-pass-phrase!",
                                                        "new_password2": "N3w-pass-phrase!"}, REMOTE_ADDR=ADDRESS)
    assert answer.status_code == 302, answer.content
    event = only("password.changed")
    assert (event.actor, event.target, event.address, event.detail) == (alice, f"user:{alice.pk}", ADDRESS,
                                                                        {"via": "site"})
    assert only("token.revoked").detail == {"reason": "password-changed"}


def test_a_password_set_in_the_admin_is_audited_with_the_operators_address(client, admin_user, alice):
    client.force_login(admin_user)
    answer = client.post(reverse("admin:auth_user_password_change", args=[alice.pk]),
                         {"password1": "Adm1n-set-phrase!", "password2": "Adm1n-set-phrase!",
                          "usable_password": "true"}, REMOTE_ADDR=ADDRESS)
    assert answer.status_code == 302, answer.content
    event = only("password.changed")
    assert (event.actor, event.address, event.detail) == (alice, ADDRESS, {"via": "admin"})


# --- Tickets, rooms, members, invites, kicks ----------------------------------------------------------


def test_a_signaling_ticket_is_audited_without_the_ticket(bob, room):
    answer = api_from(bob).post(f"/api/rooms/{room.slug}/ticket/")
    assert answer.status_code == status.HTTP_200_OK
    event = only("ticket.issued")
    assert (event.actor, event.target, event.address) == (bob, f"room:{room.slug}", ADDRESS)
    assert event.detail == {"socket": "room", "expires_in": 60}
    assert answer.json()["ticket"] not in json.dumps(event.detail)
    api_from(bob).post("/api/me/ticket/")
    assert only("ticket.issued", detail__socket="me").target == f"user:{bob.pk}"


def test_creating_a_room_is_audited(alice):
    answer = api_from(alice).post("/api/rooms/", {"name": "Design review", "visibility": "public"}, format="json")
    assert answer.status_code == status.HTTP_201_CREATED
    event = only("room.created")
    assert (event.actor, event.target, event.address) == (alice, "room:design-review", ADDRESS)
    assert event.detail | {"max_participants": None} == {"name": "Design review", "visibility": "public",
                                                          "kind": "room", "locked": False,
                                                          "max_participants": None}


def test_creating_a_room_on_the_home_page_is_audited_with_its_address(client, alice):
    client.force_login(alice)
    assert client.post("/", {"name": "Stand-up", "visibility": "private", "max_participants": 4},
                       REMOTE_ADDR=ADDRESS).status_code == 302
    assert only("room.created").address == ADDRESS


def test_changing_a_rooms_settings_is_audited_with_what_changed(alice, carol, room):
    answer = api_from(carol).patch(f"/api/rooms/{room.slug}/", {"name": "Boardroom", "max_participants": 4},
                                   format="json")
    assert answer.status_code == status.HTTP_200_OK
    event = only("room.changed")
    assert (event.actor, event.target, event.address) == (carol, f"room:{room.slug}", ADDRESS)
    assert event.detail == {"changes": {"name": ["Board room", "Boardroom"], "max_participants": [8, 4]}}


def test_locking_and_unlocking_a_room_are_audited(alice, bob, room):
    in_call(room, bob)
    api = api_from(alice)
    assert api.patch(f"/api/rooms/{room.slug}/", {"locked": True}, format="json").status_code == 200
    assert api.patch(f"/api/rooms/{room.slug}/", {"locked": True}, format="json").status_code == 200  # no change
    assert api.patch(f"/api/rooms/{room.slug}/", {"locked": False}, format="json").status_code == 200
    locked, unlocked = only("room.locked"), only("room.unlocked")
    assert (locked.actor, locked.target, locked.address, locked.detail) == (alice, f"room:{room.slug}", ADDRESS,
                                                                           {"closed": 1})
    assert (unlocked.actor, unlocked.address) == (alice, ADDRESS)
    assert not AuditEvent.objects.filter(action="room.changed").exists()


def test_deleting_a_room_is_audited(alice, bob, room):
    in_call(room, bob)
    assert api_from(alice).delete(f"/api/rooms/{room.slug}/").status_code == status.HTTP_204_NO_CONTENT
    event = only("room.deleted")
    assert (event.actor, event.target, event.address, event.detail) == (alice, f"room:{room.slug}", ADDRESS,
                                                                        {"name": "Board room", "closed": 1})


def test_adding_a_member_is_audited(carol, mallory, room):
    answer = api_from(carol).post(f"/api/rooms/{room.slug}/members/", {"username": "mallory"}, format="json")
    assert answer.status_code == status.HTTP_201_CREATED
    event = only("member.added", detail__user="mallory")
    assert (event.actor, event.target, event.address, event.detail) == (carol, f"room:{room.slug}", ADDRESS,
                                                                        {"user": "mallory", "role": "member"})


def test_changing_a_role_is_audited(alice, bob, room):
    answer = api_from(alice).patch(f"/api/rooms/{room.slug}/members/bob/", {"role": "moderator"}, format="json")
    assert answer.status_code == status.HTTP_200_OK
    event = only("member.role-changed")
    assert (event.actor, event.address, event.detail) == (alice, ADDRESS,
                                                          {"user": "bob", "was": "member", "role": "moderator"})


def test_removing_a_member_and_leaving_are_audited(alice, bob, carol, room):
    assert api_from(alice).delete(f"/api/rooms/{room.slug}/members/bob/").status_code == 204
    assert api_from(carol).delete(f"/api/rooms/{room.slug}/members/carol/").status_code == 204
    removed, left = AuditEvent.objects.filter(action="member.removed").order_by("id")
    assert (removed.actor, removed.address, removed.detail) == (alice, ADDRESS,
                                                                {"user": "bob", "role": "member", "left": False})
    assert (left.actor, left.detail) == (carol, {"user": "carol", "role": "moderator", "left": True})


def test_creating_an_invite_is_audited(carol, room):
    answer = api_from(carol).post(f"/api/rooms/{room.slug}/invites/", {"max_uses": 5}, format="json")
    assert answer.status_code == status.HTTP_201_CREATED
    event = only("invite.created")
    assert (event.actor, event.target, event.address) == (carol, f"room:{room.slug}", ADDRESS)
    assert (event.detail["invite"], event.detail["max_uses"]) == (answer.json()["id"], 5)
    assert answer.json()["token"] not in json.dumps(event.detail)


def test_using_an_invite_on_its_page_is_audited(client, mallory, room):
    invite = an_invite(room, max_uses=3)
    client.force_login(mallory)
    assert client.post(f"/invite/{invite.token}/", REMOTE_ADDR=ADDRESS).status_code == 302
    client.post(f"/invite/{invite.token}/", REMOTE_ADDR=ADDRESS)  # a member already: nothing used, nothing audited
    event = only("invite.used")
    assert (event.actor, event.target, event.address) == (mallory, f"room:{room.slug}", ADDRESS)
    assert event.detail == {"invite": invite.pk, "uses": 1, "max_uses": 3}


def test_revoking_an_invite_is_audited_once(alice, room):
    invite = an_invite(room)
    api = api_from(alice)
    assert api.delete(f"/api/rooms/{room.slug}/invites/{invite.pk}/").status_code == 204
    assert api.delete(f"/api/rooms/{room.slug}/invites/{invite.pk}/").status_code == 204  # revoked already
    event = only("invite.revoked")
    assert (event.actor, event.address, event.detail) == (alice, ADDRESS, {"invite": invite.pk, "uses": 0})
    assert Invite.objects.get(pk=invite.pk).revoked_at is not None


def test_a_kick_is_audited(carol, bob, room, settings):
    participant = in_call(room, bob)
    answer = api_from(carol).post(f"/api/rooms/{room.slug}/participants/{participant.peer_id}/kick/")
    assert answer.status_code == status.HTTP_204_NO_CONTENT
    event = only("participant.kicked")
    assert (event.actor, event.target, event.address) == (carol, f"room:{room.slug}", ADDRESS)
    assert event.detail == {"call": participant.call_id, "peer_id": str(participant.peer_id), "user": "bob",
                            "ban_seconds": settings.PARLEY_KICK_BAN_SECONDS}


# --- Rings -------------------------------------------------------------------------------------------


def test_a_ring_is_audited_when_it_starts_and_when_it_is_answered(alice, bob, room):
    started = api_from(alice).post("/api/rings/", {"callee": "bob"}, format="json").json()
    assert api_from(bob, "203.0.113.5").post(f"/api/rings/{started['id']}/accept/").status_code == 200
    ring, ended = only("ring.started"), only("ring.ended")
    assert (ring.actor, ring.target, ring.address) == (alice, f"room:{started['room']['slug']}", ADDRESS)
    assert ring.detail == {"ring": started["id"], "callee": "bob", "direct": True}
    assert (ended.actor, ended.address, ended.detail["outcome"]) == (bob, "203.0.113.5", "answered")


@pytest.mark.parametrize(("who", "verb", "outcome"), [("bob", "decline", "declined"), ("alice", "cancel", "cancelled")])
def test_a_ring_declined_or_cancelled_is_audited_with_its_outcome(alice, bob, room, who, verb, outcome):
    ring = api_from(alice).post("/api/rings/", {"callee": "bob"}, format="json").json()
    person = {"alice": alice, "bob": bob}[who]
    assert api_from(person).post(f"/api/rings/{ring['id']}/{verb}/", {}, format="json").status_code == 200
    event = only("ring.ended")
    assert (event.actor, event.detail["outcome"], event.detail["ring"]) == (person, outcome, ring["id"])


def test_a_ring_nobody_answers_is_audited_as_missed_by_nobody(alice, bob, room):
    ring = api_from(alice).post("/api/rings/", {"callee": "bob"}, format="json").json()
    assert people.expire_rings(now=timezone.now() + timedelta(minutes=5)) == 1
    event = only("ring.ended")
    assert (event.actor, event.address, event.detail["outcome"], event.detail["ring"]) == (None, None, "missed",
                                                                                          ring["id"])


# --- The signaling socket: refusals and closes -------------------------------------------------------


async def open_from(peers, path: str, *, address: str = ADDRESS, headers=None) -> Peer:
    """A socket to `path` from `address` (the scope's client, as daphne sets it), closed at teardown."""
    communicator = WebsocketCommunicator(application, path, headers=headers if headers is not None else [ORIGIN])
    communicator.scope["client"] = [address, 50123]
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    peer = Peer(communicator)
    peers.opened.append(peer)
    return peer


async def events_of(action: str) -> list[AuditEvent]:
    return [e async for e in AuditEvent.objects.filter(action=action).select_related("actor").order_by("id")]


@pytest.mark.django_db(transaction=True)
async def test_a_join_refused_by_the_rooms_rules_is_audited_with_code_reason_origin_and_address(peers, mallory,
                                                                                               bob, room):
    outsider = await open_from(peers, await ticket_path(mallory, room))
    assert await outsider.closed_with() == CloseCode.NOT_FOUND
    await Room.objects.filter(pk=room.pk).aupdate(locked=True)  # a plain member (bob) may not join a locked room
    member = await open_from(peers, await ticket_path(bob, room))
    assert await member.closed_with() == CloseCode.FORBIDDEN
    refused = await events_of("join.refused")
    assert [(e.actor, e.target, e.address, e.detail) for e in refused] == [
        (mallory, f"room:{room.slug}", ADDRESS, {"code": 4404, "reason": "No such room.",
                                                 "origin": "http://127.0.0.1"}),
        (bob, f"room:{room.slug}", ADDRESS, {"code": 4403, "reason": "The room is locked.",
                                             "origin": "http://127.0.0.1"}),
    ]


@pytest.mark.django_db(transaction=True)
async def test_a_join_without_credentials_or_from_a_foreign_origin_is_audited(peers, public_room):
    anonymous = await open_from(peers, f"/ws/rooms/{public_room.slug}/?ticket=forged")
    assert await anonymous.closed_with() == CloseCode.NOT_AUTHENTICATED
    foreign = await open_from(peers, f"/ws/rooms/{public_room.slug}/", address="2001:db8::7",
                              headers=[(b"origin", b"https://evil.example")])
    assert await foreign.closed_with() == CloseCode.FORBIDDEN
    refused = await events_of("join.refused")
    assert [(e.actor, e.address, e.detail["code"], e.detail["origin"]) for e in refused] == [
        (None, ADDRESS, 4401, "http://127.0.0.1"), (None, "2001:db8::7", 4403, "https://evil.example")]
    assert refused[1].detail["reason"] == "origin not allowed"


@pytest.mark.django_db(transaction=True)
async def test_a_flood_closed_with_4429_is_audited_once(peers, public_room, alice, settings):
    settings.PARLEY_SIGNALING = {**settings.PARLEY_SIGNALING, "RATE_PER_SECOND": 1, "RATE_BURST": 3,
                                 "FLOOD_GRACE_SECONDS": 0.3}
    peer = await open_from(peers, await ticket_path(alice, public_room))
    peer.welcome = await peer.receive_type("welcome")
    before = await AuditEvent.objects.acount()
    for _ in range(3):  # accepted frames write nothing
        await peer.send({"type": "ping"})
        assert await peer.receive() == {"type": "pong"}
    assert await AuditEvent.objects.acount() == before
    await peer.send({"type": "ping"})
    assert (await peer.receive_type("error"))["code"] == "rate-limited"  # nor does a rate-limited one
    assert await AuditEvent.objects.acount() == before
    await asyncio.sleep(0.4)
    for _ in range(3):
        await peer.send({"type": "ping"})
    assert await peer.closed_with() == CloseCode.FLOODING
    [event] = await events_of("socket.rate-limited")
    assert (event.actor, event.target, event.address) == (alice, f"room:{public_room.slug}", ADDRESS)
    assert event.detail == {"code": 4429, "reason": "flooding", "origin": "http://127.0.0.1",
                            "peer_id": peer.peer_id, "call": peer.welcome["call_id"]}
    assert await AuditEvent.objects.acount() == before + 1


@pytest.mark.django_db(transaction=True)
async def test_a_client_closed_for_not_reading_is_audited(peers, public_room, alice, bob, settings):
    settings.PARLEY_SIGNALING = {**settings.PARLEY_SIGNALING, "SLOW_SECONDS": 0.5, "HEARTBEAT_SECONDS": 0.2}
    reader, sender = await peers.together(public_room, alice, bob)
    await reader.send({"type": "ping", "last_seq": 0})
    assert await reader.receive() == {"type": "pong"}
    await sender.send({"type": "offer", "to": reader.peer_id, "sdp": "v=0"})
    assert (await reader.receive())["type"] == "offer"
    assert await reader.closed_with(timeout=3) == CloseCode.TOO_SLOW
    [event] = await eventually(lambda: events_of("socket.too-slow"))
    assert (event.actor, event.detail["code"], event.detail["peer_id"]) == (alice, 4413, reader.peer_id)


@pytest.mark.django_db(transaction=True)
async def test_a_socket_that_breaks_the_websocket_protocol_is_audited(peers, public_room, alice):
    peer = await peers(alice, public_room)
    await peer.ws.disconnect(code=1009)  # what daphne tells the consumer of a message over PARLEY_WS_MAX_BYTES
    [event] = await eventually(lambda: events_of("socket.protocol-broken"))
    assert (event.actor, event.detail["code"], event.detail["peer_id"]) == (alice, 1009, peer.peer_id)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_a_real_server_audits_a_refused_join_with_the_clients_address(live_server_process, mallory, room):
    import websockets

    codes = []
    for origin in ("https://evil.example", None):  # a foreign page's socket; a program's, with mallory's ticket
        ticket = await sync_to_async(tickets.issue_ticket)(user=mallory, room=room)
        async with websockets.connect(f"{live_server_process.ws_url}/ws/rooms/{room.slug}/?ticket={ticket}",
                                      origin=origin) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        codes.append(closed.value.rcvd.code)
    assert codes == [4403, 4404]
    foreign, outsider = await eventually(lambda: events_of("join.refused"))
    assert (foreign.actor, foreign.address, foreign.detail["origin"], foreign.detail["code"]) == (
        None, "127.0.0.1", "https://evil.example", 4403)
    assert (outsider.actor, outsider.address, outsider.detail["code"]) == (mallory, "127.0.0.1", 4404)


# --- The one door never breaks the action -----------------------------------------------------------


def test_an_audit_row_that_cannot_be_written_is_logged_and_the_transaction_goes_on(alice, room, caplog):
    with transaction.atomic():
        assert audit.record("room.changed", actor=alice, target="room:x", unserialisable=object()) is None
        assert AuditEvent.objects.filter(target=f"room:{room.slug}").exists()  # the transaction is not aborted
    assert "audit: could not record room.changed" in caplog.text


def test_every_action_recorded_anywhere_is_in_the_one_list(alice, room):
    assert set(AuditEvent.objects.values_list("action", flat=True)) <= set(audit.Action.values)
    assert len(audit.Action.values) == len(set(audit.Action.values))


# --- The admin ------------------------------------------------------------------------------------------


@pytest.fixture
def operator(client, admin_user):
    client.force_login(admin_user)
    return client


LIST = "admin:accounts_auditevent_changelist"


def test_the_admin_shows_audit_events_read_only_even_to_superusers(operator, alice):
    event = audit.record("account.exported", actor=alice, target=f"user:{alice.pk}", address=ADDRESS)
    assert operator.get(reverse(LIST)).status_code == 200
    page = operator.get(reverse("admin:accounts_auditevent_change", args=[event.pk]))
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert operator.post(reverse("admin:accounts_auditevent_change", args=[event.pk]),
                         {"action": "room.deleted"}).status_code == 403
    assert operator.get(reverse("admin:accounts_auditevent_add")).status_code == 403
    delete = reverse("admin:accounts_auditevent_delete", args=[event.pk])
    assert operator.post(delete, {"post": "yes"}).status_code == 403
    bulk = operator.post(reverse(LIST), {"action": "delete_selected", "_selected_action": [event.pk]})
    assert bulk.status_code in (200, 302)
    assert AuditEvent.objects.get(pk=event.pk).action == "account.exported"


def test_the_admin_filters_by_action_and_date_and_searches_username_target_and_address(operator, alice, bob):
    AuditEvent.objects.all().delete()  # the operator's own log-in
    old = audit.record("login.failed", actor=None, target=f"user:{bob.pk}", address="192.0.2.1")
    AuditEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    audit.record("login.succeeded", actor=alice, target=f"user:{alice.pk}", address=ADDRESS)
    audit.record("room.created", actor=bob, target="room:bobs-den", address="203.0.113.9")

    def shown(**query):
        answer = operator.get(reverse(LIST), query)
        assert answer.status_code == 200
        return sorted(e.action for e in answer.context["cl"].result_list)

    assert shown(action="login.failed") == ["login.failed"]
    assert shown(**{"created_at__gte": (timezone.now() - timedelta(days=7)).isoformat()}) == [
        "login.succeeded", "room.created"]
    assert shown(q="alice") == ["login.succeeded"]
    assert shown(q="bobs-den") == ["room.created"]
    assert shown(q="192.0.2.1") == ["login.failed"]
    choices = operator.get(reverse(LIST)).content.decode()
    assert "?action=participant.kicked" in choices and "?action=join.refused" in choices  # the whole list


def test_the_csv_export_neutralises_cells_that_would_be_formulas(operator, alice):
    audit.record("login.failed", actor=None, target="=HYPERLINK(\"http://evil\")", address=ADDRESS,
                 username="@SUM(A1)")
    audit.record("room.changed", actor=alice, target="room:ok", changes={"name": ["a", "+b"]})
    events = list(AuditEvent.objects.values_list("pk", flat=True))
    answer = operator.post(reverse(LIST), {"action": "export_csv", "_selected_action": events})
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.content.decode())))
    assert rows[0] == ["created_at", "action", "actor", "target", "address", "detail"]
    by_action = {row[1]: row for row in rows[1:]}
    assert by_action["login.failed"][3] == "'=HYPERLINK(\"http://evil\")"
    assert by_action["login.failed"][4] == ADDRESS
    assert json.loads(by_action["room.changed"][5]) == {"changes": {"name": ["a", "+b"]}}  # starts with {: as is
    assert by_action["room.changed"][2] == "alice"
    assert [csv_cell(v) for v in ("=1", "+1", "-1", "@x", "\tx", "\rx", "ok", None)] == [
        "'=1", "'+1", "'-1", "'@x", "'\tx", "'\rx", "ok", ""]


# --- GET /api/rooms/<slug>/audit/ ------------------------------------------------------------------------


def test_the_owner_reads_the_rooms_audit_trail_newest_first_without_addresses(alice, carol, room, public_room):
    api_from(carol).patch(f"/api/rooms/{room.slug}/", {"name": "Boardroom"}, format="json")
    api_from(alice).patch(f"/api/rooms/{room.slug}/", {"locked": True}, format="json")
    api_from(alice).patch(f"/api/rooms/{public_room.slug}/", {"name": "Agora"}, format="json")  # another room
    answer = api_as(alice).get(f"/api/rooms/{room.slug}/audit/")
    assert answer.status_code == status.HTTP_200_OK
    page = answer.json()
    actions = [e["action"] for e in page["results"]]
    assert actions == ["room.locked", "room.changed", "member.added", "member.added", "room.created"]
    assert page["count"] == 5 and {"next", "previous"} <= set(page)
    changed = page["results"][1]
    assert changed["actor"] == {"id": carol.pk, "username": "carol", "display_name": ""}
    assert changed["target"] == f"room:{room.slug}" and "address" not in changed
    assert ADDRESS not in answer.content.decode()
    assert len(api_as(alice).get(f"/api/rooms/{room.slug}/audit/?page_size=2").json()["results"]) == 2


def test_a_former_room_of_the_same_slug_leaves_nothing_in_the_new_ones_trail(alice, mallory):
    api_from(alice).post("/api/rooms/", {"name": "Reused", "slug": "reused"}, format="json")
    api_from(alice).delete("/api/rooms/reused/")
    assert api_from(mallory).post("/api/rooms/", {"name": "Reused", "slug": "reused"}, format="json").status_code == 201
    trail = api_as(mallory).get("/api/rooms/reused/audit/").json()["results"]
    assert [(e["action"], e["actor"]["username"]) for e in trail] == [("room.created", "mallory")]


@pytest.mark.parametrize(("who", "room_name", "expected"), [
    ("alice", "room", 200), ("carol", "room", 403), ("bob", "room", 403), ("mallory", "room", 404),
    ("mallory", "public_room", 403), ("admin_user", "room", 404), (None, "room", 401),
])
def test_only_the_owner_reads_the_audit_trail(request, who, room_name, expected):
    room = request.getfixturevalue(room_name)
    user = request.getfixturevalue(who) if who else None
    answer = api_as(user).get(f"/api/rooms/{room.slug}/audit/")
    assert answer.status_code == expected, answer.content
    assert api_as(user).get("/api/rooms/no-such-room/audit/").status_code == (401 if user is None else 404)


def test_the_audit_endpoint_is_in_the_openapi_schema(api):
    schema = api.get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    operation = json.loads(schema.content)["paths"]["/api/rooms/{slug}/audit/"]["get"]
    assert {"200", "401", "403", "404"} <= set(operation["responses"])
    assert "owner" in operation["summary"]


# --- Retention ----------------------------------------------------------------------------------------------


def test_audit_events_go_with_the_call_log_after_its_retention_and_not_before(settings, alice, room):
    settings.PARLEY_CALL_RETENTION_DAYS = 30
    old = audit.record("login.succeeded", actor=alice, target=f"user:{alice.pk}")
    AuditEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))
    a_past_call(room, [alice], minutes_ago=31 * 24 * 60)
    counts = retention.purge_older_than(retention.cutoff_for())
    assert counts["audit events"] == 1 and counts["calls"] == 1
    assert not AuditEvent.objects.filter(pk=old.pk).exists()
    assert AuditEvent.objects.filter(action="room.created", target=f"room:{room.slug}").exists()
    assert CallParticipant.objects.count() == 0


def test_a_room_created_in_the_admin_is_audited_with_the_operators_address(client, admin_user, alice):
    client.force_login(admin_user)
    response = client.post("/admin/calls/room/add/", {
        "name": "Ops room", "slug": "ops-room", "owner": alice.pk, "visibility": "private", "kind": "group",
        "media": "auto", "max_participants": 4, "memberships-TOTAL_FORMS": 0, "memberships-INITIAL_FORMS": 0,
    }, REMOTE_ADDR=ADDRESS)
    assert response.status_code == 302, response.content.decode()[:2000]
    event = only("room.created")
    assert (event.actor, event.target, event.address) == (admin_user, "room:ops-room", ADDRESS)
    assert event.detail["via"] == "admin" and event.detail["owner"] == "alice"
