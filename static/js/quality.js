// Connection quality per peer, from getStats every few seconds: packet loss and round-trip time over the "poor"
// thresholds, or video that stopped arriving (frozen) while the peer says its camera is on. Tiles show it as
// "Connection unstable"; the status line says when every connection is.

import { QualityReporter } from "./stats.js";

export const POOR_LOSS = 0.08;      // over 8 % of the packets of the last interval lost
export const POOR_RTT_S = 0.5;      // over 500 ms round trip
const EVERY_MS = 2000;

function inbound(stats, kind) {
  for (const report of stats.values()) {
    if (report.type === "inbound-rtp" && (report.kind || report.mediaType) === kind) return report;
  }
  return null;
}

function roundTrip(stats) {
  for (const report of stats.values()) {
    if (report.type === "candidate-pair" && report.nominated && report.state === "succeeded"
        && typeof report.currentRoundTripTime === "number") return report.currentRoundTripTime;
  }
  return null;
}

export class QualityMonitor {
  /** @param {() => Iterable} peers  @param {(peer, quality: string, detail: string) => void} onChange
   *  @param {(frame) => void} send  where the call-quality reports (stats.js) go: the signaling socket */
  constructor(peers, onChange, send = null) {
    this.peers = peers;
    this.onChange = onChange;
    this.reporter = send ? new QualityReporter(peers, send) : null;
    this.last = new WeakMap(); // peer -> {received, lost, frames}
    this.streaks = new WeakMap(); // peer -> bad samples in a row
    this.timer = null;
  }

  start() {
    this.stop();
    this.timer = setInterval(() => this.sample().catch((error) => console.info("stats:", error.message)), EVERY_MS);
    this.reporter?.start();
  }

  stop() { clearInterval(this.timer); this.timer = null; this.reporter?.stop(); }

  async sample() {
    for (const peer of this.peers()) {
      if (peer.connectionState !== "connected") { this.last.delete(peer); continue; }
      const stats = await peer.pc.getStats();
      const video = inbound(stats, "video");
      const audio = inbound(stats, "audio");
      const now = {
        received: (video ? video.packetsReceived || 0 : 0) + (audio ? audio.packetsReceived || 0 : 0),
        lost: (video ? video.packetsLost || 0 : 0) + (audio ? audio.packetsLost || 0 : 0),
        frames: video ? video.framesDecoded || 0 : 0,
      };
      const before = this.last.get(peer);
      this.last.set(peer, now);
      if (!before) continue;
      const received = now.received - before.received;
      const lost = Math.max(now.lost - before.lost, 0);
      const loss = received + lost > 0 ? lost / (received + lost) : 0;
      const rtt = roundTrip(stats);
      const wantsVideo = !peer.media || peer.media.video || peer.media.screen;
      let quality = "good";
      let detail = "";
      if (peer.forcedQuality) [quality, detail] = [peer.forcedQuality, "forced"];
      else if (wantsVideo && video && before.frames > 0 && now.frames === before.frames) [quality, detail] = ["frozen", "no video frames"];
      else if (received === 0 && before.received > 0 && (wantsVideo || !peer.media || peer.media.audio)) {
        [quality, detail] = ["frozen", "nothing received"];
      }
      else if (loss > POOR_LOSS) [quality, detail] = ["poor", `${Math.round(loss * 100)} % lost`];
      else if (rtt !== null && rtt > POOR_RTT_S) [quality, detail] = ["poor", `${Math.round(rtt * 1000)} ms round trip`];
      // Two bad samples in a row before a tile says "unstable" (a busy moment is not a bad connection); one
      // good sample clears it.
      const streak = quality === "good" ? 0 : (this.streaks.get(peer) || 0) + 1;
      this.streaks.set(peer, streak);
      if (quality === "good" || streak >= 2) this.onChange(peer, quality, detail);
    }
  }
}
