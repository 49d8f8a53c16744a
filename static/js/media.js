// Local media: the microphone, the camera and the screen, and the tracks we currently send.

export class MediaError extends Error {}

/** A sentence a person can act on, for a getUserMedia / getDisplayMedia failure. */
export function explainMediaError(error, what = "camera or microphone") {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return `Access to the ${what} was denied. Allow it in the browser's site settings (the icon left of the address), then try again. You can still join to listen and watch.`;
    case "NotFoundError":
    case "OverconstrainedError":
      return `No ${what} was found. Plug one in and try again, or join without it.`;
    case "NotReadableError":
    case "AbortError":
      return `The ${what} is in use by another application or could not be started.`;
    case "TypeError":
      return "This page needs a secure connection (https) to use the camera and microphone.";
    default:
      return `The ${what} could not be started${error && error.message ? `: ${error.message}` : "."}`;
  }
}

export class LocalMedia extends EventTarget {
  constructor() {
    super();
    this.stream = new MediaStream(); // what the local tile shows and what senders are associated with
    this.mic = null;
    this.camera = null;
    this.screen = null;
    this.audioDeviceId = "";
    this.videoDeviceId = "";
    this.micEnabled = true;
  }

  get audioTrack() { return this.mic; }
  /** The video we send: the screen while sharing, else the camera (null when both are off). */
  get videoTrack() { return this.screen || this.camera; }

  get state() {
    return {
      audio: Boolean(this.mic && this.micEnabled),
      video: Boolean(this.camera),
      screen: Boolean(this.screen),
    };
  }

  /** Start what the user asked for; returns warnings for what could not start (the call still goes on). */
  async start({ audio, video }) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return ["This browser cannot use a camera or microphone here (a secure https connection is needed). You can still join to listen and watch."];
    }
    const warnings = [];
    if (audio || video) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia({
          audio: audio ? this.constraint(this.audioDeviceId) : false,
          video: video ? this.videoConstraint() : false,
        });
        this.mic = stream.getAudioTracks()[0] || null;
        this.camera = stream.getVideoTracks()[0] || null;
      } catch (error) {
        if (audio && video && error.name !== "NotAllowedError") {
          // One of the two may still work: try each alone.
          const failures = [];
          for (const kind of ["audio", "video"]) {
            try { await this.setDevice(kind, kind === "audio" ? this.audioDeviceId : this.videoDeviceId); }
            catch (inner) { failures.push([kind, inner]); }
          }
          if (failures.length === 2 && failures[0][1].name === failures[1][1].name) {
            warnings.push(explainMediaError(failures[0][1], "camera or microphone"));
          } else {
            for (const [kind, inner] of failures) warnings.push(explainMediaError(inner, kind === "audio" ? "microphone" : "camera"));
          }
        } else {
          warnings.push(explainMediaError(error, audio && video ? "camera and microphone" : audio ? "microphone" : "camera"));
        }
      }
    }
    this.rebuildStream();
    return warnings;
  }

  constraint(deviceId) { return deviceId ? { deviceId: { exact: deviceId } } : true; }

  videoConstraint() {
    return { ...(this.videoDeviceId ? { deviceId: { exact: this.videoDeviceId } } : {}),
             width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 24 } };
  }

  /** Start (or switch) the microphone or camera to a device; resolves to the new track. */
  async setDevice(kind, deviceId) {
    const constraints = kind === "audio"
      ? { audio: this.constraint(deviceId) }
      : { video: { ...this.videoConstraint(), ...(deviceId ? { deviceId: { exact: deviceId } } : {}) } };
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    const track = kind === "audio" ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0];
    if (kind === "audio") {
      if (this.mic) this.mic.stop();
      this.mic = track;
      this.audioDeviceId = deviceId || track.getSettings().deviceId || "";
      track.enabled = this.micEnabled;
    } else {
      if (this.camera) this.camera.stop();
      this.camera = track;
      this.videoDeviceId = deviceId || track.getSettings().deviceId || "";
    }
    this.rebuildStream();
    return track;
  }

  setMicEnabled(enabled) {
    this.micEnabled = enabled;
    if (this.mic) this.mic.enabled = enabled;
  }

  /** Turn the camera off (the light goes off: the track is stopped) or on again. */
  async setCamera(on) {
    if (on && !this.camera) return this.setDevice("video", this.videoDeviceId);
    if (!on && this.camera) {
      this.camera.stop();
      this.camera = null;
      this.rebuildStream();
    }
    return this.camera;
  }

  async startScreen() {
    if (!navigator.mediaDevices.getDisplayMedia) throw new MediaError("This browser cannot share the screen.");
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    this.screen = stream.getVideoTracks()[0];
    // The browser's own "Stop sharing" button ends the track.
    this.screen.addEventListener("ended", () => this.dispatchEvent(new CustomEvent("screen-ended")));
    this.rebuildStream();
    return this.screen;
  }

  stopScreen() {
    if (this.screen) this.screen.stop();
    this.screen = null;
    this.rebuildStream();
  }

  rebuildStream() {
    for (const track of this.stream.getTracks()) this.stream.removeTrack(track);
    if (this.mic) this.stream.addTrack(this.mic);
    if (this.videoTrack) this.stream.addTrack(this.videoTrack);
  }

  async devices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return [];
    return navigator.mediaDevices.enumerateDevices();
  }

  stopAll() {
    for (const track of [this.mic, this.camera, this.screen]) if (track) track.stop();
    this.mic = this.camera = this.screen = null;
    this.rebuildStream();
  }
}
