// One remote peer and our RTCPeerConnection to it, negotiated with the "perfect negotiation" pattern
// (https://w3c.github.io/webrtc-pc/#perfect-negotiation-example) and the protocol's join convention:
// the newcomer (initiator) offers first; the peer already in the call waits for that offer.
//
// The peer outlives its RTCPeerConnection: when the other side starts over with a new one (its page was reloaded
// and resumed the same participation), the SDP session id of its descriptions changes; ours cannot continue with
// that, so it is replaced by a fresh one, keeping the peer, its tile and its media element.

const REBUILDS_ALLOWED = 4; // per REBUILD_WINDOW_MS: never loop if two sides keep disagreeing
const REBUILD_WINDOW_MS = 20000;
// An offer unanswered for this long was lost, or its answer was (frames sent to a killed server process before it
// was known dead): it is taken back and made again, else both sides could wait for each other for ever.
const OFFER_TIMEOUT_MS = 8000;

/** The session id of an SDP's o= line: one per RTCPeerConnection, the same in all its descriptions. */
export function sessionOf(sdp) {
  const match = /^o=\S+ (\d+) /m.exec(sdp || "");
  return match ? match[1] : null;
}

export class Peer extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.peerId   the remote peer's id
   * @param {boolean} options.polite  whether this side yields on glare (assigned by the server)
   * @param {boolean} options.initiator  true when we joined after them (or start over): we send the first offer
   * @param {RTCIceServer[]} options.iceServers
   * @param {{audioTrack: MediaStreamTrack|null, videoTrack: MediaStreamTrack|null, stream: MediaStream}} options.local
   * @param {(frame: object) => void} options.send  sends a signaling frame (to/from are handled here)
   */
  constructor({ peerId, user, polite, initiator, media, iceServers, local, send }) {
    super();
    this.peerId = peerId;
    this.user = user || null;
    this.polite = Boolean(polite);
    this.media = media || null;
    this.presence = "connected"; // "reconnecting" while the server says its signaling is suspended
    this.iceServers = iceServers || [];
    this.local = local;
    this.sendFrame = send;
    this.remoteStream = new MediaStream();
    this.queue = Promise.resolve();
    this.closed = false;
    this.rebuilds = [];
    // For the call-quality reports (stats.js): how long the first connection took, ICE restarts and failures.
    this.telemetry = { since: performance.now(), connectMs: null, restarts: 0, failures: 0 };
    this.setUp(initiator);
  }

  /** A new RTCPeerConnection (the first, or one replacing the last): nothing negotiated yet. */
  setUp(initiator) {
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.settingRemoteAnswer = false;
    this.waitForOffer = !initiator;
    this.remoteSession = null;
    this.audio = null;
    this.video = null;

    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    const mine = () => this.pc === pc; // events of a replaced connection are not ours to act on
    // A pre-agreed channel (same id on both sides): no in-band announcement, nothing to wait for.
    this.chat = pc.createDataChannel("chat", { negotiated: true, id: 0 });
    this.chat.addEventListener("message", (event) => mine() && this.onChatMessage(event.data));

    if (initiator) {
      const local = this.local;
      this.audio = pc.addTransceiver(local.audioTrack || "audio", { direction: "sendrecv", streams: [local.stream] });
      this.video = pc.addTransceiver(local.videoTrack || "video", { direction: "sendrecv", streams: [local.stream] });
    }

    pc.addEventListener("track", ({ track }) => {
      if (!mine()) return;
      for (const old of this.remoteStream.getTracks().filter((t) => t.kind === track.kind)) {
        this.remoteStream.removeTrack(old);
      }
      this.remoteStream.addTrack(track);
      this.emit("track", { track });
    });
    pc.addEventListener("negotiationneeded", () => mine() && this.negotiate());
    pc.addEventListener("icecandidate", ({ candidate }) => {
      if (mine()) this.sendFrame({ type: "candidate", to: this.peerId, candidate: candidate ? candidate.toJSON() : null });
    });
    pc.addEventListener("connectionstatechange", () => {
      if (!mine()) return;
      const { telemetry } = this;
      if (pc.connectionState === "connected" && telemetry.connectMs === null) {
        telemetry.connectMs = Math.round(performance.now() - telemetry.since);
      }
      if (pc.connectionState === "failed") telemetry.failures += 1;
      this.emit("state", { state: pc.connectionState });
    });
    pc.addEventListener("signalingstatechange", () => mine() && this.emit("signaling", { state: pc.signalingState }));
    pc.addEventListener("iceconnectionstatechange", () => {
      if (mine() && pc.iceConnectionState === "failed") this.restartIce("ICE failed");
    });
  }

  /** Replace the RTCPeerConnection; false when that happened too often lately (the caller goes on without). */
  rebuild({ initiator, why }) {
    const now = Date.now();
    this.rebuilds = this.rebuilds.filter((at) => now - at < REBUILD_WINDOW_MS);
    if (this.closed || this.rebuilds.length >= REBUILDS_ALLOWED) return false;
    this.rebuilds.push(now);
    const old = this.pc;
    const oldChat = this.chat;
    this.setUp(initiator);
    try { oldChat.close(); } catch { /* already closed */ }
    old.close();
    this.emit("rebuilt", { why });
    this.emit("state", { state: this.pc.connectionState });
    this.emit("signaling", { state: this.pc.signalingState });
    return true;
  }

  get connectionState() { return this.pc.connectionState; }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  /** Run signaling work one item at a time, so a candidate never races its description. */
  enqueue(work) {
    this.queue = this.queue.then(work).catch((error) => {
      if (!this.closed) console.error(`peer ${this.peerId}:`, error);
    });
    return this.queue;
  }

  async negotiate() {
    const pc = this.pc;
    if (this.waitForOffer || this.closed) return;
    try {
      this.makingOffer = true;
      await pc.setLocalDescription();
      if (pc !== this.pc) return;
      this.sendFrame({ type: pc.localDescription.type, to: this.peerId, sdp: pc.localDescription.sdp });
      this.awaitAnswer(pc);
    } catch (error) {
      if (pc === this.pc) console.error(`peer ${this.peerId}: offer failed`, error);
    } finally {
      if (pc === this.pc) this.makingOffer = false;
    }
  }

  /** If the offer just sent is still unanswered after OFFER_TIMEOUT_MS, roll it back and offer again. */
  awaitAnswer(pc) {
    const offer = this.offersMade = (this.offersMade || 0) + 1;
    clearTimeout(this.offerTimer);
    this.offerTimer = setTimeout(() => this.enqueue(async () => {
      if (pc !== this.pc || this.closed || pc.signalingState !== "have-local-offer") return;
      if (offer !== this.offersMade) return; // a later offer has its own timer
      await pc.setLocalDescription({ type: "rollback" });
      this.restartIce("our offer was not answered");
    }), OFFER_TIMEOUT_MS);
  }

  /** An offer or answer from the remote peer. */
  async handleDescription(type, sdp) {
    const session = sessionOf(sdp);
    if (this.remoteSession && session && session !== this.remoteSession) {
      // A new RTCPeerConnection on their side. Its offer we answer from a new connection of ours; its answer (it
      // took an offer of ours meant for its predecessor) we cannot use: we start over and offer afresh.
      const rebuilt = this.rebuild(type === "offer"
        ? { initiator: false, why: "they started a new connection" }
        : { initiator: true, why: "they answered from a new connection" });
      if (rebuilt && type === "answer") return;
    }
    const pc = this.pc;
    if (type === "answer" && pc.signalingState !== "have-local-offer") {
      console.info(`peer ${this.peerId}: ignoring an answer in state ${pc.signalingState}`);
      return;
    }
    const readyForOffer = !this.makingOffer && (pc.signalingState === "stable" || this.settingRemoteAnswer);
    const collision = type === "offer" && !readyForOffer;
    this.ignoreOffer = !this.polite && collision;
    if (this.ignoreOffer) {
      this.emit("glare", { yielded: false });
      return;
    }
    if (collision) this.emit("glare", { yielded: true });
    this.settingRemoteAnswer = type === "answer";
    try {
      await pc.setRemoteDescription({ type, sdp }); // rolls our own offer back on glare (polite side)
    } catch (error) {
      // An offer our connection cannot take (say, from a new connection whose session id we could not compare):
      // answer it from a new one.
      if (type !== "offer" || !this.rebuild({ initiator: false, why: "an offer our connection refused" })) throw error;
      await this.pc.setRemoteDescription({ type, sdp });
    } finally {
      this.settingRemoteAnswer = false;
    }
    this.remoteSession = session;
    if (type !== "offer") return;
    const answering = this.pc;
    if (this.waitForOffer) this.attachLocalTracks();
    await answering.setLocalDescription();
    if (answering === this.pc) this.sendFrame({ type: "answer", to: this.peerId, sdp: answering.localDescription.sdp });
  }

  /** Answering the first offer: send our media on the transceivers the offer created. */
  attachLocalTracks() {
    this.waitForOffer = false;
    for (const transceiver of this.pc.getTransceivers()) {
      const kind = transceiver.receiver.track.kind;
      if (kind === "audio" && !this.audio) this.audio = transceiver;
      else if (kind === "video" && !this.video) this.video = transceiver;
      else continue;
      transceiver.direction = "sendrecv";
      transceiver.sender.setStreams?.(this.local.stream);
      const track = kind === "audio" ? this.local.audioTrack : this.local.videoTrack;
      if (track) transceiver.sender.replaceTrack(track);
    }
  }

  async handleCandidate(candidate) {
    if (!candidate || !candidate.candidate) return; // end of candidates
    try {
      await this.pc.addIceCandidate(candidate);
    } catch (error) {
      // Expected to fail: candidates of an offer we ignored, and candidates meant for a connection that has been
      // replaced since (theirs or ours), which arrive before any description of the new one or with old credentials.
      if (this.ignoreOffer || !this.pc.remoteDescription || !this.matchesRemote(candidate)) return;
      throw error;
    }
  }

  matchesRemote(candidate) {
    if (!candidate.usernameFragment) return true;
    return this.pc.remoteDescription.sdp.includes(`a=ice-ufrag:${candidate.usernameFragment}`);
  }

  /** Swap what we send without renegotiating (camera on/off, screen share, device change). */
  async replaceTrack(kind, track) {
    const transceiver = kind === "audio" ? this.audio : this.video;
    if (transceiver) await transceiver.sender.replaceTrack(track);
  }

  restartIce(why) {
    if (this.closed) return;
    this.telemetry.restarts += 1;
    this.emit("ice-restart", { why });
    this.pc.restartIce(); // fires negotiationneeded: an offer with fresh ICE credentials
  }

  sendChat(message) {
    if (this.chat.readyState !== "open") return false;
    this.chat.send(JSON.stringify(message));
    return true;
  }

  onChatMessage(data) {
    let message;
    try { message = JSON.parse(data); } catch { message = { text: String(data) }; }
    if (message && typeof message.text === "string") this.emit("chat", { text: message.text.slice(0, 2000) });
  }

  /** The remote audio level, 0..1, from the receiver's statistics (drives the speaking indicator). */
  async audioLevel() {
    if (!this.audio || this.closed) return 0;
    const stats = await this.audio.receiver.getStats();
    for (const report of stats.values()) {
      if (report.type === "inbound-rtp" && typeof report.audioLevel === "number") return report.audioLevel;
    }
    return 0;
  }

  close() {
    this.closed = true;
    clearTimeout(this.offerTimer);
    try { this.chat.close(); } catch { /* already closed */ }
    this.pc.close();
    for (const track of this.remoteStream.getTracks()) track.stop();
  }
}
