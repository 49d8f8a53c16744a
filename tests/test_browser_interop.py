"""A browser and a non-browser WebRTC client (aiortc) in one call, through the real signaling server."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from calls import tickets
from tests.browser import join_call, tile, wait_connected, wait_video_playing

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session"), pytest.mark.django_db(transaction=True)]


class AiortcPeer:
    """Joins with a ticket, offers to everyone in its welcome (it is the newcomer), answers nothing else."""

    def __init__(self, websocket):
        from aiortc import RTCPeerConnection
        from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

        self.ws = websocket
        self.pc = RTCPeerConnection()
        self.pc.addTrack(AudioStreamTrack())
        self.pc.addTrack(VideoStreamTrack())
        self.chat = self.pc.createDataChannel("chat", negotiated=True, id=0)
        self.chat_open = asyncio.Event()
        self.chat.on("open", self.chat_open.set)
        self.received: asyncio.Queue = asyncio.Queue()
        self.chat.on("message", lambda message: self.received.put_nowait(json.loads(message)["text"]))
        self.welcome: dict = {}
        self.answered = asyncio.Event()

    async def start(self):
        self.welcome = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        assert self.welcome["type"] == "welcome", self.welcome
        (other,) = self.welcome["peers"]
        self.other = other["peer_id"]
        await self.pc.setLocalDescription(await self.pc.createOffer())  # aiortc gathers every candidate here
        await self.ws.send(json.dumps({"type": "offer", "to": self.other, "sdp": self.pc.localDescription.sdp}))
        self.reader = asyncio.create_task(self.read())

    async def read(self):
        from aiortc import RTCSessionDescription
        from aiortc.sdp import candidate_from_sdp

        async for text in self.ws:
            frame = json.loads(text)
            if frame["type"] == "answer":
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=frame["sdp"], type="answer"))
                self.answered.set()
            elif frame["type"] == "candidate" and frame["candidate"] and frame["candidate"]["candidate"]:
                c = frame["candidate"]
                candidate = candidate_from_sdp(c["candidate"].split(":", 1)[1])
                candidate.sdpMid, candidate.sdpMLineIndex = c.get("sdpMid"), c.get("sdpMLineIndex")
                await self.answered.wait()
                await self.pc.addIceCandidate(candidate)

    async def close(self):
        self.reader.cancel()
        await self.pc.close()
        await self.ws.close()


async def test_a_browser_and_an_aiortc_peer_connect(browsers, live_server_process, alice, bob, password,
                                                   private_room, monkeypatch):
    import aioice.ice
    import websockets

    # aioice leaves 127.0.0.1 out; Chromium offers it (--allow-loopback-in-peer-connection): meet on loopback,
    # which works on any machine, with or without a network interface.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])

    alice_page = await browsers.logged_in(alice, password, private_room.get_absolute_url())
    alice_peer = await join_call(alice_page)

    ticket = await sync_to_async(tickets.issue_ticket)(user=bob, room=private_room)
    url = f"{live_server_process.ws_url}/ws/rooms/{private_room.slug}/?ticket={ticket}"
    async with websockets.connect(url) as websocket:
        robot = AiortcPeer(websocket)
        await robot.start()
        assert robot.other == alice_peer
        bob_peer = robot.welcome["peer_id"]
        try:
            await wait_connected(alice_page, bob_peer)
            await wait_video_playing(alice_page, bob_peer)
            assert await alice_page.text_content(f"{tile(bob_peer)} .tile-name") == "bob"

            await asyncio.wait_for(robot.chat_open.wait(), 10)
            robot.chat.send(json.dumps({"text": "beep from aiortc"}))
            await alice_page.wait_for_selector(f'#chat-log li[data-from="{bob_peer}"]:has-text("beep from aiortc")')
            await alice_page.get_by_role("textbox", name="Message").fill("hello robot")
            await alice_page.get_by_role("button", name="Send").click()
            assert await asyncio.wait_for(robot.received.get(), 10) == "hello robot"
            assert robot.pc.connectionState == "connected"
        finally:
            await robot.close()
    await alice_page.wait_for_selector(tile(bob_peer), state="detached")
