// One RTCPeerConnection to one remote peer, negotiated with the "perfect negotiation" pattern
// (https://w3c.github.io/webrtc-pc/#perfect-negotiation-example) and the protocol's join convention:
// the newcomer (initiator) offers first; the peer already in the call waits for that offer.

export class Peer extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.peerId   the remote peer's id
   * @param {boolean} options.polite  whether this side yields on glare (assigned by the server)
   * @param {boolean} options.initiator  true when we joined after them: we send the first offer
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
    this.local = local;
    this.sendFrame = send;
    this.remoteStream = new MediaStream();
    this.queue = Promise.resolve();
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.settingRemoteAnswer = false;
    this.waitForOffer = !initiator;
    this.closed = false;

    const pc = new RTCPeerConnection({ iceServers: iceServers || [] });
    this.pc = pc;
    // A pre-agreed channel (same id on both sides): no in-band announcement, nothing to wait for.
    this.chat = pc.createDataChannel("chat", { negotiated: true, id: 0 });
    this.chat.addEventListener("message", (event) => this.onChatMessage(event.data));

    if (initiator) {
      this.audio = pc.addTransceiver(local.audioTrack || "audio", { direction: "sendrecv", streams: [local.stream] });
      this.video = pc.addTransceiver(local.videoTrack || "video", { direction: "sendrecv", streams: [local.stream] });
    }

    pc.addEventListener("track", ({ track }) => {
      for (const old of this.remoteStream.getTracks().filter((t) => t.kind === track.kind)) {
        this.remoteStream.removeTrack(old);
      }
      this.remoteStream.addTrack(track);
      this.emit("track", { track });
    });
    pc.addEventListener("negotiationneeded", () => this.negotiate());
    pc.addEventListener("icecandidate", ({ candidate }) => {
      this.sendFrame({ type: "candidate", to: this.peerId, candidate: candidate ? candidate.toJSON() : null });
    });
    pc.addEventListener("connectionstatechange", () => this.emit("state", { state: pc.connectionState }));
    pc.addEventListener("iceconnectionstatechange", () => {
      if (pc.iceConnectionState === "failed") this.restartIce("ICE failed");
    });
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
    if (this.waitForOffer || this.closed) return;
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      this.sendFrame({ type: this.pc.localDescription.type, to: this.peerId, sdp: this.pc.localDescription.sdp });
    } catch (error) {
      console.error(`peer ${this.peerId}: offer failed`, error);
    } finally {
      this.makingOffer = false;
    }
  }

  /** An offer or answer from the remote peer. */
  async handleDescription(type, sdp) {
    const pc = this.pc;
    const readyForOffer = !this.makingOffer && (pc.signalingState === "stable" || this.settingRemoteAnswer);
    const collision = type === "offer" && !readyForOffer;
    this.ignoreOffer = !this.polite && collision;
    if (this.ignoreOffer) {
      this.emit("glare", { yielded: false });
      return;
    }
    if (collision) this.emit("glare", { yielded: true });
    this.settingRemoteAnswer = type === "answer";
    await pc.setRemoteDescription({ type, sdp }); // rolls our own offer back on glare (polite side)
    this.settingRemoteAnswer = false;
    if (type !== "offer") return;
    if (this.waitForOffer) this.attachLocalTracks();
    await pc.setLocalDescription();
    this.sendFrame({ type: "answer", to: this.peerId, sdp: pc.localDescription.sdp });
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
      if (!this.ignoreOffer) throw error; // candidates of an offer we ignored are expected to fail
    }
  }

  /** Swap what we send without renegotiating (camera on/off, screen share, device change). */
  async replaceTrack(kind, track) {
    const transceiver = kind === "audio" ? this.audio : this.video;
    if (transceiver) await transceiver.sender.replaceTrack(track);
  }

  restartIce(why) {
    if (this.closed) return;
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
    try { this.chat.close(); } catch { /* already closed */ }
    this.pc.close();
    for (const track of this.remoteStream.getTracks()) track.stop();
  }
}
