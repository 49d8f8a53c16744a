"""Call quality: the MOS estimate against worked values, the `stats` frame's validation, and the folding of reports
into one row per pair (through the signaling consumer)."""

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from calls import protocol, quality
from calls.models import CallParticipant, CallQuality
from calls.protocol import ErrorCode, ProtocolError

PEER = "7d9f1b9e-6c2e-4d3b-9a55-0d1c2b3a4f5e"


# --- the simplified E-model -------------------------------------------------------------------------

@pytest.mark.parametrize(("rtt", "jitter", "loss", "expected"), [
    # EL = 0 + 0 + 10 = 10 -> R = 94.768 - 0.25 = 94.518 -> 1 + 3.30813 + 7e-6 * 94.518 * 34.518 * 5.482 = 4.43333
    (0, 0, 0, 4.43333),
    # EL = 100 + 20 + 10 = 130 -> R = 94.768 - 3.25 = 91.518 -> 1 + 3.20313 + 0.17127 = 4.37439
    (100, 10, 0, 4.37439),
    # EL = 50 + 10 + 10 = 70 -> R = 94.768 - 1.75 - 2.5 = 90.518 -> 4.35148
    (50, 5, 1, 4.35148),
    # EL = 300 + 40 + 10 = 350 >= 160 -> R = 94.768 - 23 = 71.768 -> 1 + 2.51188 + 0.16690 = 3.67879
    (300, 20, 0, 3.67879),
    # EL = 610 -> R = 94.768 - 49 - 12.5 = 33.268 -> 1 + 1.16438 - 0.41543 = 1.74896
    (500, 50, 5, 1.74896),
    # EL = 160 exactly takes the second branch: R = 94.768 - 4 = 90.768 -> 4.35738
    (150, 0, 0, 4.35738),
    # R = 93.918 - 100 < 6.52: floored to 0 -> MOS 1
    (20, 2, 40, 1.0),
    (1000, 100, 30, 1.0),
])
def test_mos_is_the_simplified_e_model(rtt, jitter, loss, expected):
    assert quality.mos(rtt_ms=rtt, jitter_ms=jitter, loss_percent=loss) == pytest.approx(expected, abs=5e-5)


def test_mos_is_1_at_the_floor_and_falls_with_latency_and_loss():
    # 6.52 is where the map reaches 1: just above the floor MOS is 1 (to two places), just below it is 1 exactly.
    el_for_r = (94.768 - 6.53) * 10 + 120 - 10  # rtt giving R = 6.53 with no jitter and no loss
    assert quality.mos(rtt_ms=el_for_r, jitter_ms=0, loss_percent=0) == pytest.approx(1.0, abs=0.01)
    scores = [quality.mos(rtt_ms=rtt, jitter_ms=5, loss_percent=loss) for rtt, loss in
              [(20, 0), (100, 0), (200, 1), (400, 2), (800, 5)]]
    assert scores == sorted(scores, reverse=True)


# --- validation -------------------------------------------------------------------------------------

def parse(**fields):
    return protocol.parse_client_message({"type": "stats", "peer": PEER, **fields}, {PEER: "node"})


def test_a_full_report_parses_into_stats():
    stats = parse(candidate_type="relay", protocol="udp", rtt_ms=12.5, jitter_ms=1.2, audio_packets_received=500,
                  audio_packets_lost=3, video_packets_received=2000, video_packets_lost=0, bitrate_in_kbps=900.5,
                  bitrate_out_kbps=1000, fps=30, width=640, height=480, freeze_count=1, freeze_seconds=0.8,
                  connect_ms=840.0, ice_restarts=0, ice_failures=0, unknown="ignored")
    assert stats == protocol.Stats(
        peer=PEER, candidate_type="relay", protocol="udp", rtt_ms=12.5, jitter_ms=1.2, audio_packets_received=500,
        audio_packets_lost=3, video_packets_received=2000, video_packets_lost=0, bitrate_in_kbps=900.5,
        bitrate_out_kbps=1000, fps=30, width=640, height=480, freeze_count=1, freeze_seconds=0.8, connect_ms=840.0,
        ice_restarts=0, ice_failures=0)


