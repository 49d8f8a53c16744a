// The call page's SFU mode (docs/sfu.md): media goes through Janus, which Parley's server speaks to for us; the
// page only ever talks to the signaling socket, with frames addressed to (or from) "sfu".
//
// Two RTCPeerConnections: the publisher (send only: our camera and microphone; we are its only offerer) and the
// subscriber (receive only: everyone else's streams; the server is its only offerer, each of its offers says in
// `streams` whose stream each m-line carries). No perfect negotiation is needed: each side of each connection has
// one role. Every remote person is a RemoteFeed, which looks like a mesh Peer (peer.js) to the tiles, the quality
// monitor and the page, so mute, camera, leave, kick and peer-left work as in a mesh.

export const SFU = "sfu";
// A publisher offer unanswered for this long was lost (the socket dropped): taken back and made again.
const OFFER_TIMEOUT_MS = 8000;

/** Our two connections to the SFU. Events: "state" (the subscriber's connection state changed), "streams" (a
 *  new subscriber offer was answered: which receiver carries whose stream may have changed). */
export class SfuSession extends EventTarget {
  /**
   * @param {object} options
   * @param {RTCIceServer[]} options.iceServers
   * @param {{audioTrack, videoTrack, stream: MediaStream}} options.local  our media (media.js)
   * @param {(frame: object) => void} options.send  sends a signaling frame
   */
  constructor({ iceServers, local, send }) {
    super();
    this.iceServers = iceServers || [];
    this.local = local;
    this.sendFrame = send;
    this.queue = Promise.resolve();
    this.closed = false;
    this.publisher = null;
    this.subscriber = null;
    this.streams = [];       // the latest offer's [{peer_id, mid, kind}]
    this.receivers = new Map(); // peer id -> {audio: RTCRtpReceiver|null, video: RTCRtpReceiver|null}
    this.telemetry = { since: performance.now(), connectMs: null, restarts: 0, failures: 0 };
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  /** Signaling work one item at a time, so that a candidate never races its description. */
  enqueue(work) {
    this.queue = this.queue.then(work).catch((error) => { if (!this.closed) console.error("sfu:", error); });
    return this.queue;
  }

  /** Publish: the publisher's first offer goes out as soon as its transceivers exist (negotiationneeded). */
  start() {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.publisher = pc;
    const mine = () => this.publisher === pc && !this.closed;
    const { local } = this;
    this.audio = pc.addTransceiver(local.audioTrack || "audio", { direction: "sendonly", streams: [local.stream] });
    this.video = pc.addTransceiver(local.videoTrack || "video", { direction: "sendonly", streams: [local.stream] });
    pc.addEventListener("negotiationneeded", () => mine() && this.enqueue(() => this.offer(pc)));
    pc.addEventListener("icecandidate", ({ candidate }) => {
      if (mine()) this.sendFrame({ type: "candidate", to: SFU, candidate: candidate ? candidate.toJSON() : null });
    });
    pc.addEventListener("iceconnectionstatechange", () => {
      if (mine() && pc.iceConnectionState === "failed") this.restartIce("ICE to the SFU failed (publisher)");
    });
    pc.addEventListener("connectionstatechange", () => mine() && this.emit("publisher-state", { state: pc.connectionState }));
  }

  async offer(pc) {
    if (pc !== this.publisher || this.closed || pc.signalingState !== "stable") return;
    await pc.setLocalDescription();
    this.sendFrame({ type: "offer", to: SFU, sdp: pc.localDescription.sdp });
    const offered = this.offers = (this.offers || 0) + 1;
    clearTimeout(this.offerTimer);
    this.offerTimer = setTimeout(() => this.enqueue(async () => {
      if (pc !== this.publisher || this.closed || offered !== this.offers || pc.signalingState !== "have-local-offer") return;
      await pc.setLocalDescription({ type: "rollback" });
      this.restartIce("the SFU did not answer our offer");
    }), OFFER_TIMEOUT_MS);
  }

  /** The SFU's answer to our publisher offer. */
  async handleAnswer(sdp) {
    const pc = this.publisher;
    if (!pc || pc.signalingState !== "have-local-offer") {
      console.info("sfu: ignoring an answer in state", pc && pc.signalingState);
      return;
    }
    await pc.setRemoteDescription({ type: "answer", sdp });
  }

  /** The SFU's offer for the subscriber connection (made on the first), answered; then the streams are routed. */
  async handleOffer(sdp, streams) {
    if (!this.subscriber) this.subscribe();
    const pc = this.subscriber;
    await pc.setRemoteDescription({ type: "offer", sdp });
    await pc.setLocalDescription();
    if (pc !== this.subscriber || this.closed) return;
    this.sendFrame({ type: "answer", to: SFU, sdp: pc.localDescription.sdp });
    this.streams = Array.isArray(streams) ? streams : [];
    this.route();
  }

  subscribe() {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.subscriber = pc;
    const mine = () => this.subscriber === pc && !this.closed;
    pc.addEventListener("icecandidate", ({ candidate }) => {
      if (mine()) this.sendFrame({ type: "candidate", to: SFU, candidate: candidate ? candidate.toJSON() : null });
    });
    pc.addEventListener("track", () => mine() && this.route());
    pc.addEventListener("connectionstatechange", () => {
      if (!mine()) return;
      if (pc.connectionState === "connected" && this.telemetry.connectMs === null) {
        this.telemetry.connectMs = Math.round(performance.now() - this.telemetry.since);
      }
      if (pc.connectionState === "failed") this.telemetry.failures += 1;
      this.emit("state", { state: pc.connectionState });
    });
    pc.addEventListener("signalingstatechange", () => mine() && this.emit("state", { state: pc.connectionState }));
  }

  /** Which receiver carries whose stream, from the latest offer's `streams` (an m-line may change hands). */
  route() {
    const byMid = new Map();
    for (const transceiver of this.subscriber ? this.subscriber.getTransceivers() : []) {
      if (transceiver.mid !== null) byMid.set(String(transceiver.mid), transceiver);
    }
    const receivers = new Map();
    for (const { peer_id: peerId, mid, kind } of this.streams) {
      const transceiver = byMid.get(String(mid));
      if (!transceiver || (kind !== "audio" && kind !== "video")) continue;
      if (!receivers.has(peerId)) receivers.set(peerId, { audio: null, video: null });
      receivers.get(peerId)[kind] = transceiver.receiver;
    }
    this.receivers = receivers;
    this.emit("streams", { receivers });
  }

  receiversOf(peerId) { return this.receivers.get(peerId) || { audio: null, video: null }; }

  /** A candidate from the SFU (Janus puts its own in its SDP, so these are rare): for whichever connection takes it. */
  async handleCandidate(candidate) {
    if (!candidate || !candidate.candidate) return;
    for (const pc of [this.subscriber, this.publisher]) {
      if (!pc || !pc.remoteDescription) continue;
      try { await pc.addIceCandidate(candidate); return; } catch { /* the other connection's */ }
    }
  }

  get subscriberState() { return this.subscriber ? this.subscriber.connectionState : "new"; }

  get subscriberSignalingState() { return this.subscriber ? this.subscriber.signalingState : "stable"; }

  /** What we send changed (mute, camera, screen, device): as on a mesh Peer, no renegotiation. */
  async replaceTrack(kind, track) {
    const transceiver = kind === "audio" ? this.audio : this.video;
    if (transceiver) await transceiver.sender.replaceTrack(track);
  }

  /** New ICE credentials for the publisher (the SFU's subscriber offer follows the server's own restarts). */
  restartIce(why) {
    if (this.closed || !this.publisher) return;
    this.telemetry.restarts += 1;
    this.emit("ice-restart", { why });
    this.publisher.restartIce();
  }

  close() {
    this.closed = true;
    clearTimeout(this.offerTimer);
    for (const pc of [this.publisher, this.subscriber]) if (pc) pc.close();
  }
}

/** One remote person in SFU mode, with a mesh Peer's face (peer.js): its tile shows `remoteStream`, filled from the
 *  subscriber receivers the SFU session routes to it. */
export class RemoteFeed extends EventTarget {
  constructor({ peerId, user, polite, media, session }) {
    super();
    this.peerId = peerId;
    this.user = user || null;
    this.polite = Boolean(polite);
    this.media = media || null;
    this.presence = "connected";
    this.session = session;
    this.remoteStream = new MediaStream();
    this.receivers = { audio: null, video: null };
    this.closed = false;
    this.telemetry = session.telemetry; // one connection carries everyone: its figures are everyone's
    const feed = this;
    // What tiles.js and the quality monitor read of a peer's connection.
    this.pc = {
      get signalingState() { return feed.session.subscriberSignalingState; },
      getStats: () => feed.getStats(),
    };
  }

