"""Helpers for signaling tests: connected peers over a WebsocketCommunicator on the real ASGI application.

Tests open their sockets through the `peers` fixture (tests/conftest.py), which disconnects every one of them at
teardown, whether the test passed or not.
"""

import json

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from calls import tickets
from config.asgi import application

ORIGIN = (b"origin", b"http://127.0.0.1")
TIMEOUT = 5


class Peer:
    """A connected client: its communicator and, once welcomed, its peer id."""

    def __init__(self, communicator: WebsocketCommunicator, *, last_seq: int = 0):
        self.ws = communicator
        self.welcome: dict | None = None
        self.last_seq = last_seq  # the protocol numbers every relayed or announced frame 1, 2, 3 ...

    @property
    def peer_id(self) -> str:
        return self.welcome["peer_id"]

    async def send(self, frame: dict) -> None:
        await self.ws.send_to(text_data=json.dumps(frame))

    async def receive(self, timeout: float = TIMEOUT) -> dict:
        """The next frame, without its `seq` (checked here: one more than the last one's)."""
        frame = await self.receive_raw(timeout)
        if "seq" in frame:
            assert frame["seq"] == self.last_seq + 1, (frame, self.last_seq)
            self.last_seq = frame.pop("seq")
        else:
            assert frame["type"] in ("welcome", "error", "pong"), frame
        return frame

    async def receive_raw(self, timeout: float = TIMEOUT) -> dict:
        """The next frame as it came over the wire."""
        output = await self.ws.receive_output(timeout)
        assert output["type"] == "websocket.send", output
        return json.loads(output["text"])

    async def receive_type(self, kind: str, timeout: float = TIMEOUT) -> dict:
        """The next frame, which must be of the given type."""
        frame = await self.receive(timeout)
        assert frame["type"] == kind, frame
        return frame

    async def closed_with(self, timeout: float = TIMEOUT) -> int:
        """Skip frames until the server closes the socket; return the close code."""
        while True:
            output = await self.ws.receive_output(timeout)
            if output["type"] == "websocket.close":
                return output.get("code", 1000)

    async def nothing(self) -> bool:
        return await self.ws.receive_nothing(timeout=0.2)

    async def leave(self) -> None:
        await self.ws.disconnect()

    async def drop(self) -> None:
        """The connection breaks without a closing handshake (1006, abnormal closure), as a lost network does."""
        await self.ws.disconnect(code=1006)


async def open_socket(path: str, *, headers: list | None = None) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=headers if headers is not None else [ORIGIN])
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    return communicator


async def ticket_path(user, room, *, resume: "Peer | None" = None) -> str:
    """The socket address of the room's call, with a fresh ticket of the user's. With `resume`, it resumes that
    peer's participation (its token and the last seq it saw)."""
    ticket = await database_sync_to_async(tickets.issue_ticket)(user=user, room=room)
    path = f"/ws/rooms/{room.slug}/?ticket={ticket}"
    if resume is not None:
        path += f"&resume={resume.welcome['resume_token']}&last_seq={resume.last_seq}"
    return path


class Peers:
    """The sockets one test opens: `await peers(bob, room)` joins bob to the room's call."""

    def __init__(self):
        self.opened: list[Peer] = []

    async def open(self, path: str, *, headers: list | None = None, last_seq: int = 0) -> Peer:
        """A socket to `path`, nothing read from it yet (for refusals: see `Peer.closed_with`)."""
        peer = Peer(await open_socket(path, headers=headers), last_seq=last_seq)
        self.opened.append(peer)
        return peer

    async def __call__(self, user, room, *, headers: list | None = None, resume: "Peer | None" = None) -> Peer:
        """A peer that joined the room's call with a ticket, its welcome already read; with `resume`, one that
        resumed that peer's participation."""
        peer = await self.open(await ticket_path(user, room, resume=resume), headers=headers,
                               last_seq=resume.last_seq if resume else 0)
        peer.welcome = await peer.receive_type("welcome")
        if not peer.welcome["resumed"]:
            peer.last_seq = 0
        return peer

    async def together(self, room, *users) -> list[Peer]:
        """The users join the room's call one after the other; each has read the `peer-joined` of every later one."""
        joined: list[Peer] = []
        for user in users:
            peer = await self(user, room)
            for earlier in joined:
                assert (await earlier.receive_type("peer-joined"))["peer"]["peer_id"] == peer.peer_id
            joined.append(peer)
        return joined

    async def disconnect_all(self) -> None:
        """Disconnect, one by one, every socket whose application still runs (one that left is done)."""
        for peer in self.opened:
            if not peer.ws.future.done():
                await peer.leave()


async def join(user, room, *, headers: list | None = None, resume: "Peer | None" = None) -> Peer:
    """A peer that joined the room's call, which the test itself must disconnect: prefer the `peers` fixture."""
    return await Peers()(user, room, headers=headers, resume=resume)