def test_every_value_but_the_peer_is_optional():
    assert parse() == protocol.Stats(peer=PEER)
    assert parse(rtt_ms=None, candidate_type=None) == protocol.Stats(peer=PEER)


@pytest.mark.parametrize("fields", [
    {"candidate_type": "turn"}, {"candidate_type": 1}, {"protocol": "sctp"},
    {"rtt_ms": -1}, {"rtt_ms": 60_001}, {"rtt_ms": "12"}, {"rtt_ms": True},
    {"audio_packets_lost": 1.5}, {"audio_packets_lost": -3}, {"video_packets_received": 2**31},
    {"width": 16_385}, {"fps": [30]}, {"freeze_seconds": {}}, {"ice_restarts": False},
])
def test_values_off_their_type_or_bounds_are_bad_messages(fields):
    with pytest.raises(ProtocolError) as refused:
        parse(**fields)
    assert refused.value.code == ErrorCode.BAD_MESSAGE


@pytest.mark.parametrize("peer", [None, 7, "00000000-0000-0000-0000-000000000000", PEER.upper()])
def test_reports_are_only_about_known_peers(peer):
    with pytest.raises(ProtocolError) as refused:
        protocol.parse_client_message({"type": "stats", "peer": peer}, {PEER: "node"})
    assert refused.value.code in (ErrorCode.BAD_MESSAGE, ErrorCode.UNKNOWN_PEER)


# --- folding ----------------------------------------------------------------------------------------

@pytest.fixture
def participant(db, public_room, alice):
    from calls import services

    return services.join_call(room_slug=public_room.slug, user=alice, peer_id="11111111-2222-3333-4444-555555555555",
                              relay_node="test").participant


def report(**fields) -> protocol.Stats:
    return protocol.Stats(peer=PEER, **fields)


def test_reports_fold_into_one_row_per_pair_with_counters_differenced(participant):
    start = timezone.now()
    quality.fold(peer_id=str(participant.peer_id), now=start, stats=report(
        candidate_type="srflx", protocol="udp", rtt_ms=40, jitter_ms=4, audio_packets_received=480,
        audio_packets_lost=20, video_packets_received=1000, video_packets_lost=0, bitrate_in_kbps=800,
        bitrate_out_kbps=600, connect_ms=900, freeze_count=0, freeze_seconds=0))
    quality.fold(peer_id=str(participant.peer_id), now=start + timedelta(seconds=10), stats=report(
        candidate_type="relay", protocol="udp", rtt_ms=60, jitter_ms=8, audio_packets_received=980,
        audio_packets_lost=20, video_packets_received=2000, video_packets_lost=0, bitrate_in_kbps=1000,
        bitrate_out_kbps=700, connect_ms=5000, freeze_count=1, freeze_seconds=0.5))
    [row] = CallQuality.objects.all()
    assert row.samples == 2 and row.candidate_type == "relay" and row.connect_ms == 900
    assert row.rtt_mean_ms == 50 and row.rtt_max_ms == 60 and row.jitter_mean_ms == 6 and row.jitter_max_ms == 8
    assert row.packets_received == 2980 and row.packets_lost == 20
    assert row.loss_percent == pytest.approx(100 * 20 / 3000)
    assert row.bitrate_in_mean_kbps == 900 and row.bitrate_out_mean_kbps == 650
    assert row.freeze_count == 1 and row.freeze_seconds == 0.5
    # The first interval lost 20 of 500 audio packets (4 %), the second none of 500.
    first = quality.mos(rtt_ms=40, jitter_ms=4, loss_percent=4)
    second = quality.mos(rtt_ms=60, jitter_ms=8, loss_percent=0)
    assert row.mos_mean == pytest.approx((first + second) / 2) and row.mos_min == pytest.approx(first)
    # Loss 0.67 %, MOS about 4.27, 0.5 s frozen of 20 s (2.5 %): not poor.
    assert not row.poor and quality.poor_reasons(row) == []


