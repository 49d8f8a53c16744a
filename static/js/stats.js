// Call-quality telemetry (docs/signaling.md, the `stats` frame): every 10 s, for each remote peer, what
// RTCPeerConnection.getStats() says of our connection to it, summarised into one small frame. The server folds the
// reports into the call's quality record; nothing of it goes to the other peers.

export const STATS_INTERVAL_MS = 10000;
const LOG_SIZE = 20;
const MAX_MS = 60000; // the frame's bound for rtt_ms and jitter_ms
const MAX_CONNECT_MS = 3600000; // and for connect_ms // the last frames sent with the raw reports they came from (tests, and the console)

const round = (value, places = 3) => (typeof value === "number" && Number.isFinite(value)
  ? Math.round(value * 10 ** places) / 10 ** places : null);
const count = (value) => (typeof value === "number" && Number.isFinite(value) ? Math.max(0, Math.round(value)) : null);
const ms = (seconds) => (typeof seconds === "number" ? round(seconds * 1000) : null);

/** The candidate pair in use: the transport's selected one, else a nominated succeeded one (as older browsers say). */
function selectedPair(stats, byId) {
  for (const report of stats) {
    if (report.type === "transport" && report.selectedCandidatePairId) {
      const pair = byId.get(report.selectedCandidatePairId);
      if (pair) return pair;
    }
  }
  return stats.find((r) => r.type === "candidate-pair" && (r.selected || (r.nominated && r.state === "succeeded"))) || null;
}

function sum(reports, key) {
  let total = null;
  for (const report of reports) {
    if (typeof report[key] === "number") total = (total || 0) + report[key];
  }
  return total;
}

/**
 * One `stats` frame's values from one getStats() result (`stats`: its reports, as plain objects) and the previous
 * result's byte counters (`previous`, for the bitrates; null the first time). Returns {fields, counters}.
 */
export function summarise(stats, previous) {
  const byId = new Map(stats.map((report) => [report.id, report]));
  const inbound = stats.filter((r) => r.type === "inbound-rtp");
  const outbound = stats.filter((r) => r.type === "outbound-rtp");
  const kindOf = (r) => r.kind || r.mediaType;
  const audioIn = inbound.filter((r) => kindOf(r) === "audio");
  const videoIn = inbound.filter((r) => kindOf(r) === "video");
  const fields = {};

  const pair = selectedPair(stats, byId);
  const local = pair ? byId.get(pair.localCandidateId) : null;
  if (local) {
    fields.candidate_type = local.candidateType || null;
    // Through a TURN server, the hop to it (udp, tcp or tls) is what the media travels over.
    fields.protocol = (local.candidateType === "relay" && local.relayProtocol) || local.protocol || null;
  }
  // RTT: the ICE pair's STUN round trip, else RTCP's (remote-inbound-rtp, which is all some stacks report).
  let rtt = pair ? ms(pair.currentRoundTripTime) : null;
  if (rtt !== null) rtt = Math.min(rtt, MAX_MS);
  if (rtt === null) {
    const remote = stats.filter((r) => r.type === "remote-inbound-rtp" && typeof r.roundTripTime === "number");
    if (remote.length) rtt = Math.min(ms(Math.max(...remote.map((r) => r.roundTripTime))), MAX_MS);
  }
  fields.rtt_ms = rtt;
  const jitterFrom = audioIn.length ? audioIn : videoIn;
  const jitters = jitterFrom.filter((r) => typeof r.jitter === "number").map((r) => r.jitter);
  // Seconds, by the standard; capped at the frame's bound (a stack reporting RTP clock units, as aiortc does,
  // would otherwise have its reports refused).
  fields.jitter_ms = jitters.length ? Math.min(ms(Math.max(...jitters)), MAX_MS) : null;
  fields.audio_packets_received = count(sum(audioIn, "packetsReceived"));
  fields.audio_packets_lost = count(sum(audioIn, "packetsLost")); // may be negative (duplicates): none lost
  fields.video_packets_received = count(sum(videoIn, "packetsReceived"));
  fields.video_packets_lost = count(sum(videoIn, "packetsLost"));

  const counters = { at: null, bytesIn: sum(inbound, "bytesReceived"), bytesOut: sum(outbound, "bytesSent") };
  const stamps = [...inbound, ...outbound].map((r) => r.timestamp).filter((t) => typeof t === "number");
  counters.at = stamps.length ? Math.max(...stamps) : null;
  fields.bitrate_in_kbps = null;
  fields.bitrate_out_kbps = null;
  if (previous && previous.at !== null && counters.at !== null && counters.at > previous.at) {
    const seconds = (counters.at - previous.at) / 1000;
    const rate = (now, before) => (now !== null && before !== null && now >= before
      ? round(((now - before) * 8) / 1000 / seconds) : null);
    fields.bitrate_in_kbps = rate(counters.bytesIn, previous.bytesIn);
    fields.bitrate_out_kbps = rate(counters.bytesOut, previous.bytesOut);
  }

  const video = videoIn.find((r) => typeof r.framesPerSecond === "number" || typeof r.frameWidth === "number")
    || videoIn[0];
  if (video) {
    fields.fps = round(video.framesPerSecond, 2);
    fields.width = count(video.frameWidth);
    fields.height = count(video.frameHeight);
    fields.freeze_count = count(video.freezeCount);
    fields.freeze_seconds = round(video.totalFreezesDuration);
  }
  for (const key of Object.keys(fields)) if (fields[key] === null) delete fields[key];
  return { fields, counters };
}

