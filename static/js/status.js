// What the call page says about itself: its state (mirrored in #call[data-state] for tests and CSS), the status
// line, the banner (offline, from navigator.onLine; reconnecting, from the signaling socket), the alert box and
// the log of call events.
import { $ } from "./dom.js";

const IN_CALL = ["joining", "connecting", "joined", "reconnecting"];

export class StatusView {
  constructor(root) {
    this.root = root;
    this.offline = !navigator.onLine;
    window.addEventListener("offline", () => this.setOffline(true));
    window.addEventListener("online", () => this.setOffline(false));
  }

  get state() { return this.root.dataset.state; }

  setState(state, status) {
    this.root.dataset.state = state;
    if (status) this.say(status);
    $("#prejoin").hidden = state !== "idle";
    $("#in-call").hidden = !IN_CALL.includes(state);
    $("#call-ended").hidden = state !== "ended";
    // In the call the page is the call: full window, controls fixed at the bottom.
    document.body.classList.toggle("calling", IN_CALL.includes(state));
    this.renderBanner();
  }

  setOffline(offline) {
    this.offline = offline;
    this.root.dataset.offline = String(offline);
    this.renderBanner();
    this.root.dispatchEvent(new CustomEvent("network", { detail: { offline } }));
  }

  /** One banner: "offline" wins over "reconnecting"; it shows in the call only. */
  renderBanner() {
    const banner = $("#call-banner");
    const inCall = IN_CALL.includes(this.state) && this.state !== "joining";
    const reconnecting = this.state === "reconnecting";
    const offline = this.offline && inCall;
    banner.hidden = !(reconnecting || offline);
    banner.dataset.state = reconnecting ? "reconnecting" : offline ? "offline" : "hidden";
    banner.dataset.offline = String(offline);
    $("#call-banner-text").textContent = offline
      ? "You are offline: the others cannot hear or see you." : "Reconnecting to the server…";
    $("#call-banner-note").textContent = offline
      ? "Parley reconnects as soon as the network is back." : "Your call goes on meanwhile.";
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