def test_a_counter_that_goes_down_starts_over(participant):
    start = timezone.now()
    for seconds, received in [(0, 1000), (10, 2000), (20, 300)]:  # the third after a new RTCPeerConnection
        quality.fold(peer_id=str(participant.peer_id), now=start + timedelta(seconds=seconds),
                     stats=report(rtt_ms=20, audio_packets_received=received, audio_packets_lost=0))
    row = CallQuality.objects.get()
    assert row.packets_received == 1000 + 1000 + 300


@pytest.mark.parametrize(("fields", "reason"), [
    ({"rtt_ms": 450}, "RTT 450 ms"),
    ({"rtt_ms": 20, "jitter_ms": 35}, "jitter 35 ms"),
    ({"rtt_ms": 20, "audio_packets_received": 960, "audio_packets_lost": 40}, "loss 4.0 %"),
    ({"rtt_ms": 20, "freeze_seconds": 0.6}, "froze 6 %"),
])
def test_a_pair_is_poor_past_any_threshold(participant, fields, reason):
    quality.fold(peer_id=str(participant.peer_id), stats=report(**fields))
    row = CallQuality.objects.get()
    assert row.poor
    assert reason in quality.poor_reasons(row)


def test_a_good_pair_is_not_poor_and_the_thresholds_are_settings(participant, settings):
    quality.fold(peer_id=str(participant.peer_id), stats=report(rtt_ms=300, jitter_ms=5, audio_packets_received=990,
                                                                audio_packets_lost=10))
    row = CallQuality.objects.get()
    assert not row.poor and quality.poor_reasons(row) == []
    settings.PARLEY_QUALITY = {**settings.PARLEY_QUALITY, "POOR_RTT_MS": 250, "POOR_LOSS_PERCENT": 0.5}
    assert quality.poor_reasons(row) == ["loss 1.0 %", "RTT 300 ms"]


def test_a_report_after_the_participation_ended_is_dropped(participant):
    from calls import services

    services.leave_call(peer_id=str(participant.peer_id), reason="left")
    assert quality.fold(peer_id=str(participant.peer_id), stats=report(rtt_ms=20)) is None
    assert not CallQuality.objects.exists()


# --- through the consumer ---------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
async def test_stats_are_folded_never_relayed_and_rate_limited_per_pair(peers, public_room, alice, bob):
    a, b = await peers.together(public_room, alice, bob)
    await a.send({"type": "stats", "peer": b.peer_id, "rtt_ms": 30, "jitter_ms": 2, "candidate_type": "host",
                  "protocol": "udp", "audio_packets_received": 500, "audio_packets_lost": 0})
    await a.send({"type": "stats", "peer": b.peer_id, "rtt_ms": 999})  # too soon after the first
    error = await a.receive_type("error")
    assert error["code"] == ErrorCode.RATE_LIMITED
    await a.send({"type": "stats", "peer": "00000000-0000-0000-0000-000000000000"})
    assert (await a.receive_type("error"))["code"] == ErrorCode.UNKNOWN_PEER
    await a.send({"type": "stats", "peer": b.peer_id, "rtt_ms": -5})
    assert (await a.receive_type("error"))["code"] == ErrorCode.BAD_MESSAGE
    assert await b.nothing()  # never relayed

    def stored():
        return list(CallQuality.objects.select_related("participant"))

    for _ in range(50):
        rows = await database_sync_to_async(stored)()
        if rows:
            break
        await asyncio.sleep(0.05)
    [row] = rows
    assert str(row.participant.peer_id) == a.peer_id and str(row.remote_peer_id) == b.peer_id
    assert row.samples == 1 and row.rtt_sum_ms == 30 and row.candidate_type == "host"
    assert await database_sync_to_async(CallParticipant.objects.count)() == 2


# --- admin and API ----------------------------------------------------------------------------------

def fold_for(participant, remote: str, **fields) -> None:
    quality.fold(peer_id=str(participant.peer_id), stats=protocol.Stats(peer=remote, **fields))


