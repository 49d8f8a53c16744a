// The pre-join screen: camera preview, microphone level, device choice (remembered per browser), who is in the
// call and whether there is room. The room's state comes from the server (rendered, then polled); a full room or
// a refused join is said before the camera starts. The preview's tracks are its own: Join starts the call's.
import { $ } from "./dom.js";
import { explainMediaError } from "./media.js";

const DEVICES_KEY = "parley.devices"; // {audio, video, speaker}: device ids chosen, per browser
const POLL_MS = 5000;

export function chosenDevices() {
  try { return JSON.parse(localStorage.getItem(DEVICES_KEY)) || {}; } catch { return {}; }
}

export function rememberDevice(kind, deviceId) {
  const devices = chosenDevices();
  devices[kind] = deviceId || "";
  try { localStorage.setItem(DEVICES_KEY, JSON.stringify(devices)); } catch { /* storage disabled */ }
}

/** Make the call use the devices chosen here (or remembered from an earlier visit), where they still exist. */
export async function useChosenDevices(media, tiles) {
  const chosen = chosenDevices();
  const present = new Set((await media.devices()).map((device) => device.deviceId));
  media.audioDeviceId = present.has(chosen.audio) ? chosen.audio : "";
  media.videoDeviceId = present.has(chosen.video) ? chosen.video : "";
  if (chosen.speaker && present.has(chosen.speaker)) tiles.speakerId = chosen.speaker;
}

export class PreJoin extends EventTarget {
  constructor({ stateUrl, initial, onJoin }) {
    super();
    this.stateUrl = stateUrl;
    this.state = initial;
    this.onJoin = onJoin;
    this.stream = null;
    this.meter = null;
    this.timer = null;
    this.active = false;

    $("#prejoin-form").addEventListener("submit", (event) => { event.preventDefault(); this.join(); });
    $("#join-video").addEventListener("change", () => this.restartPreview());
    $("#join-audio").addEventListener("change", () => this.restartPreview());
    for (const [id, kind] of [["#prejoin-camera", "video"], ["#prejoin-mic", "audio"], ["#prejoin-speaker", "speaker"]]) {
      $(id).addEventListener("change", (event) => {
        rememberDevice(kind, event.target.value);
        if (kind !== "speaker") this.restartPreview();
      });
    }
  }

  get devices() {
    const stored = chosenDevices();
    return { audio: stored.audio || "", video: stored.video || "", speaker: stored.speaker || "" };
  }

  /** Show the screen: the room's state at once, the preview if there is room, then keep the state fresh. A ring
   *  just answered (ringing.js opens the room with ?join=1) joins at once instead: the person said yes already. */
  async open() {
    if (new URLSearchParams(location.search).get("join") === "1") {
      history.replaceState(null, "", location.pathname); // a reload shows the screen
      return this.join();
    }
    this.active = true;
    this.render(this.state);
    clearInterval(this.timer);
    this.timer = setInterval(() => this.refresh(), POLL_MS);
    if (this.state && this.state.may_join && !this.state.full) await this.startPreview();
    else await this.fillDevices();
  }

  close() {
    this.active = false;
    clearInterval(this.timer);
    this.stopPreview();
  }

  /** The room's call state now, from the server (null if it cannot be had). */
  async fetchState() {
    try {
      const response = await fetch(this.stateUrl, { headers: { Accept: "application/json" }, cache: "no-store" });
      if (response.ok) this.state = await response.json();
      return response.ok ? this.state : null;
    } catch (error) {
      console.info("call state unavailable:", error.message);
      return null;
    }
  }

  /** Why joining now would be refused (full, removed, locked), asked afresh; "" when it would not. */
  async blocker() {
    const state = await this.fetchState();
    if (!state || (state.may_join && !state.full)) return "";
    return state.may_join ? `The call is full (${state.max} people). Try again when someone leaves.` : state.refusal;
  }

  /** After a 4403: what the server says now (removed, and for how long; locked), with the page's message. */
  async whyRefused(message) {
    const state = await this.fetchState();
    if (!state || state.may_join || !state.refusal) return null;
    const text = message && message !== state.refusal && !message.startsWith("You are not allowed")
      ? `${message} ${state.refusal}` : state.refusal;
    return { refusal: state.refusal, text };
  }

  async refresh() {
    if (!this.active) return this.state;
    await this.fetchState();
    if (this.active) {
      const wasBlocked = this.blocked;
      this.render(this.state);
      if (wasBlocked && !this.blocked && !this.stream) this.startPreview();
    }
    return this.state;
  }

  get blocked() { return !this.state || !this.state.may_join || this.state.full; }