/** Watches the peers of the call page and reports on each of them every STATS_INTERVAL_MS. */
/** Sends a `stats` frame per connected remote peer every STATS_INTERVAL_MS. Peers come from `peers()` (as for
 *  the tiles' QualityMonitor, quality.js, which runs this); their connect time and ICE restarts and failures are
 *  on each peer (`peer.telemetry`, peer.js). */
export class QualityReporter {
  constructor(peers, send) {
    this.peers = peers;
    this.send = send;
    this.counters = new Map(); // peer id -> the cumulative counters of its last report
    this.log = [];
    this.timer = null;
  }

  start() {
    if (this.timer === null) this.timer = setInterval(() => this.sampleAll(), STATS_INTERVAL_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  /** summarise(), for tests that feed another stack's getStats() output through it. */
  summarise(stats, previous) { return summarise(stats, previous); }

  /** Report on every connected peer now; resolves to the frames sent (the test hook). */
  async sampleAll() {
    const frames = [];
    const present = new Set();
    for (const peer of [...this.peers()]) {
      present.add(peer.peerId);
      if (peer.closed || peer.connectionState !== "connected") continue;
      let stats;
      try {
        stats = [...(await peer.pc.getStats()).values()].map((report) => ({ ...report }));
      } catch {
        continue; // closed meanwhile
      }
      frames.push(this.report(peer, stats));
    }
    for (const peerId of [...this.counters.keys()]) if (!present.has(peerId)) this.counters.delete(peerId);
    return frames;
  }

  /** The frame for one getStats() result of one peer's connection, sent. */
  report(peer, stats) {
    const { fields, counters } = summarise(stats, this.counters.get(peer.peerId) || null);
    this.counters.set(peer.peerId, counters);
    const { connectMs, restarts, failures } = peer.telemetry;
    const frame = { type: "stats", peer: peer.peerId, ...fields, ice_restarts: restarts, ice_failures: failures };
    if (connectMs !== null) frame.connect_ms = Math.min(connectMs, MAX_CONNECT_MS);
    this.send(frame);
    this.log.push({ peer: peer.peerId, stats, frame });
    if (this.log.length > LOG_SIZE) this.log.shift();
    return frame;
  }
}
