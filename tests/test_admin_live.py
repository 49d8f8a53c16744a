"""The admin's "Live now" page (calls/live_view.py, calls/admin_views.py): every live call with its participants,
the JSON view the page polls, and kick and end-call confirmations that go through calls/services.py with the
API's rules: against participations of the service layer, and against real signaling sockets."""

import uuid

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent
from calls import services
from calls.models import Call, CallParticipant, CallQuality, RelayNode
from sfu.models import JanusRoom
from tests.helpers import a_past_call, in_call

pytestmark = pytest.mark.django_db

LIVE = reverse("admin:calls_call_live")
DATA = reverse("admin:calls_call_live_data")


def kick_url(participant) -> str:
    return reverse("admin:calls_call_live_kick", kwargs={"peer_id": participant.peer_id})


def end_url(call) -> str:
    return reverse("admin:calls_call_live_end", kwargs={"call_id": call.pk})


@pytest.fixture
def operator(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def live_call(room, public_room, alice, bob, carol):
    """Alice and bob in the board room's live call: bob over TURN with poor quality, alice reconnecting (her
    socket was lost); an ended call of the town hall besides."""
    a_past_call(public_room, [alice, carol])
    a, b = in_call(room, alice), in_call(room, bob)
    CallQuality.objects.create(participant=b, remote_peer_id=a.peer_id, samples=2, candidate_type="relay",
                               protocol="udp", mos_samples=2, mos_sum=6.0, mos_min=2.9, poor=True, connect_ms=800)
    CallParticipant.objects.filter(pk=a.pk).update(suspended_at=timezone.now(), suspend_reason="timed-out")
    return {"call": a.call, "alice": a, "bob": b}


# --- What the page shows ------------------------------------------------------------------------


def test_the_page_shows_each_live_call_with_its_participants(operator, live_call):
    response = operator.get(LIVE)
    assert response.status_code == 200
    body = response.content.decode()
    assert body.count('class="module live-call"') == 1  # not the ended call
    assert "Board room" in body and "Town hall" not in body
    assert "Alice A." in body and "(alice)" in body and "bob" in body
    assert "reconnecting since" in body and ">connected<" in body
    assert "relay/udp" in body and "TURN" in body
    assert "poor (MOS 3.00): MOS 3.00" in body
    assert "test-node" in body and "(no heartbeat)" in body
    assert kick_url(live_call["bob"]) in body and end_url(live_call["call"]) in body
    assert 'src="/static/js/admin-live.js"' in body and f'data-url="{DATA}"' in body


def test_the_json_view_has_the_same_snapshot(operator, live_call):
    RelayNode.objects.create(channel="test-node")  # beating now: the server process is alive
    response = operator.get(DATA)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    snapshot = response.json()
    assert snapshot["participant_count"] == 2
    [call] = snapshot["calls"]
    assert (call["id"], call["room"], call["room_slug"]) == (live_call["call"].pk, "Board room", "board-room")
    assert call["end_url"] == end_url(live_call["call"]) and call["reconnecting"] == 1
    assert call["media"] == "mesh"
    alice, bob = call["participants"]
    assert (alice["name"], alice["username"], alice["state"]) == ("Alice A.", "alice", "reconnecting")
    assert alice["quality"] == {"verdict": "no reports", "poor": False, "mos": None, "reasons": [],
                                "text": "no reports"}
    assert (bob["name"], bob["state"], bob["connection"], bob["relay"]) == ("bob", "connected", "relay/udp", True)
    assert bob["quality"]["verdict"] == "poor" and bob["quality"]["mos"] == 3.0
    assert (bob["server"], bob["server_alive"]) == ("test-node", True)
    assert bob["peer_id"] == str(live_call["bob"].peer_id) and bob["kick_url"] == kick_url(live_call["bob"])


def test_a_call_with_a_janus_room_shows_as_sfu(operator, live_call):
    JanusRoom.objects.create(call=live_call["call"], room=1234, secret="s" * 20, pin="p" * 20)
    [call] = operator.get(DATA).json()["calls"]
    assert call["media"] == "sfu"
    body = operator.get(LIVE).content.decode()
    assert 'data-media="sfu">SFU<' in body and "s" * 20 not in body and "p" * 20 not in body


def test_the_json_view_lists_nothing_when_no_call_is_live(operator, public_room, alice):
    a_past_call(public_room, [alice])
    assert operator.get(DATA).json()["calls"] == []
    assert "No calls in progress." in operator.get(LIVE).content.decode()


def test_the_snapshot_takes_the_same_queries_however_many_calls(operator, django_user_model, alice):
    def count():
        with CaptureQueriesContext(connection) as queries:
            assert operator.get(DATA).status_code == 200
        return len(queries)

    in_call(services.create_room(owner=alice, name="Room 0", visibility="public"), alice)
    few = count()
    for n in range(1, 6):
        room = services.create_room(owner=alice, name=f"Room {n}", visibility="public")
        for person in range(3):
            in_call(room, django_user_model.objects.create_user(f"person-{n}-{person}"))
    assert count() == few


def test_the_index_and_the_call_list_link_to_both_pages(operator):
    for url in (reverse("admin:index"), reverse("admin:app_list", args=["calls"]),
                reverse("admin:calls_call_changelist")):
        body = operator.get(url).content.decode()
        assert f'href="{LIVE}"' in body and f'href="{reverse("admin:calls_call_dashboard")}"' in body, url


# --- Kicking and ending, confirmed ------------------------------------------------------------------


def test_removing_someone_asks_first_then_kicks_them_as_the_api_does(operator, live_call):
    bob = live_call["bob"]
    confirm = operator.get(kick_url(bob))
    assert confirm.status_code == 200
    assert "Remove <strong>bob</strong>" in confirm.content.decode() and 'method="post"' in confirm.content.decode()
    assert CallParticipant.objects.get(pk=bob.pk).is_live  # asking changes nothing
    response = operator.post(kick_url(bob), follow=True)
    assert response.redirect_chain == [(LIVE, 302)]
    bob.refresh_from_db()
    assert bob.leave_reason == "kicked" and bob.left_at is not None
    assert "Bob was removed from the call in Board room." in response.content.decode()  # capitalised by the admin
    assert Call.objects.get(pk=live_call["call"].pk).is_live  # alice is still in it


def test_ending_a_call_removes_everyone_and_ends_it(operator, live_call):
    call = live_call["call"]
    confirm = operator.get(end_url(call)).content.decode()
    assert "End the call in <strong>Board room</strong>" in confirm and "<li>Alice A.</li>" in confirm
    response = operator.post(end_url(call), follow=True)
    assert "The call in Board room was ended (2 removed)." in response.content.decode()
    call.refresh_from_db()
    assert call.ended_at is not None
    assert sorted(call.participants.values_list("leave_reason", flat=True)) == ["kicked", "kicked"]
    assert "No calls in progress." in response.content.decode()
    ended = AuditEvent.objects.get(action="call.ended")
    assert (ended.target, ended.address, ended.detail) == ("room:board-room", "127.0.0.1",
                                                            {"call": call.pk, "closed": 2})


def test_a_post_without_the_csrf_token_is_refused(admin_user, live_call):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(kick_url(live_call["bob"])).status_code == 403
    assert client.post(end_url(live_call["call"])).status_code == 403
    assert CallParticipant.objects.live().count() == 2
    page = client.get(kick_url(live_call["bob"]))
    token = page.context["csrf_token"]
    assert client.post(kick_url(live_call["bob"]), {"csrfmiddlewaretoken": str(token)}).status_code == 302
    assert CallParticipant.objects.live().count() == 1


def test_a_participant_who_left_meanwhile_is_not_kicked(operator, live_call):
    bob = live_call["bob"]
    services.leave_call(peer_id=bob.peer_id, reason=services.Reason.LEFT)
    response = operator.post(kick_url(bob), follow=True)
    assert "Bob had left the call already." in response.content.decode()
    assert CallParticipant.objects.get(pk=bob.pk).leave_reason == "left"


def test_an_ended_call_is_not_ended_again(operator, public_room, alice):
    call = a_past_call(public_room, [alice])
    response = operator.post(end_url(call), follow=True)
    assert "The call in Town hall had ended already." in response.content.decode()


def test_unknown_participants_and_calls_are_404(operator):
    assert operator.get(reverse("admin:calls_call_live_kick", kwargs={"peer_id": uuid.uuid4()})).status_code == 404
    assert operator.get(reverse("admin:calls_call_live_end", kwargs={"call_id": 999999})).status_code == 404


@pytest.fixture
def viewer(client, django_user_model):
    """Staff with the permission to see calls but not to change rooms: the services refuse them a kick."""
    staff = django_user_model.objects.create_user("helpdesk", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_call"))
    client.force_login(staff)
    return client


def test_staff_who_may_only_view_calls_see_the_page_but_cannot_kick(viewer, live_call):
    assert viewer.get(LIVE).status_code == 200
    response = viewer.post(kick_url(live_call["bob"]), follow=True)
    assert "Only the owner and moderators remove people from a call." in response.content.decode()
    response = viewer.post(end_url(live_call["call"]), follow=True)
    assert "Only the owner and moderators remove people from a call." in response.content.decode()
    assert CallParticipant.objects.live().count() == 2


@pytest.mark.parametrize("url", [LIVE, DATA, "kick", "end"])
def test_anonymous_and_non_staff_are_sent_to_the_admin_log_in(client, bob, live_call, url):
    url = {"kick": kick_url(live_call["bob"]), "end": end_url(live_call["call"])}.get(url, url)
    for who in (None, bob):
        if who is not None:
            client.force_login(who)
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code == 302 and response.url.startswith(reverse("admin:login")), (who, url)
    assert CallParticipant.objects.live().count() == 2


def test_staff_without_the_permission_to_view_calls_are_refused(client, django_user_model, live_call):
    staff = django_user_model.objects.create_user("helpdesk", password="pw", is_staff=True)
    client.force_login(staff)
    for url in (LIVE, DATA, kick_url(live_call["bob"]), end_url(live_call["call"])):
        assert client.get(url).status_code == 403, url
    assert client.post(kick_url(live_call["bob"])).status_code == 403


# --- services.end_call: the kick's rules -------------------------------------------------------------


def test_the_owner_ends_a_call(room, alice, bob, carol):
    call = in_call(room, bob).call
    in_call(room, carol)
    assert services.end_call(by=alice, call=call) == 2
    call.refresh_from_db()
    assert call.ended_at is not None


def test_a_moderator_ends_a_call_of_members(room, bob, carol, another_member):
    call = in_call(room, bob).call
    in_call(room, another_member)
    assert services.end_call(by=carol, call=call) == 2


def test_a_moderator_cannot_end_a_call_the_owner_is_in(room, alice, bob, carol):
    call = in_call(room, alice).call
    in_call(room, bob)
    with pytest.raises(services.Refused, match="Moderators cannot remove the owner"):
        services.end_call(by=carol, call=call)
    assert call.participants.live().count() == 2


def test_a_member_cannot_end_a_call(room, alice, bob):
    call = in_call(room, alice).call
    with pytest.raises(services.Refused):
        services.end_call(by=bob, call=call)
    assert Call.objects.get(pk=call.pk).is_live


# --- Against real sockets --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_ending_a_call_in_the_admin_closes_every_socket_with_4403(peers, room, alice, bob, admin_user):
    a, b = await peers.together(room, alice, bob)
    call = await Call.objects.aget(pk=a.welcome["call_id"])

    def end_in_the_admin():
        client = Client()
        client.force_login(admin_user)
        return client.post(end_url(call))

    response = await database_sync_to_async(end_in_the_admin)()
    assert response.status_code == 302
    assert [await a.closed_with(), await b.closed_with()] == [4403, 4403]
    assert (await Call.objects.aget(pk=call.pk)).ended_at is not None


@pytest.mark.django_db(transaction=True)
async def test_removing_someone_in_the_admin_closes_their_socket_and_tells_the_others(peers, room, alice, bob,
                                                                                      admin_user):
    a, b = await peers.together(room, alice, bob)
    participant = await CallParticipant.objects.aget(peer_id=b.peer_id)

    def kick_in_the_admin():
        client = Client()
        client.force_login(admin_user)
        return client.post(kick_url(participant))

    assert (await database_sync_to_async(kick_in_the_admin)()).status_code == 302
    assert await b.closed_with() == 4403
    assert await a.receive() == {"type": "peer-left", "peer_id": b.peer_id, "reason": "kicked"}
