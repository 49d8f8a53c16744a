"""Call quality from real getStats() output: a Chromium call's, and an aiortc peer's, summarised by the call page's
stats.js, sent as `stats` frames through a real daphne process, and checked against the raw reports."""

import asyncio
import json
import os

import pytest
from asgiref.sync import sync_to_async

from calls import quality, tickets
from calls.models import CallQuality
from tests.browser import join_call, wait_connected, wait_video_playing
from tests.helpers import eventually

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session"), pytest.mark.django_db(transaction=True)]


def by_type(stats: list[dict], kind: str) -> list[dict]:
    return [s for s in stats if s["type"] == kind]


def inbound(stats: list[dict], kind: str) -> list[dict]:
    return [s for s in by_type(stats, "inbound-rtp") if s.get("kind") == kind]


def total(reports: list[dict], key: str) -> int:
    return max(0, sum(r.get(key, 0) for r in reports))


def expected_from_chromium(stats: list[dict]) -> dict:
    """What the raw report says, read independently of stats.js: the selected pair, its RTT, the audio jitter,
    the cumulative packet counters."""
    ids = {s["id"]: s for s in stats}
    [transport] = [t for t in by_type(stats, "transport") if t.get("selectedCandidatePairId")]
    pair = ids[transport["selectedCandidatePairId"]]
    local = ids[pair["localCandidateId"]]
    audio, video = inbound(stats, "audio"), inbound(stats, "video")
    return {
        "candidate_type": local["candidateType"], "protocol": local["protocol"],
        "rtt_ms": pair["currentRoundTripTime"] * 1000, "jitter_ms": max(a["jitter"] for a in audio) * 1000,
        "audio_received": total(audio, "packetsReceived"), "audio_lost": total(audio, "packetsLost"),
        "video_received": total(video, "packetsReceived"), "video_lost": total(video, "packetsLost"),
        "bytes_in": sum(r["bytesReceived"] for r in by_type(stats, "inbound-rtp")),
        "at": max(r["timestamp"] for r in by_type(stats, "inbound-rtp") + by_type(stats, "outbound-rtp")),
        "freezes": sum(v.get("freezeCount", 0) for v in video),
    }


def interval_mos(now: dict, before: dict | None) -> float:
    before = before or {"audio_received": 0, "audio_lost": 0}
    received = now["audio_received"] - before["audio_received"]
    lost = now["audio_lost"] - before["audio_lost"]
    loss = 100 * lost / (received + lost) if received + lost else 0
    return quality.mos(rtt_ms=now["rtt_ms"], jitter_ms=now["jitter_ms"], loss_percent=loss)


async def rows_of(peer_id: str, count: int) -> list[CallQuality]:
    async def stored():
        rows = await sync_to_async(list)(CallQuality.objects.filter(participant__peer_id=peer_id))
        return rows if rows and rows[0].samples >= count else None

    return await eventually(stored, timeout=10)


async def test_a_chromium_call_reports_its_getstats_and_the_server_aggregates_them(browsers, alice, bob, password,
                                                                                 private_room):
    pages = [await browsers.logged_in(user, password, private_room.get_absolute_url()) for user in (alice, bob)]
    alice_page, bob_page = pages
    alice_peer = await join_call(alice_page)
    await alice_page.evaluate("parley.quality.reporter.stop()")  # the test takes the samples itself, at known times
    bob_peer = await join_call(bob_page)
    await bob_page.evaluate("parley.quality.reporter.stop()")
    await wait_connected(alice_page, bob_peer)
    await wait_connected(bob_page, alice_peer)
    await wait_video_playing(alice_page, bob_peer)

    first = await alice_page.evaluate("parley.quality.reporter.sampleAll()")
    await asyncio.sleep(5.5)  # the server takes one report per pair every 5 s at most
    second = await alice_page.evaluate("parley.quality.reporter.sampleAll()")
    log = await alice_page.evaluate("parley.quality.reporter.log")
    assert [f["peer"] for f in first + second] == [bob_peer, bob_peer]
    [raw_one, raw_two] = [entry["stats"] for entry in log]
    one, two = expected_from_chromium(raw_one), expected_from_chromium(raw_two)

    [row] = await rows_of(alice_peer, 2)
    assert str(row.remote_peer_id) == bob_peer and row.samples == 2
    assert (row.candidate_type, row.protocol) == (two["candidate_type"], two["protocol"]) == ("host", "udp")
    assert row.rtt_sum_ms == pytest.approx(one["rtt_ms"] + two["rtt_ms"], abs=0.01)
    assert row.rtt_max_ms == pytest.approx(max(one["rtt_ms"], two["rtt_ms"]), abs=0.01)
    assert row.jitter_sum_ms == pytest.approx(one["jitter_ms"] + two["jitter_ms"], abs=0.01)
    # The counters are cumulative: the totals are the second report's.
    assert row.packets_received == two["audio_received"] + two["video_received"] > 0
    assert row.packets_lost == two["audio_lost"] + two["video_lost"]
    assert row.freeze_count == two["freezes"]
    assert row.mos_sum == pytest.approx(interval_mos(one, None) + interval_mos(two, one), abs=1e-3)
    # A bitrate needs two reports: the second's, from the bytes and times of both.
    kbps = (two["bytes_in"] - one["bytes_in"]) * 8 / 1000 / ((two["at"] - one["at"]) / 1000)
    assert row.bitrate_in_samples == 1 and row.bitrate_in_sum_kbps == pytest.approx(kbps, rel=1e-3)
    assert row.bitrate_in_sum_kbps > 50  # the fake camera's video at 640x480
    assert 0 < row.connect_ms < 30_000 and row.ice_restarts == 0
    assert not row.poor, quality.poor_reasons(row)  # loopback

    if os.environ.get("PARLEY_DOCS_SCREENSHOTS"):  # regenerates docs/call-quality-*.png (docs/operations.md)
        await screenshot_the_admin(browsers, alice, password, call_id=int(await alice_page.get_attribute(
            "#call", "data-call-id")), folder=os.environ["PARLEY_DOCS_SCREENSHOTS"])