  render(state) {
    if (!state) return;
    const presence = $("#call-presence");
    presence.dataset.live = String(state.live);
    $("[data-live-participants]", presence).textContent = state.people.length
      ? `In the call now: ${state.people.join(", ")}` : "Nobody is in the call yet.";
    const capacity = $("#room-capacity");
    capacity.dataset.full = String(state.full);
    capacity.dataset.count = String(state.count);
    capacity.textContent = `${state.count} of ${state.max}${state.full ? ", full" : ""}`;
    const refusal = $("#prejoin-refusal");
    const why = !state.may_join ? state.refusal
      : state.full ? `The call is full (${state.max} people). You can join when someone leaves.` : "";
    refusal.textContent = why;
    refusal.hidden = !why;
    $("#join-button").disabled = Boolean(why);
    if (why) {
      this.stopPreview();
      $("#preview-note").textContent = state.full ? "No camera until there is room." : "No camera: you cannot join now.";
    }
  }

  /** Join: the room's state is checked first (fresh), so a full room or a ban is told before any camera. */
  async join() {
    const state = await this.refresh();
    if (this.blocked) return;
    const options = { audio: $("#join-audio").checked, video: $("#join-video").checked };
    this.close();
    this.onJoin(options, state);
  }

  async restartPreview() {
    if (!this.active || this.blocked) return;
    this.stopPreview();
    await this.startPreview();
  }

  async startPreview() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return;
    const audio = $("#join-audio").checked;
    const video = $("#join-video").checked;
    const { audio: audioId, video: videoId } = this.devices;
    const frame = $("#preview-frame");
    if (!audio && !video) {
      frame.dataset.video = "false";
      $("#preview-note").textContent = "Camera and microphone off: you will listen and watch.";
      await this.fillDevices();
      return;
    }
    try {
      const ask = (audioDevice, videoDevice) => navigator.mediaDevices.getUserMedia({
        audio: audio ? (audioDevice ? { deviceId: { exact: audioDevice } } : true) : false,
        video: video ? { ...(videoDevice ? { deviceId: { exact: videoDevice } } : {}), width: { ideal: 640 }, height: { ideal: 480 } } : false,
      });
      // A remembered device that is gone (unplugged, or another browser profile) falls back to the default.
      const stream = await ask(audioId, videoId).catch((error) => {
        if ((audioId || videoId) && ["OverconstrainedError", "NotFoundError"].includes(error.name)) return ask("", "");
        throw error;
      });
      if (!this.active || this.blocked) { for (const track of stream.getTracks()) track.stop(); return; }
      this.stopPreview();
      this.stream = stream;
      const preview = $("#preview-video");
      preview.srcObject = stream;
      preview.play().catch(() => {});
      frame.dataset.video = String(stream.getVideoTracks().length > 0);
      $("#preview-note").textContent = video ? "" : "Camera off";
      if (audio) this.startMeter(stream);
      this.dispatchEvent(new CustomEvent("preview"));
    } catch (error) {
      frame.dataset.video = "false";
      $("#preview-note").textContent = explainMediaError(error, video && audio ? "camera or microphone" : video ? "camera" : "microphone");
    }
    await this.fillDevices();
  }

  stopPreview() {
    if (this.meter) { this.meter.stop(); this.meter = null; }
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.stream = null;
    const preview = $("#preview-video");
    if (preview) preview.srcObject = null;
    $("#mic-level").value = 0;
  }

  startMeter(stream) {
    if (!stream.getAudioTracks().length || !window.AudioContext) return;
    const context = new AudioContext();
    const analyser = context.createAnalyser();
    analyser.fftSize = 512;
    context.createMediaStreamSource(stream).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    const meter = $("#mic-level");
    const timer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const sample of samples) sum += sample * sample;
      const level = Math.min(1, Math.sqrt(sum / samples.length) * 4);
      meter.value = level;
      meter.textContent = `${Math.round(level * 100)}%`;
      meter.closest(".mic-meter").dataset.level = level.toFixed(3);
    }, 100);
    this.meter = { stop: () => { clearInterval(timer); context.close().catch(() => {}); } };
  }

  async fillDevices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    const devices = await navigator.mediaDevices.enumerateDevices();
    const chosen = this.devices;
    const current = (kind) => {
      if (chosen[kind] && devices.some((device) => device.deviceId === chosen[kind])) return chosen[kind];
      const track = this.stream && (kind === "audio" ? this.stream.getAudioTracks()[0] : this.stream.getVideoTracks()[0]);
      return track ? track.getSettings().deviceId : "";
    };
    const fill = (select, kind, selected, fallback) => {
      const list = devices.filter((device) => device.kind === kind && device.deviceId);
      if (!list.length) return;
      select.replaceChildren(...list.map((device, index) => {
        const option = new Option(device.label || `${fallback} ${index + 1}`, device.deviceId);
        option.selected = device.deviceId === selected;
        return option;
      }));
      select.disabled = false;
    };
    fill($("#prejoin-camera"), "videoinput", current("video"), "Camera");
    fill($("#prejoin-mic"), "audioinput", current("audio"), "Microphone");
    const canPickSpeaker = "setSinkId" in HTMLMediaElement.prototype && devices.some((d) => d.kind === "audiooutput" && d.deviceId);
    $("#prejoin-speaker-field").hidden = !canPickSpeaker;
    if (canPickSpeaker) fill($("#prejoin-speaker"), "audiooutput", chosen.speaker || "default", "Speaker");
  }
}
