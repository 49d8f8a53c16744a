// The call page: one mesh call in one room. This module is the page's entry and its state machine (idle, joining,
// connecting, joined, reconnecting, ended); signaling frames are handled one at a time, in order.
// Tiles, controls and chat live in their own modules.
import { api } from "./api.js";
import { Chat } from "./chat.js";
import { Controls } from "./controls.js";
import { $, nameOf } from "./dom.js";
import { LocalMedia } from "./media.js";
import { Peer } from "./peer.js";
import { Signaling } from "./signaling.js";
import { Tiles } from "./tiles.js";

const REASONS = {
  left: "left",
  disconnected: "lost their connection",
  kicked: "was removed",
  "timed-out": "timed out",
  "server-shutdown": "was disconnected (server restart)",
  "room-closed": "left (the room was deleted)",
  "room-locked": "left (the room was locked)",
};

class CallPage {
  constructor(config, root) {
    this.config = config;
    this.root = root;
    this.media = new LocalMedia();
    this.peers = new Map();
    this.frames = Promise.resolve();
    this.signaling = null;
    this.peerId = null;
    this.iceServers = null;
    this.joinOptions = { audio: true, video: true };

    this.tiles = new Tiles({ canModerate: config.can_moderate, onKick: (peer) => this.kick(peer) });
    this.controls = new Controls({
      media: this.media, tiles: this.tiles, eachPeer: (action) => this.eachPeer(action),
      onChange: () => this.sendMediaState(), alert: (message) => this.alert(message),
    });
    this.chat = new Chat(() => this.peers.values());

    $("#prejoin").addEventListener("submit", (event) => {
      event.preventDefault();
      this.join({ audio: $("#join-audio").checked, video: $("#join-video").checked });
    });
    $("#rejoin").addEventListener("click", () => this.join(this.joinOptions));
    $("#leave").addEventListener("click", () => this.leave());
    window.addEventListener("pagehide", () => { if (this.signaling) this.signaling.close(); });
  }

  // --- State shown on the page ---------------------------------------------------------------

  setState(state, status) {
    this.root.dataset.state = state;
    if (status) $("#call-status").textContent = status;
    $("#prejoin").hidden = state !== "idle";
    $("#in-call").hidden = !["joining", "connecting", "joined", "reconnecting"].includes(state);
    $("#call-ended").hidden = state !== "ended";
  }

  alert(message) {
    const box = $("#call-alert");
    box.textContent = message || "";
    box.hidden = !message;
  }

  logEvent(type, text) {
    const item = document.createElement("li");
    item.dataset.type = type;
    item.textContent = `${new Date().toLocaleTimeString()} ${text}`;
    $("#call-events").append(item);
  }

  // --- Joining and leaving ---------------------------------------------------------------------

  async join(options) {
    this.joinOptions = options;
    this.alert("");
    this.setState("joining", options.audio || options.video ? "Starting your camera and microphone…" : "Joining…");
    const iceFetch = this.fetchIceServers();
    const warnings = await this.media.start(options);
    if (warnings.length) this.alert(warnings.join(" "));
    this.tiles.showLocal(this.media);
    this.controls.update();
    this.iceServersPromise = iceFetch;
    this.controls.fillDevices();
    this.connect();
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

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const signaling = new Signaling(`${scheme}://${location.host}/ws/rooms/${this.config.slug}/`);
    this.signaling = signaling;
    // Events of a socket we already let go of (after Leave) are not ours to act on.
    const current = () => this.signaling === signaling;
    signaling.addEventListener("open", () => current() && this.setState(this.root.dataset.state, "Connected to the server, joining…"));
    signaling.addEventListener("frame", ({ detail }) => {
      if (!current()) return;
      if (this.heldFrames) this.heldFrames.push(detail);
      else this.process(detail);
    });
    signaling.addEventListener("closed", ({ detail }) => current() && this.onClosed(detail));
    this.setState("connecting", "Connecting to the server…");
    signaling.connect();
  }

  process(frame) {
    this.frames = this.frames.then(() => this.onFrame(frame)).catch((error) => console.error("frame", frame.type, error));
  }

  onClosed({ code, message, final, retryIn }) {
    this.root.dataset.closeCode = String(code);
    this.dropPeers();
    if (final) {
      this.tiles.stopSpeaking();
      if (code !== 1000) this.alert(message);
      this.media.stopAll();
      this.setState("ended", code === 1000 ? "You left the call." : "You are not in the call.");
      this.logEvent("closed", message);
      return;
    }
    const seconds = Math.max(1, Math.round(retryIn / 1000));
    this.setState("reconnecting", `${message} Reconnecting in ${seconds} s…`);
    this.logEvent("reconnecting", message);
  }

  leave() {
    const signaling = this.signaling;
    this.signaling = null;
    if (signaling) signaling.close(1000);
    this.onClosed({ code: 1000, message: "You left the call.", final: true });
  }

  // --- Signaling frames ------------------------------------------------------------------------

