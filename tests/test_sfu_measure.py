"""Measured, not run by `make test` (the `measure` marker; `make sfu-measure` runs it): what a client uploads
and how many video encoders it runs at 5 people in a mesh and through the SFU (from aiortc's getStats
`outbound-rtp`), and the CPU time Janus and the daphne process spend on a 6-person SFU call. Figures go to
test-artifacts/sfu-measure.json and docs/sfu.md.

aiortc clients, 160x120 at 15 fps (small: six clients share two cores) with a noisy picture, so that each encoder
spends its whole bitrate as with a camera: aiortc's VP8 encoder starts at 500 kbit/s and follows the receiver's
REMB up to 1.5 Mbit/s; Parley's Janus rooms cap a publisher at 1 Mbit/s (sfu.janus.create_room).
"""

import asyncio
import json
import os
from contextlib import AsyncExitStack

import pytest

from tests import test_sfu_bridge as bridge_tests
from tests.janus import ColourTrack, same_host_only
from tests.servers import PROJECT
from tests.test_sfu_bridge import COLOURS, TIMEOUT, SfuClient, set_media, ws_url

# The bridge tests' fixtures, for this module too (a Janus and a daphne process of its own).
janus, sfu_server, people, call_room = (bridge_tests.janus, bridge_tests.sfu_server, bridge_tests.people,
                                        bridge_tests.call_room)

pytestmark = [pytest.mark.live, pytest.mark.measure, pytest.mark.django_db(transaction=True)]

WINDOW = 10.0  # seconds measured, after the warm-up
WARM_UP = 8.0


class MeshClient(SfuClient):
    """A mesh client: one connection per other peer, each with its own encoder (as a browser has)."""

    async def __aenter__(self) -> "MeshClient":
        import websockets

        self.connections = {}
        self.ws = await websockets.connect(self.url, open_timeout=TIMEOUT)
        self.welcome = json.loads(await asyncio.wait_for(self.ws.recv(), TIMEOUT))
        self.media = self.welcome["media"]
        assert self.media == "mesh"
        self.tasks.append(asyncio.create_task(self.listen()))
        for peer in self.welcome["peers"]:
            pc = self.connection(peer["peer_id"])
            await pc.setLocalDescription(await pc.createOffer())
            await self.send({"type": "offer", "to": peer["peer_id"], "sdp": pc.localDescription.sdp})
        return self

    def connection(self, peer_id: str):
        from aiortc import RTCConfiguration, RTCPeerConnection

        if peer_id not in self.connections:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.addTrack(ColourTrack(self.colour, width=160, height=120, noise=True))
            pc.on("track", lambda track: self.tasks.append(asyncio.create_task(self.drain(track))))
            self.connections[peer_id] = pc
        return self.connections[peer_id]

    async def drain(self, track) -> None:
        from aiortc.mediastreams import MediaStreamError

        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return

    async def listen(self) -> None:
        from aiortc import RTCSessionDescription

        async for text in self.ws:
            frame = json.loads(text)
            if frame["type"] == "offer":
                pc = self.connection(frame["from"])
                await pc.setRemoteDescription(RTCSessionDescription(sdp=frame["sdp"], type="offer"))
                await pc.setLocalDescription(await pc.createAnswer())
                await self.send({"type": "answer", "to": frame["from"], "sdp": pc.localDescription.sdp})
            elif frame["type"] == "answer":
                await self.connections[frame["from"]].setRemoteDescription(
                    RTCSessionDescription(sdp=frame["sdp"], type="answer"))

    def peer_connections(self):
        return list(self.connections.values())

    async def close(self) -> None:
        for pc in self.connections.values():
            await pc.close()
        await super().close()


class NoisySfuClient(SfuClient):
    async def publish(self) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection

        self.publisher_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        track = ColourTrack(self.colour, width=160, height=120, noise=True)
        self.publisher_pc.addTransceiver(track, direction="sendonly")
        await self.publisher_pc.setLocalDescription(await self.publisher_pc.createOffer())
        await self.send({"type": "offer", "to": "sfu", "sdp": self.publisher_pc.localDescription.sdp})

    def peer_connections(self):
        return [pc for pc in (self.publisher_pc,) if pc is not None]

    async def read(self, track) -> None:  # received, not looked at
        from aiortc.mediastreams import MediaStreamError

        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return


async def outbound(client) -> tuple[int, int]:
    """(bytes sent, video encoders sending) over the client's connections, from getStats outbound-rtp."""
    sent = encoders = 0
    for pc in client.peer_connections():
        for stats in (await pc.getStats()).values():
            if stats.type == "outbound-rtp" and stats.kind == "video":
                sent += stats.bytesSent
                encoders += stats.bytesSent > 0
    return sent, encoders


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def upload_of(clients) -> dict:
    before = [await outbound(c) for c in clients]
    await asyncio.sleep(WINDOW)
    after = [await outbound(c) for c in clients]
    rates = [(a[0] - b[0]) * 8 / WINDOW / 1000 for a, b in zip(after, before, strict=True)]
    return {"upload_kbps_per_client": round(sum(rates) / len(rates)),
            "video_encoders_per_client": sum(a[1] for a in after) / len(after)}


async def test_measure_upload_at_five_people_mesh_versus_sfu_and_server_cpu_at_six(
        sfu_server, janus, people, call_room, monkeypatch):
    same_host_only(monkeypatch, janus.ice_address)
    figures = {}
    await set_media(call_room, "mesh")
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(
            MeshClient(await ws_url(sfu_server, person, call_room), person.username, COLOURS[n]))
            for n, person in enumerate(people[:5])]
        await asyncio.sleep(WARM_UP)
        figures["mesh_5"] = await upload_of(clients)
    await asyncio.sleep(3)  # the call ends

    await set_media(call_room, "sfu")
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(
            NoisySfuClient(await ws_url(sfu_server, person, call_room), person.username, COLOURS[n]))
            for n, person in enumerate(people[:5])]
        await asyncio.sleep(WARM_UP)
        figures["sfu_5"] = await upload_of(clients)
        clients.append(await stack.enter_async_context(
            NoisySfuClient(await ws_url(sfu_server, people[5], call_room), people[5].username, COLOURS[5])))
        await asyncio.sleep(WARM_UP)
        janus_cpu, parley_cpu = cpu_seconds(janus.process.pid), cpu_seconds(sfu_server.process.pid)
        streams = sum(len(c.streamed_peers()) for c in clients)
        await asyncio.sleep(WINDOW)
        figures["sfu_6_server_cpu_percent"] = {
            "janus": round((cpu_seconds(janus.process.pid) - janus_cpu) / WINDOW * 100, 1),
            "parley_daphne": round((cpu_seconds(sfu_server.process.pid) - parley_cpu) / WINDOW * 100, 1),
            "streams_forwarded": streams}
    (PROJECT / "test-artifacts").mkdir(exist_ok=True)
    (PROJECT / "test-artifacts" / "sfu-measure.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    assert figures["mesh_5"]["video_encoders_per_client"] == 4
    assert figures["sfu_5"]["video_encoders_per_client"] == 1
    assert figures["sfu_6_server_cpu_percent"]["streams_forwarded"] == 30
    assert figures["sfu_5"]["upload_kbps_per_client"] < figures["mesh_5"]["upload_kbps_per_client"] / 2