  get connectionState() {
    if (this.receivers.audio || this.receivers.video) return this.session.subscriberState;
    return this.session.subscriber ? "connecting" : "new";
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  /** The receivers now carrying this person's audio and video (either may be null: not published, or gone). */
  setReceivers(receivers) {
    let changed = false;
    for (const kind of ["audio", "video"]) {
      const receiver = receivers[kind] || null;
      const track = receiver ? receiver.track : null;
      const old = this.remoteStream.getTracks().filter((t) => t.kind === kind);
      this.receivers[kind] = receiver;
      if (old.length === 1 && old[0] === track) continue;
      for (const t of old) this.remoteStream.removeTrack(t);
      if (track) this.remoteStream.addTrack(track);
      changed = true;
    }
    if (changed) {
      this.emit("track", {});
      this.emit("state", { state: this.connectionState });
    }
  }

  async getStats() {
    const merged = new Map();
    for (const receiver of [this.receivers.audio, this.receivers.video]) {
      if (!receiver) continue;
      for (const [id, report] of await receiver.getStats()) merged.set(id, report);
    }
    return merged;
  }

  async audioLevel() {
    const receiver = this.receivers.audio;
    if (!receiver || this.closed) return 0;
    for (const report of (await receiver.getStats()).values()) {
      if (report.type === "inbound-rtp" && typeof report.audioLevel === "number") return report.audioLevel;
    }
    return 0;
  }

  // A mesh Peer's methods that have nothing to do here: the SFU session sends our media, chat goes by the socket.
  async replaceTrack() {}

  restartIce() {}

  sendChat() { return false; }

  close() {
    this.closed = true;
    for (const track of this.remoteStream.getTracks()) this.remoteStream.removeTrack(track);
  }
}

/** The call page's side of SFU mode (call.js): one SfuSession at a time, and a RemoteFeed per person in the page's
 *  `peers` and tiles. */
export class SfuMode {
  constructor(page) {
    this.page = page;
    this.session = null;
  }

