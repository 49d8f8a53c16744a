"""Issue 10, row 1: a seeded fuzzer of client frames against real servers (daphne and uvicorn).

Random JSON, mutated valid frames, wrong types, missing fields, non-object JSON, nesting up to 100,000 levels,
duplicate keys, huge numbers, lone surrogates, binary frames and invalid text: every bad frame is answered with a
documented `error`, no socket is closed with 1011, the server logs no traceback, and a valid frame right after
works. A text frame of invalid UTF-8 is refused by the server with 1007 and the leave recorded.

The default run sends 500 cases per server; `make fuzz` (marker `fuzz`) sends 10,000.
"""

import asyncio
import json
import os
import random
import string
import uuid
from collections import Counter

import pytest
import websockets
from asgiref.sync import sync_to_async
from websockets.frames import Frame, Opcode

from calls import tickets
from calls.models import CallParticipant
from calls.protocol import ErrorCode
from tests.helpers import eventually
from tests.live_sockets import Socket, ticket_socket, unexpected_tracebacks
from tests.servers import each_server

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

DOCUMENTED_ERRORS = {value for key, value in vars(ErrorCode).items() if key.isupper()}
OFFER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
TYPES = ["offer", "answer", "candidate", "media-state", "ping", "welcome", "error", "", "OFFER", "leave?", "x" * 99]


# The fuzzer sends as fast as it can: the rate limit would answer most frames before they are looked at. The
# receiving peer says nothing all along: no timeout for it.
server = each_server({"PARLEY_RATE_PER_SECOND": "1000000", "PARLEY_RATE_BURST": "1000000",
                      "PARLEY_PEER_TIMEOUT": "3600"})


class Fuzzer:
    """Client frames, good and bad, from one seed: (kind, payload) where payload is str (text) or bytes."""

    def __init__(self, seed: int, peer_id: str):
        self.random = random.Random(seed)
        self.peer_id = peer_id

    def value(self, depth: int = 0):
        r = self.random
        choice = r.randrange(9 if depth < 4 else 6)
        if choice == 0:
            return None
        if choice == 1:
            return r.choice([True, False])
        if choice == 2:
            return r.choice([0, -1, 1, 2**53, -(2**63), 10**30, r.randint(-1000, 1000)])
        if choice == 3:
            return r.choice([0.5, -0.0, 1e308, 3.14])
        if choice in (4, 5):
            return self.text()
        if choice == 6:
            return [self.value(depth + 1) for _ in range(r.randrange(4))]
        return {self.text(8): self.value(depth + 1) for _ in range(r.randrange(4))}

    def text(self, limit: int = 40) -> str:
        r = self.random
        alphabet = string.printable + "éü€😀\u0000\u200b"
        return "".join(r.choice(alphabet) for _ in range(r.randrange(limit)))

    def valid(self) -> dict:
        r = self.random
        to = r.choice([self.peer_id, str(uuid.uuid4())])
        return r.choice([
            {"type": "offer", "to": to, "sdp": OFFER},
            {"type": "answer", "to": to, "sdp": OFFER},
            {"type": "candidate", "to": to, "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host",
                                                          "sdpMid": "0", "sdpMLineIndex": 0}},
            {"type": "candidate", "to": to, "candidate": None},
            {"type": "media-state", "audio": True, "video": False, "screen": False},
            {"type": "ping", "last_seq": 0},
        ])

    def mutated(self) -> dict:
        r = self.random
        frame = self.valid()
        for _ in range(r.randrange(1, 4)):
            key = r.choice(list(frame) + ["type", "to", "sdp", "candidate", "last_seq", "audio", "extra"])
            action = r.randrange(4)
            if action == 0:
                frame.pop(key, None)
            elif action == 1:
                frame[key] = self.value()
            elif action == 2:
                frame["type"] = r.choice(TYPES)
            elif isinstance(frame.get("candidate"), dict):
                frame["candidate"][r.choice(["candidate", "sdpMid", "sdpMLineIndex", "usernameFragment"])] = (
                    self.value())
        return frame

    def case(self) -> tuple[str, str | bytes]:
        """One frame and what it is: 'bad' must get an error; 'any' (a mutation that may stay valid) may not."""
        r = self.random
        pick = r.randrange(12)
        if pick <= 1:
            return "any", json.dumps(self.mutated())
        if pick == 2:
            return "any", json.dumps(self.value())  # random JSON: a value, or an object without a valid type
        if pick == 3:
            return "bad", r.choice(["null", "5", '"ping"', "[]", "true", "-0.5", '[{"type":"ping"}]'])
        if pick == 4:
            depth = r.choice([100, 1000, 20_000, 30_000, 100_000])
            nested = "[" * depth + "]" * depth
            if r.randrange(2):
                return "bad", nested  # not an object, however deep
            # Inside an otherwise valid frame, an unknown key is ignored: shallow nesting leaves the frame valid.
            framed = f'{{"type":"offer","to":"{self.peer_id}","sdp":"x","x":{nested}}}'
            return ("bad" if depth >= 20_000 else "any"), framed
        if pick == 5:
            return "bad", r.choice(['{"type":"ping","type":"offer"}', '{"type":"offer","type":"nope","to":1}',
                                    '{"type":"ping","last_seq":0,"last_seq":-1}'])
        if pick == 6:
            return "bad", r.choice(['{"type":"ping","last_seq":1e400}', '{"type":"ping","last_seq":-1}',
                                    '{"type":"ping","last_seq":' + "9" * 5000 + "}",
                                    '{"type":"ping","last_seq":9007199254740993}', '{"type":1e999}'])
        if pick == 7:
            return "bad", r.choice(['{"type":"offer","to":"\\ud800","sdp":"x"}',
                                    f'{{"type":"offer","to":"{self.peer_id}","sdp":"\\udc00"}}',
                                    '{"type":"\\ud83d"}', '{"\\udfff":1}'])
        if pick == 8:
            return "bad", r.randbytes(r.randrange(1, 200))
        if pick == 9:
            valid = json.dumps(self.valid())
            return "bad", valid[:r.randrange(1, len(valid))]  # truncated
        if pick == 10:
            return "bad", json.dumps({"type": r.choice(TYPES[5:])})
        return "any", self.text(200)


