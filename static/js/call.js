// The call page: one call in one room, a mesh (peer.js) or through the SFU (sfu.js, when the welcome or a
// media-mode frame says "sfu"): the page's entry and state machine (idle, joining, connecting, joined, reconnecting,
// ended), handling signaling frames one at a time, in order; tiles, controls and chat have modules of their own.
// A lost signaling socket is not a lost call: the connections and local media stay while the page resumes with its
// token and last `seq` (replayed by the server); a reload resumes from sessionStorage (resume.js).
import { api } from "./api.js";
import { installHooks } from "./call-hooks.js";
import { Chat } from "./chat.js";
import { Controls } from "./controls.js";
import { $, nameOf } from "./dom.js";
import { LocalMedia } from "./media.js";
import { Peer } from "./peer.js";
import { PreJoin, useChosenDevices } from "./prejoin.js";
import { QualityMonitor } from "./quality.js";
import { Participation } from "./resume.js";
import { SFU, SfuMode } from "./sfu.js";
import { Signaling } from "./signaling.js";
import { LEAVE_REASONS, StatusView, inCallText } from "./status.js";
import { Tiles } from "./tiles.js";

class CallPage {
  constructor(config, root, initialState) {
    this.config = config;
    this.root = root;
    this.media = new LocalMedia();
    this.peers = new Map(); // peer id -> Peer (mesh) or RemoteFeed (SFU mode)
    this.sfuMode = new SfuMode(this); // SFU mode's session and feeds (sfu.js)
    this.frames = Promise.resolve();
    this.signaling = null;
    this.iceServers = null;
    this.joinOptions = { audio: true, video: true };
    this.me = new Participation(config.slug); // peer id, resume token, last seq; stored for a reload
    this.view = new StatusView(root);
    this.departed = new Map(); // peer id -> name, of peers dropped at a resume before their peer-left came
    this.reconnects = 0;

    this.tiles = new Tiles({ canModerate: config.can_moderate, onKick: (peer) => this.kick(peer) });
    this.controls = new Controls({
      media: this.media, tiles: this.tiles, eachPeer: (action) => this.eachPeer(action),
      onChange: () => this.sendMediaState(), alert: (message) => this.view.alert(message),
      inCall: () => ["joined", "reconnecting", "connecting"].includes(this.view.state),
    });
    this.chat = new Chat(() => this.peers.values(), (entry) => this.me.addChat(entry),
                         () => (this.sfu ? this.signaling : null)); // in SFU mode chat goes by the socket
    this.quality = new QualityMonitor(() => this.peers.values(), (peer, quality, detail) => {
      this.tiles.setQuality(peer, quality, detail);
      this.updateStatus();
    }, (frame) => this.signaling?.up && this.signaling.send(frame)); // and the stats frames (stats.js)
    this.prejoin = new PreJoin({ stateUrl: config.state_url, initial: initialState,
                                 onJoin: (options) => this.join(options) });
    root.addEventListener("network", ({ detail }) => {
      this.updateStatus();
      // Back online: try the server at once rather than after the current backoff.
      if (!detail.offline && this.signaling && this.view.state === "reconnecting") this.signaling.retryNow?.();
    });

    $("#rejoin").addEventListener("click", () => this.rejoin());
    $("#leave").addEventListener("click", () => this.leave());
    // A reload or a closed tab is not a leave: no `leave` frame, and the stored participation stays for a resume.
    window.addEventListener("pagehide", () => { if (this.signaling) this.signaling.stop(); });

    const options = this.me.restore();
    if (options) this.resume(options);
    else this.prejoin.open();
  }

  /** "Join again": the room's state is checked first, so a full room or a removal is told without a camera. */
  async rejoin() {
    this.view.alert("");
    const blocked = await this.prejoin.blocker();
    if (blocked) this.view.alert(blocked);
    else this.join(this.joinOptions);
  }

  get peerId() { return this.me.peerId; }
  get sfu() { return this.sfuMode.session; } // the SfuSession in SFU mode, else null

  // --- The status line ----------------------------------------------------------------------------

  /** The status line (status.js says what is true: offline, nobody reachable, every connection unstable). */
  updateStatus(text) { this.view.tell([...this.peers.values()], text); }

  inCallText() { return inCallText(this.peers.size); }

  // --- Joining and leaving ---------------------------------------------------------------------