@pytest.fixture
def poor_and_good_calls(public_room, private_room, alice, bob, carol):
    """A call in the public room where bob's view of alice was poor (RTT 600 ms), a good one in the private room,
    and one with no reports."""
    from tests.helpers import a_past_call, in_call

    poor = in_call(public_room, alice), in_call(public_room, bob)
    good = in_call(private_room, carol)
    unreported = a_past_call(services_room(alice), [alice])
    fold_for(poor[0], str(poor[1].peer_id), rtt_ms=40, jitter_ms=2, candidate_type="host", protocol="udp",
             connect_ms=800)
    fold_for(poor[1], str(poor[0].peer_id), rtt_ms=600, jitter_ms=2, candidate_type="relay", protocol="tcp",
             connect_ms=2500, freeze_count=2, freeze_seconds=0.3)
    fold_for(good, PEER, rtt_ms=30, jitter_ms=1, candidate_type="srflx", protocol="udp",
             audio_packets_received=1000, audio_packets_lost=1)
    return {"poor": poor[0].call, "good": good.call, "unreported": unreported}


def services_room(owner):
    from calls import services

    return services.create_room(owner=owner, name="Quiet room")


@pytest.fixture
def operator(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.mark.parametrize(("query", "found"), [
    ("?quality=poor", ["poor"]), ("?quality=good", ["good"]), ("?quality=unknown", ["unreported"]),
    ("", ["poor", "good", "unreported"]),
])
def test_the_call_list_filters_poor_calls(operator, poor_and_good_calls, query, found):
    from django.urls import reverse

    response = operator.get(reverse("admin:calls_call_changelist") + query)
    assert response.status_code == 200
    assert sorted(c.pk for c in response.context["cl"].result_list) == sorted(poor_and_good_calls[k].pk
                                                                              for k in found)


def test_the_call_list_has_a_quality_column(operator, poor_and_good_calls):
    from django.urls import reverse

    body = operator.get(reverse("admin:calls_call_changelist")).content.decode()
    worst = quality.mos(rtt_ms=600, jitter_ms=2, loss_percent=0)
    assert f"poor (worst MOS {worst:.2f})" in body
    assert f"good (worst MOS {quality.mos(rtt_ms=30, jitter_ms=1, loss_percent=0.1):.2f})" in body


def test_the_call_page_shows_each_participants_quality(operator, poor_and_good_calls):
    from django.urls import reverse

    call = poor_and_good_calls["poor"]
    body = operator.get(reverse("admin:calls_call_change", args=[call.pk])).content.decode()
    for text in ("host/udp", "relay/tcp", "600 ms / 600 ms", "2 (0.3 s)", "2.5 s", "0.8 s",
                 "poor: MOS 2.33, RTT 600 ms", "Time to connect", "Reconnects", "Connection"):
        assert text in body, text


def test_the_participant_page_and_the_quality_list_render(operator, poor_and_good_calls):
    from django.urls import reverse

    participant = poor_and_good_calls["poor"].participants.first()
    assert operator.get(reverse("admin:calls_callparticipant_change", args=[participant.pk])).status_code == 200
    response = operator.get(reverse("admin:calls_callquality_changelist") + "?poor__exact=1")
    assert [str(r.remote_peer_id) for r in response.context["cl"].result_list] == [
        str(poor_and_good_calls["poor"].participants.get(user__username="alice").peer_id)]


def test_the_call_in_the_api_includes_the_aggregates(poor_and_good_calls, alice):
    from tests.helpers import api_as

    call = poor_and_good_calls["poor"]
    body = api_as(alice).get(f"/api/calls/{call.pk}/").json()
    by_name = {p["user"]["username"]: p for p in body["participants"]}
    [bobs] = by_name["bob"]["quality"]
    assert bobs["peer_id"] == str(call.participants.get(user__username="alice").peer_id)
    assert bobs["samples"] == 1 and bobs["candidate_type"] == "relay" and bobs["protocol"] == "tcp"
    assert bobs["rtt_mean_ms"] == 600 and bobs["rtt_max_ms"] == 600 and bobs["connect_ms"] == 2500
    assert bobs["mos_mean"] == pytest.approx(quality.mos(rtt_ms=600, jitter_ms=2, loss_percent=0))
    assert bobs["poor"] is True and bobs["poor_reasons"] == ["MOS 2.33", "RTT 600 ms"]
    assert by_name["alice"]["quality"][0]["poor"] is False
