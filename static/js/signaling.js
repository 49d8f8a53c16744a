// The signaling socket: /ws/rooms/<slug>/, JSON frames, liveness pings, reconnection with backoff, and an outbox
// for the frames the page sends while the socket is down (sent after a resume, dropped after a fresh join).

const PING_MS = 10000;         // a ping every 10 s once welcomed...
const PONG_MS = 5000;          // ...and the socket is dead when nothing at all arrives within 5 s of one
const WELCOME_MS = 10000;      // a connection that has not welcomed us by then is given up (server hung)
const FIRST_BACKOFF_MS = 500;  // after the first retry, which is immediate: 0.5 s, 1 s, 2 s ... 10 s, with jitter
const MAX_BACKOFF_MS = 10000;
const OUTBOX_LIMIT = 500;
// The server closes a client that leaves more than 1 MiB unacknowledged (4413): acknowledge well before that.
const ACK_CHARS = 256 * 1024;

// Close codes of the protocol. `retry` says whether a new connection can help.
export const CLOSE_REASONS = {
  1000: { retry: false, message: "You left the call." },
  1006: { retry: true, message: "The connection to the server dropped." },
  1011: { retry: true, message: "The server had a problem." },
  1012: { retry: true, message: "The server is restarting." },
  4012: { retry: true, message: "The server is restarting." },
  4503: { retry: true, message: "The server is busy. Trying again..." },
  4401: { retry: false, message: "You are not logged in any more. Log in again to join." },
  4403: { retry: false, message: "You are not allowed in this call, or you were removed from it.",
          inCall: "You were removed from the call by the room's owner or a moderator, or the room was locked." },
  4404: { retry: false, message: "This room does not exist, or it is private.",
          inCall: "The room was deleted." },
  4408: { retry: true, message: "The server stopped hearing from this page." },
  4402: { retry: false, message: "Your account's quota is used up (calls at once, or call minutes this month)." },
  4409: { retry: false, message: "The room is full." },
  4410: { retry: false, message: "You are in this call from another tab or device now, so this page left it." },
  4429: { retry: true, message: "This page sent too many messages." },
  4413: { retry: true, message: "This page fell behind reading the call's messages." },
  1007: { retry: false, message: "This page sent a message the server could not read." },
  1009: { retry: true, message: "This page sent a message too large for the server." },
};

// `inCall`: the close ended a call we had joined. Then 4403 and 4404 come from someone else's action (a kick,
// locking or deleting the room); daphne drops the close frame's reason text, so the code is all the page knows.
export function describeClose(code, { inCall = false } = {}) {
  const known = CLOSE_REASONS[code] || { retry: true, message: `The connection closed (code ${code}).` };
  return inCall && known.inCall ? { ...known, message: known.inCall } : known;
}

/** Milliseconds to wait before reconnection attempt number `attempt` (1 is the first after a loss). */
export function backoff(attempt) {
  if (attempt <= 1) return 0;
  return Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** (attempt - 2)) * (0.75 + Math.random() / 2);
}

export class Signaling extends EventTarget {
  /** @param {string | (() => string)} url  a function is asked again before every attempt (resume parameters)
   *  @param {{lastSeq?: () => number}} options  the last seq the page handled: pings tell the server, which can
   *  then forget the frames it kept for a replay */
  constructor(url, { lastSeq = () => 0 } = {}) {
    super();
    this.url = url;
    this.lastSeq = lastSeq;
    this.socket = null;
    this.attempt = 0;      // attempts since the last welcome
    this.stopped = false;
    this.welcomed = false;
    this.outbox = [];
    this.timers = {};
    this.unacked = 0; // characters received since the last ping told the server what was handled
  }

  get up() { return Boolean(this.socket && this.welcomed && this.socket.readyState === WebSocket.OPEN); }