  async join(options, { resuming = false } = {}) {
    this.joinOptions = { audio: Boolean(options.audio), video: Boolean(options.video) };
    this.view.alert("");
    if (resuming) this.view.setState("reconnecting", "Rejoining the call…");
    else this.view.setState("joining", options.audio || options.video ? "Starting your camera and microphone…" : "Joining…");
    const iceFetch = this.fetchIceServers();
    await useChosenDevices(this.media, this.tiles);
    const warnings = await this.media.start(options);
    if (options.micEnabled === false) this.media.setMicEnabled(false);
    if (warnings.length) this.view.alert(warnings.join(" "));
    this.tiles.showLocal(this.media);
    this.controls.update();
    this.iceServersPromise = iceFetch;
    this.controls.fillDevices();
    this.connect({ resuming });
  }

  /** After a reload: join with the stored participation and media (its chat is shown again at once). */
  resume(options) {
    this.root.dataset.peerId = this.me.peerId;
    for (const entry of this.me.chat()) this.chat.show(entry.who, entry.text, entry.from, entry.note, { restored: true });
    this.view.logEvent("resuming", "Rejoining the call after the page was reloaded.");
    this.join(options, { resuming: true });
  }

  async fetchIceServers() {
    try {
      const data = await api("/api/ice-servers/", { signal: AbortSignal.timeout(4000) });
      const list = Array.isArray(data) ? data : data && (data.ice_servers || data.iceServers);
      return Array.isArray(list) ? list : null;
    } catch (error) {
      console.info("ICE servers from the API unavailable, using the welcome frame's:", error.message);
      return null;
    }
  }

