// The video tiles: the local one and one per remote peer, with the layout and the speaking indicator.
// Each tile mirrors its peer's state in data-* attributes (tests and CSS read them).
import { $, nameOf } from "./dom.js";

const SPEAKING_LEVEL = 0.02;

export class Tiles {
  /**
   * @param {object} options
   * @param {boolean} options.canModerate  whether tiles get a Remove button
   * @param {(peer) => void} options.onKick  the Remove button of a peer's tile was pressed
   */
  constructor({ canModerate, onKick }) {
    this.container = $("#tiles");
    this.template = $("#tile-template");
    this.canModerate = Boolean(canModerate);
    this.onKick = onKick;
    this.speakerId = null;
    this.speakingTimer = null;
  }

  /** A tile for a new peer, following its media and connection state from now on. */
  add(peer) {
    const tile = this.template.content.firstElementChild.cloneNode(true);
    tile.dataset.peerId = peer.peerId;
    const video = $("video", tile);
    video.srcObject = peer.remoteStream;
    if (this.speakerId && video.setSinkId) video.setSinkId(this.speakerId).catch(() => {});
    const kick = $(".tile-kick", tile);
    kick.hidden = !this.canModerate;
    kick.addEventListener("click", () => this.onKick(peer));
    peer.tile = tile;
    this.container.append(tile);
    this.update(peer);
    this.layout();

    peer.addEventListener("track", () => video.play().catch(() => {}));
    peer.addEventListener("state", () => this.update(peer));
    peer.addEventListener("signaling", () => this.update(peer));
  }

  update(peer) {
    const tile = peer.tile;
    if (!tile) return;
    const name = nameOf(peer.user);
    const media = peer.media || { audio: true, video: true, screen: false };
    // data-state: what the tile says, "reconnecting" while their signaling is suspended (their media element and
    // our connection to them stay), else the connection's state.
    const state = peer.presence === "reconnecting" ? "reconnecting" : peer.connectionState;
    tile.dataset.state = state;
    tile.dataset.presence = peer.presence;
    tile.dataset.connectionState = peer.connectionState;
    tile.dataset.signalingState = peer.pc.signalingState;
    tile.dataset.audio = String(media.audio);
    tile.dataset.video = String(media.video || media.screen);
    tile.dataset.screen = String(media.screen);
    tile.setAttribute("aria-label", `${name}: ${media.audio ? "microphone on" : "muted"}, ${state}`);
    $(".tile-name", tile).textContent = name;
    $(".avatar", tile).textContent = name.slice(0, 1).toUpperCase();
    $(".tile-state", tile).textContent = state === "connected" ? "" : state;
    $(".tile-kick", tile).setAttribute("aria-label", `Remove ${name} from the call`);
  }

  remove(peer) {
    if (peer.tile) peer.tile.remove();
    peer.tile = null;
    this.layout();
  }

  layout() {
    this.container.dataset.count = String(this.container.querySelectorAll(".tile").length);
  }

  showLocal(media) {
    const video = $("#local-video");
    video.srcObject = media.stream;
    video.classList.toggle("mirrored", !media.screen);
    const tile = video.closest(".tile");
    const state = media.state;
    tile.dataset.audio = String(state.audio);
    tile.dataset.video = String(state.video || state.screen);
    tile.dataset.screen = String(state.screen);
    video.play().catch(() => {});
  }

  /** Play remote audio through this output device (where the browser lets a page choose). */
  async setSpeaker(deviceId, onError) {
    this.speakerId = deviceId;
    for (const video of this.container.querySelectorAll(".tile:not(.local) video")) {
      if (video.setSinkId) await video.setSinkId(deviceId).catch((error) => onError(error));
    }
  }

  // --- Speaking indicator ----------------------------------------------------------------------

  /** Outline the tiles of the peers who speak; `peers` is called for the current ones on every tick. */
  startSpeaking(peers) {
    this.stopSpeaking();
    this.speakingTimer = setInterval(async () => {
      for (const peer of peers()) {
        if (!peer.tile) continue;
        let level = 0;
        try { level = await peer.audioLevel(); } catch { level = 0; }
        const speaking = level > SPEAKING_LEVEL && (!peer.media || peer.media.audio);
        if (peer.tile) peer.tile.dataset.speaking = String(speaking);
      }
    }, 400);
  }

  stopSpeaking() { clearInterval(this.speakingTimer); }
}