async def screenshot_the_admin(browsers, user, password, *, call_id: int, folder: str) -> None:
    await sync_to_async(type(user).objects.filter(pk=user.pk).update)(is_staff=True, is_superuser=True)
    page = await browsers.logged_in(user, password, f"/admin/calls/call/{call_id}/change/",
                                    viewport={"width": 1600, "height": 900})
    await page.screenshot(path=f"{folder}/call-quality-admin.png", full_page=True)
    await page.goto("/admin/calls/call/?quality=good")
    await page.screenshot(path=f"{folder}/call-quality-list.png")


def plain(report) -> dict:
    """An aiortc stats object as getStats() gives one in a browser: a dictionary, timestamps in milliseconds."""
    fields = dict(vars(report))
    fields["timestamp"] = report.timestamp.timestamp() * 1000
    fields.pop("remoteTimestamp", None)
    return fields


async def test_aiortc_getstats_summarised_by_the_page_module_is_aggregated(browsers, live_server_process, alice,
                                                                         bob, password, private_room, monkeypatch):
    import aioice.ice
    import websockets

    from tests.test_browser_interop import AiortcPeer

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    alice_page = await browsers.logged_in(alice, password, private_room.get_absolute_url())
    alice_peer = await join_call(alice_page)
    ticket = await sync_to_async(tickets.issue_ticket)(user=bob, room=private_room)
    url = f"{live_server_process.ws_url}/ws/rooms/{private_room.slug}/?ticket={ticket}"
    async with websockets.connect(url) as websocket:
        robot = AiortcPeer(websocket)
        await robot.start()
        bob_peer = robot.welcome["peer_id"]
        try:
            await wait_connected(alice_page, bob_peer)
            await wait_video_playing(alice_page, bob_peer)
            # Some RTCP first: aiortc's round trip comes from receiver reports (a few seconds apart).
            for _ in range(40):
                reports = (await robot.pc.getStats()).values()
                if any(r.type == "remote-inbound-rtp" and getattr(r, "roundTripTime", None) is not None
                       for r in reports):
                    break
                await asyncio.sleep(0.25)
            raws, sent, previous = [], [], None
            for attempt in range(2):
                if attempt:
                    await asyncio.sleep(5.5)
                raw = [plain(r) for r in (await robot.pc.getStats()).values()]
                summary = await alice_page.evaluate("([s, p]) => parley.quality.reporter.summarise(s, p)",
                                                    [raw, previous])
                previous = summary["counters"]
                frame = {"type": "stats", "peer": alice_peer, **summary["fields"]}
                await websocket.send(json.dumps(frame))
                raws.append(raw)
                sent.append(frame)
            [row] = await rows_of(bob_peer, 2)
        finally:
            await robot.close()

    raw = raws[-1]
    audio, video = inbound(raw, "audio"), inbound(raw, "video")
    assert row.packets_received == total(audio, "packetsReceived") + total(video, "packetsReceived") > 0
    assert row.packets_lost == total(audio, "packetsLost") + total(video, "packetsLost")
    # aiortc has no candidate-pair statistics: its RTT is RTCP's (remote-inbound-rtp), in seconds.
    # (None until a receiver report came back: such streams say nothing.)
    rtts = [max(r["roundTripTime"] for r in by_type(raw, "remote-inbound-rtp") if r["roundTripTime"] is not None)
            * 1000 for raw in raws]
    assert row.rtt_samples == 2 and row.rtt_sum_ms == pytest.approx(sum(rtts), abs=0.01)
    # No candidate pair, and no bytes on its inbound-rtp: no type, no incoming bitrate; the outgoing one from the
    # bytes its outbound-rtp sent between the two reports.
    assert row.candidate_type == "" and row.bitrate_in_samples == 0 and row.bitrate_out_samples == 1
    sent_bytes = [sum(r["bytesSent"] for r in by_type(raw, "outbound-rtp")) for raw in raws]
    stamps = [max(r["timestamp"] for r in by_type(raw, "inbound-rtp") + by_type(raw, "outbound-rtp")) for raw in raws]
    kbps = (sent_bytes[1] - sent_bytes[0]) * 8 / 1000 / ((stamps[1] - stamps[0]) / 1000)
    assert row.bitrate_out_sum_kbps == pytest.approx(kbps, rel=1e-3)
    # aiortc's jitter is in RTP clock units, not seconds as the standard says: read as seconds, capped at 60 s.
    jitters = [min(max(r["jitter"] for r in inbound(raw, "audio")) * 1000, 60_000) for raw in raws]
    assert row.jitter_sum_ms == pytest.approx(sum(jitters), abs=0.01)
    assert [f.get("rtt_ms") for f in sent] == pytest.approx(rtts, abs=0.01)