  /** A fresh session (after a welcome in SFU mode, or a media-mode): mesh connections give way to feeds in the same
   *  tiles (pinned or not), which show the SFU's streams as soon as its offer comes. */
  start(why = "") {
    const { page } = this;
    this.stop();
    const session = new SfuSession({ iceServers: page.iceServers || [], local: page.media,
                                     send: (frame) => page.signaling?.up && page.signaling.send(frame) });
    this.session = session;
    page.root.dataset.media = SFU;
    session.addEventListener("streams", () => {
      for (const peer of page.peers.values()) peer.setReceivers?.(session.receiversOf(peer.peerId));
    });
    session.addEventListener("state", () => {
      for (const peer of page.peers.values()) peer.emit("state", { state: peer.connectionState });
      page.updateStatus();
    });
    session.addEventListener("ice-restart", ({ detail }) => page.view.logEvent("ice-restart", `Reconnecting media (${detail.why}).`));
    for (const [peerId, peer] of [...page.peers]) {
      if (peer instanceof RemoteFeed) {
        peer.session = session;
        peer.telemetry = session.telemetry;
        peer.setReceivers({});
        continue;
      }
      const feed = this.feedFor({ peer_id: peerId, user: peer.user, polite: peer.polite, media: peer.media });
      feed.presence = peer.presence;
      page.peers.set(peerId, feed);
      page.tiles.adopt(peer, feed);
      peer.close(); // the mesh connection: its media stops here, the SFU's follows within a second or so
    }
    if (why) page.view.logEvent("media-mode", why);
    session.start();
  }

  stop() {
    if (this.session) this.session.close();
    this.session = null;
  }

  feedFor(info) {
    const feed = new RemoteFeed({ peerId: info.peer_id, user: info.user, polite: info.polite, media: info.media,
                                  session: this.session });
    feed.addEventListener("state", () => this.page.updateStatus());
    return feed;
  }

  /** A person of the call in SFU mode (the welcome's list, peer-joined): a feed and its tile. */
  addFeed(info) {
    const feed = this.feedFor(info);
    if (info.state === "reconnecting") feed.presence = "reconnecting";
    this.page.peers.set(info.peer_id, feed);
    this.page.tiles.add(feed);
    feed.setReceivers(this.session.receiversOf(info.peer_id));
    return feed;
  }

  /** An offer, answer or candidate in SFU mode: the SFU's go to the session, peers' own mean nothing now. */
  onFrame(frame) {
    const session = this.session;
    if (!session || frame.from !== SFU) return undefined;
    if (frame.type === "offer") return session.enqueue(() => session.handleOffer(frame.sdp, frame.streams));
    if (frame.type === "answer") return session.enqueue(() => session.handleAnswer(frame.sdp));
    return session.enqueue(() => session.handleCandidate(frame.candidate));
  }
}