  async onFrame(frame) {
    switch (frame.type) {
      case "welcome": return this.onWelcome(frame);
      case "peer-joined": return this.onPeerJoined(frame.peer);
      case "peer-left": return this.onPeerLeft(frame.peer_id, frame.reason);
      case "offer":
      case "answer": {
        const peer = this.peerFor(frame.from);
        return peer && peer.enqueue(() => peer.handleDescription(frame.type, frame.sdp));
      }
      case "candidate": {
        const peer = this.peerFor(frame.from);
        return peer && peer.enqueue(() => peer.handleCandidate(frame.candidate));
      }
      case "media-state": return this.onMediaState(frame.from, frame);
      case "pong": return undefined;
      case "error":
        console.warn("signaling error", frame.code, frame.detail);
        this.logEvent("error", `Server: ${frame.code} ${frame.detail || ""}`);
        return undefined;
      default:
        console.info("ignoring frame", frame.type);
        return undefined;
    }
  }

  async onWelcome(frame) {
    this.signaling?.markWelcomed();
    this.peerId = frame.peer_id;
    this.root.dataset.peerId = frame.peer_id;
    this.root.dataset.callId = String(frame.call_id);
    this.iceServers = (await this.iceServersPromise) || frame.ice_servers || [];
    this.dropPeers(); // a rejoin after a reconnection starts from scratch
    for (const info of frame.peers || []) this.addPeer(info, { initiator: true });
    this.sendMediaState();
    const others = (frame.peers || []).length;
    this.setState("joined", others ? `In the call with ${others} other ${others === 1 ? "person" : "people"}.`
                                   : "You are the first one here. Waiting for others…");
    this.logEvent("welcome", "You joined the call.");
    this.tiles.startSpeaking(() => this.peers.values());
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
    this.logEvent("peer-joined", `${nameOf(info.user)} joined.`);
    this.setState("joined", `${nameOf(info.user)} joined.`);
  }

  onPeerLeft(peerId, reason) {
    const peer = this.peers.get(peerId);
    const who = peer ? nameOf(peer.user) : "Someone";
    this.removePeer(peerId);
    const text = `${who} ${REASONS[reason] || "left"}.`;
    this.logEvent("peer-left", text);
    this.setState("joined", text);
  }

  onMediaState(peerId, state) {
    const peer = this.peers.get(peerId);
    if (!peer) return;
    peer.media = { audio: Boolean(state.audio), video: Boolean(state.video), screen: Boolean(state.screen) };
    this.tiles.update(peer);
  }

  /** The peer a description or candidate comes from; one we have not heard of is created on the spot. */
  peerFor(peerId) {
    if (!peerId || peerId === this.peerId) return null;
    return this.peers.get(peerId) || this.addPeer({ peer_id: peerId, user: null, polite: true }, { initiator: false });
  }

  // --- Peers -------------------------------------------------------------------------------------

  addPeer(info, { initiator }) {
    const peer = new Peer({
      peerId: info.peer_id, user: info.user, polite: info.polite, media: info.media, initiator,
      iceServers: this.iceServers || [], local: this.media,
      send: (frame) => this.signaling && this.signaling.send(frame),
    });
    this.peers.set(info.peer_id, peer);
    this.tiles.add(peer);
    peer.addEventListener("state", () => {
      if (peer.connectionState === "connected") this.logEvent("connected", `Connected to ${nameOf(peer.user)}.`);
    });
    peer.addEventListener("ice-restart", ({ detail }) => this.logEvent("ice-restart", `Reconnecting media with ${nameOf(peer.user)} (${detail.why}).`));
    peer.addEventListener("glare", ({ detail }) => this.logEvent("glare", `Negotiation glare with ${nameOf(peer.user)}: ${detail.yielded ? "yielded" : "kept our offer"}.`));
    peer.addEventListener("chat", ({ detail }) => this.chat.show(nameOf(peer.user), detail.text, peer.peerId));
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

  async eachPeer(action) {
    await Promise.all([...this.peers.values()].map((peer) => action(peer).catch((error) => console.error(error))));
  }

  sendMediaState() {
    if (this.signaling) this.signaling.send({ type: "media-state", ...this.media.state });
    this.tiles.showLocal(this.media);
    this.controls.update();
  }

  async kick(peer) {
    try {
      await api(`/api/rooms/${this.config.slug}/participants/${peer.peerId}/kick/`, { method: "POST" });
    } catch (error) {
      this.alert(`Could not remove ${nameOf(peer.user)}: ${error.message}`);
    }
  }

  // --- Hooks for tests and for debugging from the console ----------------------------------------

  /** Renegotiate with every peer at once (an ICE restart): two pages calling this together make glare. */
  renegotiateAll() {
    for (const peer of this.peers.values()) peer.restartIce("requested");
  }

  /** Hold incoming frames back (tests use it to make two offers cross for certain), then let them through. */
  holdFrames() { this.heldFrames = this.heldFrames || []; }

  releaseFrames() {
    const held = this.heldFrames || [];
    this.heldFrames = null;
    for (const frame of held) this.process(frame);
  }

  /** Drop the signaling socket as a network failure would. */
  dropSignaling() {
    if (this.signaling) this.signaling.drop();
  }
}

const configElement = document.getElementById("call-config");
const root = document.getElementById("call");
if (configElement && root) {
  window.parley = new CallPage(JSON.parse(configElement.textContent), root);
  root.dataset.ready = "true";
}
