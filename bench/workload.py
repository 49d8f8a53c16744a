"""The frames one bench pair exchanges, and the client-side rate limit they are sent under.

Every relayed frame carries a sequence number and a send timestamp inside its SDP or candidate string
(`a=x-seq:` / `a=x-ts:` lines, ` x-seq ` / ` x-ts ` extension attributes). The server never reads SDP, so the
frames stay valid protocol messages with no extra top-level keys, and the receiver can measure latency and
spot lost or duplicated frames.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass

CANDIDATES_PER_TURN = 10
# One turn is an offer (or answer) followed by its trickled candidates.
FRAMES_PER_TURN = 1 + CANDIDATES_PER_TURN

_FINGERPRINT = "6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CF:CC:87:32:BE:DD:8B:3B:4E:6C:0C:6E:18:64:2D:0C:5F:29:DF:0A"
_MEDIA = (
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:{ufrag}\r\n"
    "a=ice-pwd:{pwd}\r\n"
    "a=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 {fingerprint}\r\n"
    "a=setup:{setup}\r\n"
    "a=mid:0\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
    "a=sendrecv\r\n"
    "a=msid:{stream} {stream}-audio\r\n"
    "a=rtcp-mux\r\n"
    "a=rtpmap:111 opus/48000/2\r\n"
    "a=rtcp-fb:111 transport-cc\r\n"
    "a=fmtp:111 minptime=10;useinbandfec=1\r\n"
    "a=rtpmap:63 red/48000/2\r\n"
    "a=fmtp:63 111/111\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:13 CN/8000\r\n"
    "a=rtpmap:110 telephone-event/48000\r\n"
    "a=rtpmap:126 telephone-event/8000\r\n"
    "a=ssrc:1001 cname:{stream}\r\n"
    "a=ssrc:1001 msid:{stream} {stream}-audio\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 108 109 98 99 100\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:{ufrag}\r\n"
    "a=ice-pwd:{pwd}\r\n"
    "a=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 {fingerprint}\r\n"
    "a=setup:{setup}\r\n"
    "a=mid:1\r\n"
    "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset\r\n"
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"
    "a=extmap:13 urn:3gpp:video-orientation\r\n"
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
    "a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay\r\n"
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
    "a=sendrecv\r\n"
    "a=msid:{stream} {stream}-video\r\n"
    "a=rtcp-mux\r\n"
    "a=rtcp-rsize\r\n"
    "a=rtpmap:96 VP8/90000\r\n"
    "a=rtcp-fb:96 goog-remb\r\n"
    "a=rtcp-fb:96 transport-cc\r\n"
    "a=rtcp-fb:96 ccm fir\r\n"
    "a=rtcp-fb:96 nack\r\n"
    "a=rtcp-fb:96 nack pli\r\n"
    "a=rtpmap:97 rtx/90000\r\n"
    "a=fmtp:97 apt=96\r\n"
    "a=rtpmap:102 H264/90000\r\n"
    "a=rtcp-fb:102 goog-remb\r\n"
    "a=rtcp-fb:102 transport-cc\r\n"
    "a=rtcp-fb:102 ccm fir\r\n"
    "a=rtcp-fb:102 nack\r\n"
    "a=rtcp-fb:102 nack pli\r\n"
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n"
    "a=rtpmap:103 rtx/90000\r\n"
    "a=fmtp:103 apt=102\r\n"
    "a=rtpmap:108 VP9/90000\r\n"
    "a=fmtp:108 profile-id=0\r\n"
    "a=rtpmap:109 rtx/90000\r\n"
    "a=fmtp:109 apt=108\r\n"
    "a=rtpmap:98 red/90000\r\n"
    "a=rtpmap:99 rtx/90000\r\n"
    "a=fmtp:99 apt=98\r\n"
    "a=rtpmap:100 ulpfec/90000\r\n"
    "a=ssrc-group:FID 2001 2002\r\n"
    "a=ssrc:2001 cname:{stream}\r\n"
    "a=ssrc:2001 msid:{stream} {stream}-video\r\n"
    "a=ssrc:2002 cname:{stream}\r\n"
    "a=ssrc:2002 msid:{stream} {stream}-video\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:{ufrag}\r\n"
    "a=ice-pwd:{pwd}\r\n"
    "a=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 {fingerprint}\r\n"
    "a=setup:{setup}\r\n"
    "a=mid:2\r\n"
    "a=sctp-port:5000\r\n"
    "a=max-message-size:262144\r\n"
)

_SDP_MARK = re.compile(r"a=x-seq:(\d+)\r\na=x-ts:(\d+)\r\n")
_CANDIDATE_MARK = re.compile(r" x-seq (\d+) x-ts (\d+)$")


def _json_body(text: str) -> str:
    """`text` escaped for use inside a JSON string literal, without the quotes."""
    return json.dumps(text)[1:-1]


class FrameWriter:
    """Builds one peer's relayed frames to one target as ready-to-send JSON text.

    The JSON is assembled from pre-escaped pieces: only the digits of the sequence number and timestamp change
    from frame to frame, so the loader spends its CPU on the wire rather than on `json.dumps` of 3 KB strings.
    """

    def __init__(self, *, to: str, ufrag: str, offerer: bool):
        sdp_type = "offer" if offerer else "answer"
        media = _MEDIA.format(ufrag=ufrag, pwd=f"{ufrag}pwd0123456789abcdef", stream=f"stream-{ufrag}",
                              fingerprint=_FINGERPRINT, setup="actpass" if offerer else "active")
        session = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        bundle = "a=group:BUNDLE 0 1 2\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n"
        self._sdp_head = f'{{"type": "{sdp_type}", "to": "{to}", "sdp": "{_json_body(session)}a=x-seq:'
        self._sdp_tail = f'{_json_body(bundle + media)}"}}'
        self._candidate_head = f'{{"type": "candidate", "to": "{to}", "candidate": {{"candidate": "'
        self._candidate_tail = f'", "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "{ufrag}"}}}}'
        self._ufrag = ufrag

    def description(self, seq: int) -> str:
        """The offer or answer carrying `seq`, stamped now."""
        return f"{self._sdp_head}{seq}\\r\\na=x-ts:{time.perf_counter_ns()}\\r\\n{self._sdp_tail}"

    def candidate(self, seq: int, index: int) -> str:
        """The `index`-th host candidate of a turn, carrying `seq`, stamped now."""
        line = (f"candidate:{842163049 + index} 1 udp 2122260223 127.0.0.1 {50000 + index} typ host "
                f"generation 0 ufrag {self._ufrag} network-id 1 x-seq {seq} x-ts {time.perf_counter_ns()}")
        return f"{self._candidate_head}{line}{self._candidate_tail}"


@dataclass(frozen=True, slots=True)
class Mark:
    """The sequence number and send time (perf_counter ns, same process) found in a relayed frame."""

    seq: int
    sent_ns: int

    @property
    def turn(self) -> int:
        return self.seq // FRAMES_PER_TURN


def read_mark(message: dict[str, object]) -> Mark | None:
    """The mark of a relayed offer, answer or candidate; None when it carries none."""
    if message["type"] == "candidate":
        candidate = message.get("candidate")
        text = candidate.get("candidate") if isinstance(candidate, dict) else None
        found = _CANDIDATE_MARK.search(text) if isinstance(text, str) else None
    else:
        sdp = message.get("sdp")
        found = _SDP_MARK.search(sdp) if isinstance(sdp, str) else None
    return Mark(int(found[1]), int(found[2])) if found else None


def turn_seq(turn: int, index: int) -> int:
    """Sequence number of frame `index` (0 = the description) in turn `turn`."""
    return turn * FRAMES_PER_TURN + index


class TokenBucket:
    """Client-side copy of the server's per-connection limit, so the loader stays within it.

    Tokens may go negative: the caller then sleeps off the debt, which keeps the long-run rate exact.
    """

    def __init__(self, *, rate: float, burst: float):
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._stamp = time.monotonic()

    async def take(self) -> None:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate) - 1
        self._stamp = now
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self._rate)
