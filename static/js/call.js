// The call page: one mesh call in one room. Signaling frames are handled one at a time, in order.
import { api } from "./api.js";
import { LocalMedia, explainMediaError } from "./media.js";
import { Peer } from "./peer.js";
import { Signaling } from "./signaling.js";

const REASONS = {
  left: "left",
  disconnected: "lost their connection",
  kicked: "was removed",
  "timed-out": "timed out",
  "server-shutdown": "was disconnected (server restart)",
  "room-closed": "left (the room was deleted)",
  "room-locked": "left (the room was locked)",
};
const SPEAKING_LEVEL = 0.02;

const $ = (selector, root = document) => root.querySelector(selector);

function nameOf(user) {
  return (user && (user.display_name || user.username)) || "Someone";
}

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
    this.speakingTimer = null;

    $("#prejoin").addEventListener("submit", (event) => {
      event.preventDefault();
      this.join({ audio: $("#join-audio").checked, video: $("#join-video").checked });
    });
    $("#rejoin").addEventListener("click", () => this.join(this.joinOptions));
    $("#toggle-mic").addEventListener("click", () => this.toggleMic());
    $("#toggle-camera").addEventListener("click", () => this.toggleCamera());
    $("#toggle-screen").addEventListener("click", () => this.toggleScreen());
    $("#toggle-devices").addEventListener("click", () => this.toggleDevices());
    $("#leave").addEventListener("click", () => this.leave());
    $("#chat-form").addEventListener("submit", (event) => { event.preventDefault(); this.sendChat(); });
    $("#select-mic").addEventListener("change", (event) => this.switchDevice("audio", event.target.value));
    $("#select-camera").addEventListener("change", (event) => this.switchDevice("video", event.target.value));
    $("#select-speaker").addEventListener("change", (event) => this.switchSpeaker(event.target.value));
    this.media.addEventListener("screen-ended", () => this.stopScreen());
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
    this.showLocal();
    this.updateControls();
    this.iceServersPromise = iceFetch;
    this.fillDevices();
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
      this.stopSpeaking();
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
    this.startSpeaking();
  }

  onPeerJoined(info) {
    const existing = this.peers.get(info.peer_id);
    if (existing) {
      // Its offer overtook this announcement: fill in who it is.
      existing.user = info.user;
      existing.polite = Boolean(info.polite);
      this.updateTile(existing);
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
    this.updateTile(peer);
  }

  /** The peer a description or candidate comes from; one we have not heard of is created on the spot. */
  peerFor(peerId) {
    if (!peerId || peerId === this.peerId) return null;
    return this.peers.get(peerId) || this.addPeer({ peer_id: peerId, user: null, polite: true }, { initiator: false });
  }

  // --- Peers and tiles ---------------------------------------------------------------------------

  addPeer(info, { initiator }) {
    const peer = new Peer({
      peerId: info.peer_id, user: info.user, polite: info.polite, media: info.media, initiator,
      iceServers: this.iceServers || [], local: this.media,
      send: (frame) => this.signaling && this.signaling.send(frame),
    });
    this.peers.set(info.peer_id, peer);
    const tile = $("#tile-template").content.firstElementChild.cloneNode(true);
    tile.dataset.peerId = peer.peerId;
    const video = $("video", tile);
    video.srcObject = peer.remoteStream;
    if (this.speakerId && video.setSinkId) video.setSinkId(this.speakerId).catch(() => {});
    const kick = $(".tile-kick", tile);
    kick.hidden = !this.config.can_moderate;
    kick.addEventListener("click", () => this.kick(peer));
    peer.tile = tile;
    $("#tiles").append(tile);
    this.updateTile(peer);
    this.layout();

    peer.addEventListener("track", () => video.play().catch(() => {}));
    peer.addEventListener("state", () => {
      this.updateTile(peer);
      if (peer.connectionState === "connected") this.logEvent("connected", `Connected to ${nameOf(peer.user)}.`);
    });
    peer.pc.addEventListener("signalingstatechange", () => this.updateTile(peer));
    peer.addEventListener("ice-restart", ({ detail }) => this.logEvent("ice-restart", `Reconnecting media with ${nameOf(peer.user)} (${detail.why}).`));
    peer.addEventListener("glare", ({ detail }) => this.logEvent("glare", `Negotiation glare with ${nameOf(peer.user)}: ${detail.yielded ? "yielded" : "kept our offer"}.`));
    peer.addEventListener("chat", ({ detail }) => this.showChat(nameOf(peer.user), detail.text, peer.peerId));
    return peer;
  }

  updateTile(peer) {
    const tile = peer.tile;
    if (!tile) return;
    const name = nameOf(peer.user);
    const media = peer.media || { audio: true, video: true, screen: false };
    tile.dataset.connectionState = peer.connectionState;
    tile.dataset.signalingState = peer.pc.signalingState;
    tile.dataset.audio = String(media.audio);
    tile.dataset.video = String(media.video || media.screen);
    tile.dataset.screen = String(media.screen);
    tile.setAttribute("aria-label", `${name}: ${media.audio ? "microphone on" : "muted"}, ${peer.connectionState}`);
    $(".tile-name", tile).textContent = name;
    $(".avatar", tile).textContent = name.slice(0, 1).toUpperCase();
    $(".tile-state", tile).textContent = peer.connectionState === "connected" ? "" : peer.connectionState;
    $(".tile-kick", tile).setAttribute("aria-label", `Remove ${name} from the call`);
  }

  removePeer(peerId) {
    const peer = this.peers.get(peerId);
    if (!peer) return;
    this.peers.delete(peerId);
    peer.close();
    if (peer.tile) peer.tile.remove();
    this.layout();
  }

  dropPeers() {
    for (const peerId of [...this.peers.keys()]) this.removePeer(peerId);
  }

  layout() {
    $("#tiles").dataset.count = String(this.peers.size + 1);
  }

  showLocal() {
    const video = $("#local-video");
    video.srcObject = this.media.stream;
    video.classList.toggle("mirrored", !this.media.screen);
    const tile = video.closest(".tile");
    const state = this.media.state;
    tile.dataset.audio = String(state.audio);
    tile.dataset.video = String(state.video || state.screen);
    tile.dataset.screen = String(state.screen);
    video.play().catch(() => {});
  }

  async kick(peer) {
    try {
      await api(`/api/rooms/${this.config.slug}/participants/${peer.peerId}/kick/`, { method: "POST" });
    } catch (error) {
      this.alert(`Could not remove ${nameOf(peer.user)}: ${error.message}`);
    }
  }

  // --- Speaking indicator ----------------------------------------------------------------------

  startSpeaking() {
    this.stopSpeaking();
    this.speakingTimer = setInterval(async () => {
      for (const peer of this.peers.values()) {
        if (!peer.tile) continue;
        let level = 0;
        try { level = await peer.audioLevel(); } catch { level = 0; }
        const speaking = level > SPEAKING_LEVEL && (!peer.media || peer.media.audio);
        peer.tile.dataset.speaking = String(speaking);
      }
    }, 400);
  }

  stopSpeaking() { clearInterval(this.speakingTimer); }

  // --- Controls ----------------------------------------------------------------------------------

  sendMediaState() {
    if (this.signaling) this.signaling.send({ type: "media-state", ...this.media.state });
    this.showLocal();
    this.updateControls();
  }

  updateControls() {
    const state = this.media.state;
    const mic = $("#toggle-mic");
    mic.textContent = state.audio ? "Mute" : "Unmute";
    mic.setAttribute("aria-pressed", String(!state.audio));
    mic.setAttribute("aria-label", state.audio ? "Mute microphone" : "Unmute microphone");
    const camera = $("#toggle-camera");
    camera.textContent = state.video ? "Camera off" : "Camera on";
    camera.setAttribute("aria-pressed", String(!state.video));
    camera.setAttribute("aria-label", state.video ? "Turn camera off" : "Turn camera on");
    const screen = $("#toggle-screen");
    screen.textContent = state.screen ? "Stop sharing" : "Share screen";
    screen.setAttribute("aria-pressed", String(state.screen));
  }

  async toggleMic() {
    if (!this.media.mic) {
      try {
        const track = await this.media.setDevice("audio", this.media.audioDeviceId);
        this.media.setMicEnabled(true);
        await this.eachPeer((peer) => peer.replaceTrack("audio", track));
      } catch (error) {
        this.alert(explainMediaError(error, "microphone"));
        return;
      }
    } else {
      this.media.setMicEnabled(!this.media.micEnabled);
    }
    this.sendMediaState();
  }

  async toggleCamera() {
    try {
      const track = await this.media.setCamera(!this.media.camera);
      if (!this.media.screen) await this.eachPeer((peer) => peer.replaceTrack("video", track));
    } catch (error) {
      this.alert(explainMediaError(error, "camera"));
    }
    this.sendMediaState();
    this.fillDevices();
  }

  async toggleScreen() {
    if (this.media.screen) return this.stopScreen();
    try {
      const track = await this.media.startScreen();
      await this.eachPeer((peer) => peer.replaceTrack("video", track));
    } catch (error) {
      if (error.name !== "NotAllowedError") this.alert(explainMediaError(error, "screen"));
      return undefined;
    }
    this.sendMediaState();
    return undefined;
  }

  async stopScreen() {
    this.media.stopScreen();
    await this.eachPeer((peer) => peer.replaceTrack("video", this.media.camera));
    this.sendMediaState();
  }

  async eachPeer(action) {
    await Promise.all([...this.peers.values()].map((peer) => action(peer).catch((error) => console.error(error))));
  }

  toggleDevices() {
    const panel = $("#devices");
    panel.hidden = !panel.hidden;
    $("#toggle-devices").setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) this.fillDevices();
  }

  async fillDevices() {
    const devices = await this.media.devices();
    const fill = (select, kind, current) => {
      const list = devices.filter((d) => d.kind === kind);
      select.replaceChildren(...list.map((device, index) => {
        const option = new Option(device.label || `${kind.replace("input", "").replace("output", "")} ${index + 1}`, device.deviceId);
        option.selected = device.deviceId === current;
        return option;
      }));
      select.disabled = list.length === 0;
    };
    fill($("#select-mic"), "audioinput", this.media.mic && this.media.mic.getSettings().deviceId);
    fill($("#select-camera"), "videoinput", this.media.camera && this.media.camera.getSettings().deviceId);
    const canPickSpeaker = "setSinkId" in HTMLMediaElement.prototype && devices.some((d) => d.kind === "audiooutput");
    $("#speaker-field").hidden = !canPickSpeaker;
    if (canPickSpeaker) fill($("#select-speaker"), "audiooutput", this.speakerId || "default");
  }

  async switchDevice(kind, deviceId) {
    try {
      const track = await this.media.setDevice(kind, deviceId);
      if (kind === "audio" || !this.media.screen) await this.eachPeer((peer) => peer.replaceTrack(kind, track));
    } catch (error) {
      this.alert(explainMediaError(error, kind === "audio" ? "microphone" : "camera"));
    }
    this.sendMediaState();
  }

  async switchSpeaker(deviceId) {
    this.speakerId = deviceId;
    for (const video of document.querySelectorAll(".tile:not(.local) video")) {
      if (video.setSinkId) await video.setSinkId(deviceId).catch((error) => this.alert(error.message));
    }
  }

  // --- Chat ------------------------------------------------------------------------------------

  sendChat() {
    const input = $("#chat-input");
    const text = input.value.trim();
    if (!text) return;
    let delivered = 0;
    for (const peer of this.peers.values()) if (peer.sendChat({ text })) delivered += 1;
    this.showChat("You", text, "local", delivered === 0 && this.peers.size > 0 ? "not delivered: nobody connected yet" : "");
    input.value = "";
  }

  showChat(who, text, from, note = "") {
    const item = document.createElement("li");
    item.dataset.from = from;
    const name = document.createElement("strong");
    name.textContent = who;
    const body = document.createElement("span");
    body.className = "chat-text";
    body.textContent = text;
    item.append(name, " ", body);
    if (note) {
      const small = document.createElement("small");
      small.className = "muted";
      small.textContent = ` (${note})`;
      item.append(small);
    }
    const log = $("#chat-log");
    log.append(item);
    log.scrollTop = log.scrollHeight;
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
