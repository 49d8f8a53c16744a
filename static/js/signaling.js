// The signaling socket: /ws/rooms/<slug>/, JSON frames, keep-alive pings, reconnection with backoff.

const PING_SECONDS = 20;
const MAX_BACKOFF_MS = 15000;

// Close codes of the protocol. `retry` says whether a new connection can help.
export const CLOSE_REASONS = {
  1000: { retry: false, message: "You left the call." },
  1006: { retry: true, message: "The connection to the server dropped." },
  1011: { retry: true, message: "The server had a problem." },
  1012: { retry: true, message: "The server is restarting." },
  4401: { retry: false, message: "You are not logged in any more. Log in again to join." },
  4403: { retry: false, message: "You are not allowed in this call, or you were removed from it.",
          inCall: "You were removed from the call by the room's owner or a moderator, or the room was locked." },
  4404: { retry: false, message: "This room does not exist, or it is private.",
          inCall: "The room was deleted." },
  4408: { retry: true, message: "The server stopped hearing from this page." },
  4409: { retry: false, message: "The room is full." },
  4429: { retry: true, message: "This page sent too many messages." },
};

// `inCall`: the close ended a call we had joined. Then 4403 and 4404 come from someone else's action (a kick,
// locking or deleting the room); daphne drops the close frame's reason text, so the code is all the page knows.
export function describeClose(code, { inCall = false } = {}) {
  const known = CLOSE_REASONS[code] || { retry: true, message: `The connection closed (code ${code}).` };
  return inCall && known.inCall ? { ...known, message: known.inCall } : known;
}

export class Signaling extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.socket = null;
    this.attempt = 0;
    this.stopped = false;
    this.pingTimer = null;
    this.retryTimer = null;
  }

  connect() {
    this.stopped = false;
    clearTimeout(this.retryTimer);
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.emit("open", {});
      this.pingTimer = setInterval(() => this.send({ type: "ping" }), PING_SECONDS * 1000);
    });
    socket.addEventListener("message", (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { console.warn("signaling: not JSON", event.data); return; }
      if (frame && typeof frame.type === "string") this.emit("frame", frame);
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      clearInterval(this.pingTimer);
      this.socket = null;
      // After drop() the server echoes whatever it likes (often 1000): it is still a drop.
      const reason = this.dropping ? describeClose(1006) : describeClose(event.code, { inCall: this.welcomed });
      this.dropping = false;
      if (this.welcomed) this.attempt = 0;  // a call that worked starts its backoff afresh
      this.welcomed = false;
      if (this.stopped || !reason.retry) {
        this.emit("closed", { code: event.code, message: reason.message, final: true });
        return;
      }
      // Exponential backoff with jitter: 0.5 s, 1 s, 2 s ... up to 15 s.
      const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
      this.attempt += 1;
      this.emit("closed", { code: event.code, message: reason.message, final: false, retryIn: delay });
      this.retryTimer = setTimeout(() => this.connect(), delay);
    });
  }

  markWelcomed() { this.welcomed = true; }

  send(frame) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  close(code = 1000) {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.socket) this.socket.close(code);
  }

  /** Drop the socket as a network failure would (tests and the "reconnect now" button use it). */
  drop() {
    if (!this.socket) return;
    this.dropping = true;
    this.socket.close(4000);
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }
}
