// What the call page says about itself: its state (mirrored in #call[data-state] for tests and CSS), the status
// line, the banner (offline, from navigator.onLine; reconnecting, from the signaling socket), the alert box and
// the log of call events.
import { $ } from "./dom.js";

const IN_CALL = ["joining", "connecting", "joined", "reconnecting"];
const LOST_CONNECTION = new Set(["disconnected", "failed", "closed"]);
export const LEAVE_REASONS = {
  left: "left",
  disconnected: "lost their connection",
  kicked: "was removed",
  "timed-out": "timed out",
  "server-shutdown": "was disconnected (server restart)",
  "room-closed": "left (the room was deleted)",
  "room-locked": "left (the room was locked)",
};

export function inCallText(others) {
  return others ? `In the call with ${others} other ${others === 1 ? "person" : "people"}.`
                : "You are the first one here. Waiting for others…";
}

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

  /** The status line while in the call: an event's text, unless the truth is worse (offline, nobody can be heard
   *  from, every connection unstable); after such a spell it says who is in the call again. */
  tell(peers, text) {
    if (this.offline && ["joined", "reconnecting"].includes(this.state)) {
      this.say("You are offline: nobody can hear or see you until the network is back.");
      this.wasUntrue = true;
      return;
    }
    if (this.state !== "joined") return;
    const lost = peers.length > 0
      && peers.every((peer) => peer.presence === "reconnecting" || LOST_CONNECTION.has(peer.connectionState));
    const unstable = !lost && peers.length > 0 && peers.every((peer) => peer.tile && peer.tile.dataset.quality === "poor");
    const recovered = (this.peersLost && !lost) || (this.wasUnstable && !unstable) || this.wasUntrue;
    this.peersLost = lost;
    this.wasUnstable = unstable;
    this.wasUntrue = false;
    this.root.dataset.peersLost = String(lost);
    this.root.dataset.unstable = String(unstable);
    if (lost) this.say("Connection lost, waiting for others…");
    else if (unstable) this.say("Your connection is unstable: the others may not hear or see you well.");
    else if (text || recovered) this.say(text || inCallText(peers.length));
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
