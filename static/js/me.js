// The per-user socket /ws/me/ (docs/signaling.md): one shared connection per tab, on every page while logged in.
// Other modules listen with `me.on(type, handler)`. It reconnects with backoff, pings so that the server knows the
// tab is alive, keeps the live-room badges ([data-live-room]) and the missed-call count up to date, and starts the
// ringing UI (ringing.js).
import { startRinging } from "./ringing.js";

const PING_MS = 10_000;
const MAX_BACKOFF_MS = 30_000;
const NO_RETRY = new Set([4401, 4403]); // not logged in any more, or a foreign origin: reconnecting cannot help

class MeSocket extends EventTarget {
  constructor() {
    super();
    this.socket = null;
    this.attempt = 0;
    this.stopped = false;
    this.user = null;
    this.pinger = null;
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/me/`);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.pinger = setInterval(() => this.send({ type: "ping" }), PING_MS);
    });
    socket.addEventListener("message", (event) => this.received(event.data));
    socket.addEventListener("close", (event) => {
      clearInterval(this.pinger);
      document.body.dataset.me = "disconnected";
      if (this.stopped || NO_RETRY.has(event.code)) return;
      const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
      this.attempt += 1;
      setTimeout(() => this.connect(), delay);
    });
  }

  received(text) {
    let frame;
    try { frame = JSON.parse(text); } catch { return; }
    if (!frame || typeof frame.type !== "string") return;
    if (frame.type === "welcome") {
      this.user = frame.user;
      this.attempt = 0;
      document.body.dataset.me = "connected";
    }
    this.dispatchEvent(new CustomEvent(frame.type, { detail: frame }));
  }

  on(type, handler) {
    this.addEventListener(type, (event) => handler(event.detail));
  }

  send(frame) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(frame));
  }

  stop() {
    this.stopped = true;
    if (this.socket) this.socket.close(1000);
  }
}

export const me = new MeSocket();

// Who is in a room's call right now, wherever the page shows that room.
me.on("room-live", (frame) => {
  const names = frame.participants.map((user) => user.display_name || user.username);
  for (const element of document.querySelectorAll(`[data-live-room="${CSS.escape(frame.room.slug)}"]`)) {
    element.dataset.live = String(names.length > 0); // shows its Live badge (call.css)
    element.dataset.liveCount = String(names.length);
    const people = element.querySelector("[data-live-participants]");
    if (!people) continue;
    const format = people.dataset.format || "{names} in the call"; // as the server renders it there
    people.textContent = names.length ? format.replace("{names}", names.join(", ")) : (people.dataset.empty || "");
  }
});

// A missed call raises the count in the navigation bar (My calls resets it).
me.on("ring-ended", (frame) => {
  if (frame.ring.state !== "missed" || !me.user || frame.ring.callee.id !== me.user.id) return;
  if (location.pathname === "/calls/") return;
  let badge = document.getElementById("missed-count");
  if (!badge) {
    badge = document.createElement("span");
    badge.id = "missed-count";
    badge.className = "badge missed";
    badge.title = "Missed calls";
    badge.textContent = "0";
    document.getElementById("nav-my-calls")?.append(" ", badge);
  }
  badge.textContent = String(Number(badge.textContent) + 1);
});

startRinging(me);
me.connect();
window.addEventListener("pagehide", () => me.stop());