  connect() {
    this.stopped = false;
    this.clearTimers();
    const url = typeof this.url === "function" ? this.url() : this.url;
    const socket = new WebSocket(url);
    this.socket = socket;
    this.welcomed = false;
    this.emit("connecting", { attempt: this.attempt + 1, url });
    this.timers.welcome = setTimeout(() => this.socket === socket && this.drop(), WELCOME_MS);
    socket.addEventListener("open", () => this.socket === socket && this.emit("open", {}));
    socket.addEventListener("message", (event) => {
      if (this.socket !== socket) return;
      clearTimeout(this.timers.pong); // any frame at all shows the socket is alive
      let frame;
      try { frame = JSON.parse(event.data); } catch { console.warn("signaling: not JSON", event.data); return; }
      if (!frame || typeof frame.type !== "string") return;
      if (frame.type === "welcome") this.onWelcome(frame);
      this.emit("frame", frame);
      this.unacked += event.data.length;
      if (this.unacked > ACK_CHARS && this.welcomed) this.ping();
    });
    socket.addEventListener("close", (event) => this.onClose(socket, event.code));
  }

  onWelcome(frame) {
    clearTimeout(this.timers.welcome);
    this.welcomed = true;
    this.attempt = 0; // a connection that worked starts its backoff afresh
    // After a resume the server still knows every peer we address: send what waited. After a fresh join the
    // queued frames belong to connections the page is about to replace.
    const queued = this.outbox;
    this.outbox = [];
    if (frame.resumed === true) for (const item of queued) this.transmit(item);
    clearInterval(this.timers.ping);
    this.timers.ping = setInterval(() => this.ping(), PING_MS);
  }

  ping() {
    this.unacked = 0;
    if (!this.transmit({ type: "ping", last_seq: this.lastSeq() })) return;
    clearTimeout(this.timers.pong);
    const socket = this.socket;
    this.timers.pong = setTimeout(() => {
      if (this.socket !== socket) return;
      console.warn("signaling: no answer to a ping within 5 s, reconnecting");
      this.drop();
    }, PONG_MS);
  }

  onClose(socket, code) {
    if (this.socket !== socket) return;
    this.clearTimers();
    this.socket = null;
    const wasWelcomed = this.welcomed;
    this.welcomed = false;
    // After drop() the server echoes whatever it likes (often 1000): it is still a drop.
    const reason = this.dropping ? describeClose(1006) : describeClose(code, { inCall: wasWelcomed });
    this.dropping = false;
    if (this.stopped || !reason.retry) {
      this.outbox = [];
      this.emit("closed", { code, message: reason.message, final: true });
      return;
    }
    this.attempt += 1;
    const delay = backoff(this.attempt);
    this.emit("closed", { code, message: reason.message, final: false, retryIn: delay, attempt: this.attempt });
    this.timers.retry = setTimeout(() => this.connect(), delay);
  }

  /** The network is back: skip the rest of the backoff wait (a no-op unless a retry is pending). */
  retryNow() {
    if (this.stopped || this.socket || !this.timers.retry) return;
    clearTimeout(this.timers.retry);
    this.timers.retry = null;
    this.connect();
  }

  /** Send a frame now, or keep it for after the next resume when the socket is down. */
  send(frame) {
    if (this.up) return this.transmit(frame);
    if (!this.stopped) {
      this.outbox.push(frame);
      if (this.outbox.length > OUTBOX_LIMIT) this.outbox.shift();
    }
    return false;
  }

  transmit(frame) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  /** The user leaves: end the participation at once (`leave`), then close cleanly. */
  leave() {
    if (this.up) this.transmit({ type: "leave" });
    this.close(1000);
  }

  close(code = 1000) {
    this.stopped = true;
    this.outbox = [];
    this.clearTimers();
    if (this.socket) this.socket.close(code);
  }

  /** The page is going away (reload, closed tab): no reconnection, and no `leave` either; the browser closes the
   * socket with the page, so that the server keeps the participation for a resume. */
  stop() {
    this.stopped = true;
    this.clearTimers();
  }

  /** Drop the socket as a network failure would (tests, and the liveness check, use it). */
  drop() {
    if (!this.socket) return;
    this.dropping = true;
    this.socket.close(4000);
  }

  clearTimers() {
    clearTimeout(this.timers.retry);
    clearTimeout(this.timers.welcome);
    clearTimeout(this.timers.pong);
    clearInterval(this.timers.ping);
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }
}
