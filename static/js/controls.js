// The call controls: the fixed bar (microphone, camera, screen sharing, devices, chat, shortcuts help, leave) and
// the keyboard shortcuts. What we send changes by replacing tracks on every peer's senders: no renegotiation.
import { $ } from "./dom.js";
import { explainMediaError } from "./media.js";
import { rememberDevice } from "./prejoin.js";

/** Whether this browser can share a screen at all (phones cannot): the button is hidden where it cannot. */
export const CAN_SHARE_SCREEN = Boolean(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);

export class Controls {
  /**
   * @param {object} options
   * @param {import("./media.js").LocalMedia} options.media
   * @param {import("./tiles.js").Tiles} options.tiles
   * @param {(action: (peer) => Promise<void>) => Promise<void>} options.eachPeer  runs an action on every peer
   * @param {() => void} options.onChange  what we send changed: tell the others
   * @param {(message: string) => void} options.alert
   */
  constructor({ media, tiles, eachPeer, onChange, alert, inCall }) {
    this.inCall = inCall || (() => true);
    this.media = media;
    this.tiles = tiles;
    this.eachPeer = eachPeer;
    this.onChange = onChange;
    this.alert = alert;

    $("#toggle-mic").addEventListener("click", () => this.toggleMic());
    $("#toggle-camera").addEventListener("click", () => this.toggleCamera());
    $("#toggle-screen").addEventListener("click", () => this.toggleScreen());
    $("#toggle-devices").addEventListener("click", () => this.toggleDevices());
    $("#toggle-chat").addEventListener("click", () => this.toggleChat());
    $("#close-chat").addEventListener("click", () => this.toggleChat(false));
    $("#show-shortcuts").addEventListener("click", () => this.showShortcuts());
    $("#toggle-screen").hidden = !CAN_SHARE_SCREEN;
    document.addEventListener("keydown", (event) => this.onKey(event));
    // The chat is a side panel on wide screens and covers the call on narrow ones: going narrow closes it.
    window.matchMedia("(max-width: 800px)").addEventListener("change", (event) => {
      if (event.matches && !$("#side-panel").hidden) this.toggleChat(false);
    });
    $("#select-mic").addEventListener("change", (event) => this.switchDevice("audio", event.target.value));
    $("#select-camera").addEventListener("change", (event) => this.switchDevice("video", event.target.value));
    $("#select-speaker").addEventListener("change", (event) => this.switchSpeaker(event.target.value));
    this.media.addEventListener("screen-ended", () => this.stopScreen());
  }

  update() {
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
    this.onChange();
  }

  async toggleCamera() {
    try {
      const track = await this.media.setCamera(!this.media.camera);
      if (!this.media.screen) await this.eachPeer((peer) => peer.replaceTrack("video", track));
    } catch (error) {
      this.alert(explainMediaError(error, "camera"));
    }
    this.onChange();
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
    this.onChange();
    return undefined;
  }

  async stopScreen() {
    this.media.stopScreen();
    await this.eachPeer((peer) => peer.replaceTrack("video", this.media.camera));
    this.onChange();
  }

  /** Keyboard shortcuts (documented in the ? overlay), only in the call and never while typing. */
  onKey(event) {
    if (!this.inCall() || event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
    if (document.querySelector("dialog[open]")) return;
    const actions = {
      m: () => this.toggleMic(), v: () => this.toggleCamera(), s: () => CAN_SHARE_SCREEN && this.toggleScreen(),
      c: () => this.toggleChat(), d: () => this.toggleDevices(), f: () => this.tiles.fullscreen(),
      "?": () => this.showShortcuts(),
    };
    const action = actions[event.key.length === 1 ? event.key.toLowerCase() : event.key];
    if (!action) return;
    event.preventDefault();
    action();
  }

  showShortcuts() {
    const dialog = $("#shortcuts");
    if (!dialog.open) dialog.showModal();
  }

  toggleChat(open) {
    const panel = $("#side-panel");
    panel.hidden = open === undefined ? !panel.hidden : !open;
    $("#toggle-chat").setAttribute("aria-expanded", String(!panel.hidden));
    $("#call").dataset.chat = String(!panel.hidden);
    if (!panel.hidden) {
      $("#chat-unread").hidden = true;
      $("#chat-unread").textContent = "";
      $("#chat-input").focus();
    }
    this.tiles.layout();
  }

  /** A message arrived: counted on the Chat button while the panel is closed. */
  noteUnread() {
    if (!$("#side-panel").hidden) return;
    const badge = $("#chat-unread");
    badge.textContent = String((Number(badge.textContent) || 0) + 1);
    badge.hidden = false;
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
    if (canPickSpeaker) fill($("#select-speaker"), "audiooutput", this.tiles.speakerId || "default");
  }

  async switchDevice(kind, deviceId) {
    try {
      const track = await this.media.setDevice(kind, deviceId);
      rememberDevice(kind, deviceId);
      if (kind === "audio" || !this.media.screen) await this.eachPeer((peer) => peer.replaceTrack(kind, track));
    } catch (error) {
      this.alert(explainMediaError(error, kind === "audio" ? "microphone" : "camera"));
    }
    this.onChange();
  }

  switchSpeaker(deviceId) {
    rememberDevice("speaker", deviceId);
    return this.tiles.setSpeaker(deviceId, (error) => this.alert(error.message));
  }
}
