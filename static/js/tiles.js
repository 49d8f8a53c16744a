// The video tiles: the local one and one per remote peer, with the layout (a grid of 1-16, or a main stage for a
// pinned tile or a shared screen), each tile's menu (pin, full screen, remove), the speaking indicator and the
// connection quality. Each tile mirrors its peer's state in data-* attributes (tests and CSS read them).
import { $, nameOf } from "./dom.js";

const SPEAKING_LEVEL = 0.02;

export class Tiles {
  /**
   * @param {object} options
   * @param {boolean} options.canModerate  whether remote tiles' menus offer Remove
   * @param {(peer) => void} options.onKick  Remove was confirmed for a peer
   */
  constructor({ canModerate, onKick }) {
    this.container = $("#tiles");
    this.template = $("#tile-template");
    this.canModerate = Boolean(canModerate);
    this.onKick = onKick;
    this.speakerId = null;
    this.speakingTimer = null;
    this.pinned = null;       // the tile the user pinned (null: none)
    this.autoPinned = null;   // a remote shared screen, on the stage until the user pins something else
    this.peersByTile = new WeakMap();
    this.menu = $("#tile-menu");
    this.menuTile = null;

    this.bindMenu($(".tile.local", this.container));
    this.menu.addEventListener("click", (event) => {
      const item = event.target.closest("[data-action]");
      if (item) this.act(item.dataset.action, this.menuTile);
    });
    document.addEventListener("click", (event) => {
      if (!this.menu.hidden && !event.target.closest("#tile-menu, .tile-menu-button")) this.closeMenu();
    });
    document.addEventListener("keydown", (event) => { if (event.key === "Escape") this.closeMenu(); });
    $("#kick-dialog").addEventListener("close", () => {
      const peer = this.kickPending;
      this.kickPending = null;
      if (peer && $("#kick-dialog").returnValue === "remove") this.onKick(peer);
    });
    new ResizeObserver(() => this.layout()).observe(this.container);
  }

  /** A tile for a new peer, following its media and connection state from now on. */
  add(peer) {
    const tile = this.template.content.firstElementChild.cloneNode(true);
    tile.dataset.peerId = peer.peerId;
    const video = $("video", tile);
    video.srcObject = peer.remoteStream;
    if (this.speakerId && video.setSinkId) video.setSinkId(this.speakerId).catch(() => {});
    peer.tile = tile;
    this.peersByTile.set(tile, peer);
    this.bindMenu(tile);
    tile.addEventListener("dblclick", () => this.togglePin(tile));
    this.container.append(tile);
    this.update(peer);
    this.layout();
    this.follow(peer, video);
  }

  follow(peer, video) {
    peer.addEventListener("track", () => video.play().catch(() => {}));
    peer.addEventListener("state", () => this.update(peer));
    peer.addEventListener("signaling", () => this.update(peer));
  }

  /** `peer` takes over `old`'s tile, where it stands, pinned or not (a call moving from the mesh to the SFU). */
  adopt(old, peer) {
    const tile = old.tile;
    if (!tile) return this.add(peer);
    old.tile = null;
    peer.tile = tile;
    this.peersByTile.set(tile, peer);
    const video = $("video", tile);
    video.srcObject = peer.remoteStream;
    this.follow(peer, video);
    this.update(peer);
    return undefined;
  }

  bindMenu(tile) {
    const button = $(".tile-menu-button", tile);
    button.addEventListener("click", (event) => {
      event.stopPropagation();
      if (this.menuTile === tile && !this.menu.hidden) this.closeMenu();
      else this.openMenu(tile);
    });
  }

  openMenu(tile) {
    this.closeMenu();
    const peer = this.peersByTile.get(tile);
    this.menuTile = tile;
    $('[data-action="pin"]', this.menu).textContent = this.stageTile() === tile ? "Unpin" : "Pin";
    $('[data-action="fullscreen"]', this.menu).hidden = !tile.requestFullscreen;
    const kick = $('[data-action="kick"]', this.menu);
    kick.hidden = !(this.canModerate && peer);
    if (peer) kick.textContent = `Remove ${nameOf(peer.user)} from the call…`;
    tile.append(this.menu);
    this.menu.hidden = false;
    $(".tile-menu-button", tile).setAttribute("aria-expanded", "true");
    const first = this.menu.querySelector("button:not([hidden])");
    if (first) first.focus();
  }

  closeMenu() {
    if (this.menu.hidden) return;
    this.menu.hidden = true;
    if (this.menuTile) $(".tile-menu-button", this.menuTile).setAttribute("aria-expanded", "false");
    this.menuTile = null;
  }

