"""A real WebRTC client for tests: aiortc, speaking Parley's signaling protocol over a real WebSocket.

It follows the protocol's conventions: the newcomer offers to each peer in its welcome; existing peers answer.
aiortc does not trickle: its candidates travel inside the SDP; candidates it receives are applied as they come.
"""

import asyncio
import json
from contextlib import suppress

import aioice.ice
import websockets
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

TIMEOUT = 20


def loopback_only(monkeypatch) -> None:
    """Keep ICE on 127.0.0.1: tests send no traffic to any other address."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


class WebRTCPeer:
    def __init__(self, ws_url: str, *, offer_channel: bool = True):
        self.ws_url = ws_url
        self.offer_channel = offer_channel
        self.welcome: dict = {}
        self.connections: dict[str, RTCPeerConnection] = {}
        self.messages: asyncio.Queue = asyncio.Queue()  # data channel messages received
        self.channels: dict[str, object] = {}
        self.events: list[dict] = []  # presence frames seen (peer-joined, peer-left, peer-state, media-state)
        self.errors: list[dict] = []
        self.received: list[dict] = []  # every numbered frame, as it came (with its seq)
        self.last_seq = 0
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "WebRTCPeer":
        await self._open(self.ws_url)
        for peer in self.welcome["peers"]:
            await self._offer_to(peer["peer_id"])
        return self

    async def _open(self, url: str) -> None:
        self.ws = await websockets.connect(url, open_timeout=TIMEOUT)
        self.welcome = json.loads(await asyncio.wait_for(self.ws.recv(), TIMEOUT))
        assert self.welcome["type"] == "welcome", self.welcome
        self._task = asyncio.create_task(self._listen())

    async def drop(self) -> None:
        """The signaling connection is lost (TCP reset, no close frame); the peer connections stay up."""
        self.ws.transport.abort()
        if self._task:
            with suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, TIMEOUT)

    async def resume(self, ws_url: str) -> dict:
        """Reconnect the signaling socket to `ws_url` (a fresh ticket's), resuming the participation."""
        token = self.welcome["resume_token"]
        await self._open(f"{ws_url}&resume={token}&last_seq={self.last_seq}")
        if not self.welcome["resumed"]:
            self.last_seq = 0
        return self.welcome

    async def __aexit__(self, *exc) -> None:
        for pc in self.connections.values():
            await pc.close()
        await self.ws.close()
        if self._task:
            self._task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self._task

    @property
    def peer_id(self) -> str:
        return self.welcome["peer_id"]

    def _connection(self, peer_id: str) -> RTCPeerConnection:
        if peer_id not in self.connections:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

            @pc.on("datachannel")
            def on_datachannel(channel):
                self._watch(peer_id, channel)

            self.connections[peer_id] = pc
        return self.connections[peer_id]

    def _watch(self, peer_id: str, channel) -> None:
        self.channels[peer_id] = channel

        @channel.on("message")
        def on_message(message):
            self.messages.put_nowait((peer_id, message))

    async def _offer_to(self, peer_id: str) -> None:
        pc = self._connection(peer_id)
        if self.offer_channel:
            self._watch(peer_id, pc.createDataChannel("chat"))
        await pc.setLocalDescription(await pc.createOffer())
        await self.send({"type": "offer", "to": peer_id, "sdp": pc.localDescription.sdp})

    async def send(self, frame: dict) -> None:
        await self.ws.send(json.dumps(frame))

    async def _listen(self) -> None:
        async for text in self.ws:
            frame = json.loads(text)
            if "seq" in frame:
                assert frame["seq"] == self.last_seq + 1, (frame, self.last_seq)
                self.last_seq = frame["seq"]
                self.received.append(frame)
            kind = frame["type"]
            if kind == "offer":
                pc = self._connection(frame["from"])
                await pc.setRemoteDescription(RTCSessionDescription(sdp=frame["sdp"], type="offer"))
                await pc.setLocalDescription(await pc.createAnswer())
                await self.send({"type": "answer", "to": frame["from"], "sdp": pc.localDescription.sdp})
            elif kind == "answer":
                await self.connections[frame["from"]].setRemoteDescription(
                    RTCSessionDescription(sdp=frame["sdp"], type="answer"))
            elif kind == "candidate":
                candidate = frame["candidate"]
                if candidate and candidate.get("candidate"):
                    ice = candidate_from_sdp(candidate["candidate"].split(":", 1)[1])
                    ice.sdpMid, ice.sdpMLineIndex = candidate.get("sdpMid"), candidate.get("sdpMLineIndex")
                    await self._connection(frame["from"]).addIceCandidate(ice)
            elif kind == "error":
                self.errors.append(frame)
            else:
                self.events.append(frame)

    async def connected_to(self, peer_id: str, timeout: float = TIMEOUT) -> None:
        async def wait():
            while peer_id not in self.connections or self.connections[peer_id].connectionState != "connected":
                await asyncio.sleep(0.05)
        await asyncio.wait_for(wait(), timeout)

    async def channel_open(self, peer_id: str, timeout: float = TIMEOUT):
        async def wait():
            while getattr(self.channels.get(peer_id), "readyState", None) != "open":
                await asyncio.sleep(0.05)
        await asyncio.wait_for(wait(), timeout)
        return self.channels[peer_id]

    async def event(self, kind: str, timeout: float = TIMEOUT) -> dict:
        async def wait():
            while not any(e["type"] == kind for e in self.events):
                await asyncio.sleep(0.05)
            return next(e for e in self.events if e["type"] == kind)
        return await asyncio.wait_for(wait(), timeout)
