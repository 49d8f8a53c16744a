// What the call page says about itself: its state (mirrored in #call[data-state] for tests and CSS), the status
// line, the reconnection banner, the alert box and the log of call events.
import { $ } from "./dom.js";

const IN_CALL = ["joining", "connecting", "joined", "reconnecting"];

export class StatusView {
  constructor(root) {
    this.root = root;
  }

  get state() { return this.root.dataset.state; }

  setState(state, status) {
    this.root.dataset.state = state;
    if (status) this.say(status);
    $("#prejoin").hidden = state !== "idle";
    $("#in-call").hidden = !IN_CALL.includes(state);
    $("#call-ended").hidden = state !== "ended";
    const banner = $("#call-banner");
    banner.hidden = state !== "reconnecting";
    banner.dataset.state = state === "reconnecting" ? "reconnecting" : "hidden";
  }

  say(status) { $("#call-status").textContent = status; }

  /** The banner counts the attempts to reach the server. */
  showAttempt(attempt) {
    $("#call-banner").dataset.attempt = String(attempt);
    $("#call-banner-attempt").textContent = `(attempt ${attempt})`;
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
}