async def answers_to(sock: Socket, n: int, start: int) -> tuple[list[dict], int]:
    """The frames the server sent in answer to case `n`: those before the error that answers its sentinel."""
    marker = f"sentinel-{n}"
    sentinel = await sock.frame(lambda f: f.get("type") == "error" and marker in f.get("detail", ""), start=start)
    index = sock.frames.index(sentinel, start)
    return sock.frames[start:index], index + 1


async def fuzz(server, room, alice, bob, cases: int, seed: int) -> Counter:
    a = await ticket_socket(server, alice, room)
    b = await ticket_socket(server, bob, room)
    fuzzer = Fuzzer(seed, b.peer_id)
    joined = await a.frame(lambda f: f.get("type") == "peer-joined")
    seen, start = Counter(), a.frames.index(joined) + 1
    try:
        for n in range(cases):
            kind, payload = fuzzer.case()
            await a.ws.send(payload)
            await a.send({"type": f"sentinel-{n}"})
            answers, start = await answers_to(a, n, start)
            errors = [f for f in answers if f["type"] == "error"]
            unexpected = [f for f in answers if f["type"] not in ("error", "pong")]
            assert not unexpected, (payload[:200], unexpected)
            assert all(f["code"] in DOCUMENTED_ERRORS for f in errors), (payload[:200], errors)
            if kind == "bad":
                assert len(errors) == 1, (payload[:200], answers)
            seen.update(f["code"] for f in errors)
            seen["valid" if not errors else "refused"] += 1
            assert a.close_code is None, f"closed with {a.close_code} after {payload[:200]!r}"
        # A valid frame right after all that is relayed as ever.
        await a.send({"type": "offer", "to": b.peer_id, "sdp": OFFER})
        relayed = await b.frame(lambda f: f.get("type") == "offer" and f.get("sdp") == OFFER and "seq" in f)
        assert relayed["from"] == a.peer_id
        assert a.close_code is None and b.close_code is None
    finally:
        await a.close()
        await b.close()
    log = server.log_path.read_text()
    assert not unexpected_tracebacks(log), unexpected_tracebacks(log)[0]
    assert " 1011" not in log
    return seen


async def test_fuzzed_frames_get_documented_errors(server, public_room, alice, bob):
    seen = await fuzz(server, public_room, alice, bob, cases=int(os.environ.get("PARLEY_FUZZ_CASES", 500)), seed=1)
    print(f"\n{server.name}: {dict(seen)}")
    assert seen["refused"] > 0 and seen["valid"] > 0


@pytest.mark.fuzz
async def test_ten_thousand_fuzzed_frames(server, public_room, alice, bob):
    seen = await fuzz(server, public_room, alice, bob, cases=10_000, seed=2)
    print(f"\n{server.name}: {dict(seen)}")


async def test_invalid_utf8_is_refused_with_1007_and_the_leave_recorded(server, public_room, alice, bob):
    ticket = await sync_to_async(tickets.issue_ticket)(user=alice, room=public_room)
    b = await ticket_socket(server, bob, public_room)
    try:
        async with websockets.connect(f"{server.ws_url}/ws/rooms/{public_room.slug}/?ticket={ticket}") as ws:
            peer_id = json.loads(await asyncio.wait_for(ws.recv(), 10))["peer_id"]
            ws.protocol.send_frame(Frame(Opcode.TEXT, b'{"type":"ping","x":"\xff\xfe"}'))
            ws.send_data()
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1007
        left = await b.frame(lambda f: f.get("type") == "peer-left" and f.get("peer_id") == peer_id)
        assert left["reason"] == "disconnected"
        await eventually(lambda: CallParticipant.objects.filter(peer_id=peer_id, left_at__isnull=False).aexists())
    finally:
        await b.close()