  act(action, tile) {
    this.closeMenu();
    if (!tile) return;
    if (action === "pin") this.togglePin(tile);
    else if (action === "fullscreen") this.fullscreen(tile);
    else if (action === "kick") this.confirmKick(this.peersByTile.get(tile));
  }

  confirmKick(peer) {
    if (!peer) return;
    this.kickPending = peer;
    $("#kick-name").textContent = nameOf(peer.user);
    const dialog = $("#kick-dialog");
    dialog.returnValue = "";
    dialog.showModal();
    $("#kick-confirm").focus();
  }

  togglePin(tile) {
    if (this.stageTile() === tile) {
      this.pinned = null;
      if (this.autoPinned === tile) this.autoPinned = null; // a screen unpinned stays off the stage
    } else {
      this.pinned = tile;
    }
    this.layout();
  }

  fullscreen(tile) {
    tile = tile || this.stageTile() || this.container.querySelector(".tile:not(.local)") || this.container.querySelector(".tile");
    if (!tile) return undefined;
    if (document.fullscreenElement) return document.exitFullscreen().catch(() => {});
    return tile.requestFullscreen ? tile.requestFullscreen().catch((error) => console.info("full screen:", error.message)) : undefined;
  }

  /** The tile on the main stage: the pinned one, else a remote shared screen, else none (a grid). */
  stageTile() {
    if (this.pinned && this.pinned.isConnected) return this.pinned;
    if (this.autoPinned && this.autoPinned.isConnected) return this.autoPinned;
    return null;
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
    const wasScreen = tile.dataset.screen === "true";
    tile.dataset.screen = String(media.screen);
    const poor = tile.dataset.quality === "poor" && state === "connected";
    tile.setAttribute("aria-label", `${name}: ${media.audio ? "microphone on" : "muted"}, ${poor ? "connection unstable" : state}`);
    $(".tile-name", tile).textContent = name;
    $(".avatar", tile).textContent = name.slice(0, 1).toUpperCase();
    $(".tile-state", tile).textContent = state === "connected" ? (poor ? "Connection unstable" : "") : state;
    $(".tile-menu-button", tile).setAttribute("aria-label", `Options for ${name}`);
    // A shared screen takes the stage by itself (until the user pins another tile or unpins it).
    if (media.screen && !wasScreen && !this.pinned) this.autoPinned = tile;
    if (!media.screen && this.autoPinned === tile) this.autoPinned = null;
    if (media.screen !== wasScreen) this.layout();
  }

  /** The connection quality of a peer (quality.js): "good", "poor" (loss, round trip) or "frozen" video. */
  setQuality(peer, quality, detail = "") {
    const tile = peer.tile;
    if (!tile || tile.dataset.quality === quality) return;
    tile.dataset.quality = quality;
    tile.dataset.qualityDetail = detail;
    if (quality === "frozen") tile.dataset.quality = "poor";
    this.update(peer);
  }

  remove(peer) {
    if (peer.tile) {
      if (this.menuTile === peer.tile) this.closeMenu();
      if (this.pinned === peer.tile) this.pinned = null;
      if (this.autoPinned === peer.tile) this.autoPinned = null;
      peer.tile.remove();
    }
    peer.tile = null;
    this.layout();
  }

  /** Columns for `count` tiles in a box `width` x `height`: the arrangement whose tiles (4:3, or 3:4 in a
   *  portrait box) are the largest. */
  static columnsFor(count, width, height) {
    let best = 1;
    let bestSize = 0;
    const aspect = height > width ? 3 / 4 : 4 / 3; // portrait tiles on a portrait screen (a phone)
    for (let columns = 1; columns <= count; columns += 1) {
      const rows = Math.ceil(count / columns);
      const tileWidth = Math.min(width / columns, (height / rows) * aspect);
      if (tileWidth > bestSize + 0.5) { best = columns; bestSize = tileWidth; }
    }
    return best;
  }

  layout() {
    const tiles = [...this.container.querySelectorAll(":scope > .tile")];
    const count = tiles.length;
    this.container.dataset.count = String(count);
    const stage = this.stageTile();
    this.container.dataset.layout = stage && count > 1 ? "stage" : "grid";
    for (const tile of tiles) tile.dataset.pinned = String(tile === stage && count > 1);
    const width = this.container.clientWidth || 1;
    const height = this.container.clientHeight || 1;
    if (this.container.dataset.layout === "grid") {
      const columns = Tiles.columnsFor(count, width, height);
      this.container.style.setProperty("--columns", String(columns));
      this.container.style.setProperty("--rows", String(Math.ceil(count / columns)));
    } else {
      this.container.style.setProperty("--others", String(Math.max(count - 1, 1)));
    }
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