  socketUrl() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    return this.me.url(`${scheme}://${location.host}/ws/rooms/${this.config.slug}/`);
  }

  connect({ resuming = false } = {}) {
    const signaling = new Signaling(() => this.socketUrl(), { lastSeq: () => this.me.lastSeq });
    this.signaling = signaling;
    // Events of a socket we already let go of (after Leave) are not ours to act on.
    const current = () => this.signaling === signaling;
    signaling.addEventListener("connecting", ({ detail }) => current() && this.view.showAttempt(detail.attempt));
    signaling.addEventListener("open", () => {
      if (current() && this.view.state === "connecting") this.view.setState("connecting", "Connected to the server, joining…");
    });
    signaling.addEventListener("frame", ({ detail }) => current() && this.onSignalingFrame(detail));
    signaling.addEventListener("closed", ({ detail }) => current() && this.onClosed(detail));
    if (resuming) this.view.setState("reconnecting", "Rejoining the call…");
    else this.view.setState("connecting", "Connecting to the server…");
    signaling.connect();
  }

  onSignalingFrame(received) {
    const frame = this.me.note(received);
    if (!frame) {
      console.info("signaling: frame seen already", received.type, received.seq);
      return;
    }
    this.persist();
    if (this.heldFrames) this.heldFrames.push(frame);
    else this.process(frame);
  }

  persist() {
    this.me.save({ audio: Boolean(this.media.mic), video: Boolean(this.media.camera), micEnabled: this.media.micEnabled });
  }

  process(frame) {
    this.frames = this.frames.then(() => this.onFrame(frame)).catch((error) => console.error("frame", frame.type, error));
  }

  onClosed({ code, message, final, retryIn, attempt }) {
    this.root.dataset.closeCode = String(code);
    if (final) {
      // Refused or ended by the server, or we left: nothing to resume any more.
      this.me.end();
      this.dropPeers();
      this.sfuMode.stop();
      this.tiles.stopSpeaking();
      if (code !== 1000) this.view.alert(message);
      this.media.stopAll();
      this.quality.stop();
      this.tiles.closeMenu();
      this.view.setState("ended", code === 1000 ? "You left the call." : "You are not in the call.");
      this.view.logEvent("closed", message);
      // The close code is all the page hears (daphne drops the reason): ask the server what a 4403 means now
      // (removed, and for how long; the room locked).
      if (code === 4403) this.explainRefusal(message);
      return;
    }
    // The peer connections and our media stay: the call goes on peer to peer while we reconnect.
    this.reconnects += 1;
    this.root.dataset.reconnects = String(this.reconnects);
    this.view.showAttempt(attempt);
    const wait = retryIn >= 1000 ? ` Reconnecting in ${Math.round(retryIn / 1000)} s…` : " Reconnecting…";
    this.view.setState("reconnecting", `${message}${wait}`);
    this.view.logEvent("reconnecting", message);
    this.updateStatus(); // offline says so, rather than a bare "reconnecting"
  }

  async explainRefusal(message) {
    const why = await this.prejoin.whyRefused(message);
    if (why) { this.root.dataset.refusal = why.refusal; this.view.alert(why.text); }
  }

  leave() {
    const signaling = this.signaling;
    this.signaling = null;
    if (signaling) signaling.leave();
    this.onClosed({ code: 1000, message: "You left the call.", final: true });
  }

  // --- Signaling frames ------------------------------------------------------------------------

  async onFrame(frame) {
    switch (frame.type) {
      case "welcome": return this.onWelcome(frame);
      case "peer-joined": return this.onPeerJoined(frame.peer);
      case "peer-left": return this.onPeerLeft(frame.peer_id, frame.reason);
      case "peer-state": return this.onPeerState(frame.peer_id, frame.state);
      case "offer":
      case "answer": {
        if (frame.from === SFU || this.sfu) return this.sfuMode.onFrame(frame);
        const peer = this.peerFor(frame.from);
        return peer && peer.enqueue(() => peer.handleDescription(frame.type, frame.sdp));
      }
      case "candidate": {
        if (frame.from === SFU || this.sfu) return this.sfuMode.onFrame(frame);
        const peer = this.peerFor(frame.from);
        return peer && peer.enqueue(() => peer.handleCandidate(frame.candidate));
      }
      case "media-state": return this.onMediaState(frame.from, frame);
      case "media-mode":
        return frame.media === SFU && !this.sfu ? this.sfuMode.start("The call moved to the media server.") : undefined;
      case "chat": return this.onChat(frame);
      case "pong": return undefined;
      case "error":
        console.warn("signaling error", frame.code, frame.detail);
        this.view.logEvent("error", `Server: ${frame.code} ${frame.detail || ""}`);
        return undefined;
      default:
        console.info("ignoring frame", frame.type);
        return undefined;
    }
  }

  async onWelcome(frame) {
    this.root.dataset.peerId = frame.peer_id;
    this.root.dataset.callId = String(frame.call_id);
    this.root.dataset.resumed = String(frame.resumed);
    this.iceServers = (await this.iceServersPromise) || frame.ice_servers || [];
    const listed = (frame.peers || []).filter((info) => info.peer_id !== frame.peer_id && !this.me.formerPeerIds.has(info.peer_id));
    this.root.dataset.media = frame.media === SFU ? SFU : "mesh";
    // SFU mode starts afresh after every welcome, a resumed one too (docs/sfu.md): the server's session is new.
    if (frame.media === SFU) this.sfuMode.start();
    if (frame.resumed) {
      this.onResumed(listed, frame.replay === "partial");
    } else {
      this.dropPeers(); // a fresh join after a lost participation starts from scratch
      for (const info of listed) this.addPeer(info, { initiator: true });
      this.view.logEvent("welcome", "You joined the call.");
    }
    this.sendMediaState();
    this.view.setState("joined");
    this.view.peersLost = false;
    this.updateStatus(this.inCallText());
    this.tiles.startSpeaking(() => this.peers.values());
    this.quality.start();
    if (!this.chatOpened) {
      this.chatOpened = true;
      if (window.innerWidth >= 900) this.controls.toggleChat(true);
      $("#chat-input").blur();
    }
  }

  /** The same participation again. `listed` are the peers now; the replay brings what happened meanwhile. */
  onResumed(listed, partial) {
    const now = new Map(listed.map((info) => [info.peer_id, info]));
    for (const peer of [...this.peers.values()]) {
      if (now.has(peer.peerId)) continue;
      // Gone while we were away. With a complete replay its peer-left follows and says why.
      this.departed.set(peer.peerId, nameOf(peer.user));
      this.removePeer(peer.peerId);
      if (partial) this.view.logEvent("peer-left", `${nameOf(peer.user)} left while you were reconnecting.`);
    }
    for (const info of listed) {
      const peer = this.peers.get(info.peer_id);
      if (!peer) {
        // Joined while we were away, or we were reloaded and have no connection to anyone: we offer (afresh).
        this.addPeer(info, { initiator: true });
        continue;
      }
      if (info.user) peer.user = info.user;
      if (info.media) peer.media = info.media;
      if (info.state) peer.presence = info.state === "reconnecting" ? "reconnecting" : "connected";
      else if (partial) peer.presence = "connected";
      this.tiles.update(peer);
      // Frames between us may be lost: renegotiate (perfect negotiation sorts out who yields if both do).
      if (partial) peer.restartIce("signaling resumed, some frames were lost");
    }
    this.view.logEvent("welcome", partial ? "Back in the call (some signaling was lost; reconnecting media)."
                                     : "Back in the call.");
  }

  onPeerJoined(info) {
    const existing = this.peers.get(info.peer_id);
    if (existing) {
      // Its offer overtook this announcement: fill in who it is.
      existing.user = info.user;
      existing.polite = Boolean(info.polite);
      this.tiles.update(existing);
    } else {
      this.addPeer(info, { initiator: false });
    }
    this.view.logEvent("peer-joined", `${nameOf(info.user)} joined.`);
    this.updateStatus(`${nameOf(info.user)} joined.`);
  }

  onPeerLeft(peerId, reason) {
    const peer = this.peers.get(peerId);
    const who = peer ? nameOf(peer.user) : this.departed.get(peerId) || "Someone";
    this.departed.delete(peerId);
    this.removePeer(peerId);
    const text = `${who} ${LEAVE_REASONS[reason] || "left"}.`;
    this.view.logEvent("peer-left", text);
    this.updateStatus(text);
  }

  /** The server suspended a peer's signaling (its socket dropped) or has it back: its media may well go on. */
  onPeerState(peerId, state) {
    const peer = this.peers.get(peerId);
    if (!peer) return;
    const presence = state === "reconnecting" ? "reconnecting" : "connected";
    if (presence === peer.presence) return;
    peer.presence = presence;
    this.tiles.update(peer);
    const text = presence === "reconnecting" ? `${nameOf(peer.user)} is reconnecting…` : `${nameOf(peer.user)} is back.`;
    this.view.logEvent("peer-state", text);
    this.updateStatus(text);
  }

  onMediaState(peerId, state) {
    const peer = this.peers.get(peerId);
    if (!peer) return;
    peer.media = { audio: Boolean(state.audio), video: Boolean(state.video), screen: Boolean(state.screen) };
    this.tiles.update(peer);
  }

  onChat(frame) {
    const peer = this.peers.get(frame.from);
    this.chat.show(peer ? nameOf(peer.user) : "Someone", String(frame.text || "").slice(0, 2000), frame.from);
    this.controls.noteUnread();
  }

  /** The peer a description or candidate comes from; one we have not heard of is created on the spot. */
  peerFor(peerId) {
    if (!peerId || peerId === this.peerId) return null;
    return this.peers.get(peerId) || this.addPeer({ peer_id: peerId, user: null, polite: true }, { initiator: false });
  }

  // --- Peers -------------------------------------------------------------------------------------

  addPeer(info, { initiator }) {
    if (this.sfu) return this.sfuMode.addFeed(info);
    const peer = new Peer({
      peerId: info.peer_id, user: info.user, polite: info.polite, media: info.media, initiator,
      iceServers: this.iceServers || [], local: this.media,
      send: (frame) => this.signaling && this.signaling.send(frame),
    });
    if (info.state === "reconnecting") peer.presence = "reconnecting";
    this.peers.set(info.peer_id, peer);
    this.tiles.add(peer);
    peer.addEventListener("state", () => {
      if (peer.connectionState === "connected") this.view.logEvent("connected", `Connected to ${nameOf(peer.user)}.`);
      this.updateStatus();
    });
    peer.addEventListener("ice-restart", ({ detail }) => this.view.logEvent("ice-restart", `Reconnecting media with ${nameOf(peer.user)} (${detail.why}).`));
    peer.addEventListener("rebuilt", ({ detail }) => this.view.logEvent("rebuilt", `New connection to ${nameOf(peer.user)} (${detail.why}).`));
    peer.addEventListener("glare", ({ detail }) => this.view.logEvent("glare", `Negotiation glare with ${nameOf(peer.user)}: ${detail.yielded ? "yielded" : "kept our offer"}.`));
    peer.addEventListener("chat", ({ detail }) => {
      this.chat.show(nameOf(peer.user), detail.text, peer.peerId);
      this.controls.noteUnread();
    });
    return peer;
  }

  removePeer(peerId) {
    const peer = this.peers.get(peerId);
    if (!peer) return;
    this.peers.delete(peerId);
    peer.close();
    this.tiles.remove(peer);
  }

  dropPeers() {
    for (const peerId of [...this.peers.keys()]) this.removePeer(peerId);
  }

  /** An action on every connection we send on: each Peer in a mesh, the SFU session's publisher in SFU mode. */
  async eachPeer(action) {
    await Promise.all((this.sfu ? [this.sfu] : [...this.peers.values()]).map((peer) => action(peer).catch((error) => console.error(error))));
  }

  sendMediaState() {
    if (this.signaling) this.signaling.send({ type: "media-state", ...this.media.state });
    this.tiles.showLocal(this.media);
    this.controls.update();
    this.persist();
  }

  async kick(peer) {
    try {
      await api(`/api/rooms/${this.config.slug}/participants/${peer.peerId}/kick/`, { method: "POST" });
    } catch (error) {
      this.view.alert(`Could not remove ${nameOf(peer.user)}: ${error.message}`);
    }
  }
}

installHooks(CallPage);

const configElement = document.getElementById("call-config");
const stateElement = document.getElementById("call-state");
const root = document.getElementById("call");
if (configElement && root) {
  const initialState = stateElement ? JSON.parse(stateElement.textContent) : null;
  window.parley = new CallPage(JSON.parse(configElement.textContent), root, initialState);
  root.dataset.ready = "true";
}
