// Our participation in the call as the server knows it (peer id, resume token, last `seq` seen), and what a tab
// needs to take it back after a reload or a crash: all of it, and the call's chat, in sessionStorage per room.
// A server without resume support sends no token: then nothing is stored and every welcome is a fresh join.

const CHAT_LIMIT = 200;

function read(key) {
  try { return JSON.parse(sessionStorage.getItem(key)); } catch { return null; }
}

function write(key, value) {
  try { sessionStorage.setItem(key, JSON.stringify(value)); } catch { /* storage full or disabled: no resume */ }
}

export class Participation {
  constructor(slug) {
    this.key = `parley.call.${slug}`;
    this.chatKey = `parley.chat.${slug}`;
    this.peerId = null;
    this.token = null;
    this.seconds = 30;
    this.lastSeq = 0;
    this.formerPeerIds = new Set(); // our ids of earlier participations: never a peer to call
  }

  /**
   * Take the stored participation back if the server may still honour it (heard from within its resume window).
   * @returns {{audio: boolean, video: boolean, micEnabled: boolean} | null}  the media to start again, or null
   */
  restore(now = Date.now()) {
    const record = read(this.key);
    const fresh = record && typeof record.token === "string" && record.token
      && now - record.seenAt <= (record.seconds || 30) * 1000;
    if (!fresh) {
      this.forget();
      return null;
    }
    this.token = record.token;
    this.seconds = record.seconds || 30;
    this.peerId = record.peerId;
    this.lastSeq = Number(record.lastSeq) || 0;
    return record.options || {};
  }

  /** The socket address: with a token, asking the server to resume us after the last frame we saw. */
  url(base) {
    if (!this.token) return base;
    return `${base}?${new URLSearchParams({ resume: this.token, last_seq: String(this.lastSeq) })}`;
  }

  /**
   * Bookkeeping as a frame arrives, before its turn in the queue. Returns the frame to handle, or null for one
   * seen already; a welcome comes back with `resumed` true only if it resumed *our* participation.
   */
  note(frame) {
    if (frame.type === "welcome") {
      const resumed = frame.resumed === true && Boolean(this.peerId) && frame.peer_id === this.peerId;
      if (!resumed) {
        if (this.peerId) this.formerPeerIds.add(this.peerId);
        this.lastSeq = 0; // a new participation numbers its frames from 1
      }
      this.peerId = frame.peer_id;
      this.token = typeof frame.resume_token === "string" && frame.resume_token ? frame.resume_token : null;
      this.seconds = Number(frame.resume_seconds) || 30;
      return { ...frame, resumed };
    }
    if (typeof frame.seq === "number") {
      if (frame.seq <= this.lastSeq) return null;
      this.lastSeq = frame.seq;
    }
    return frame;
  }

  /** Store what a reload needs; `options` is the media to start again. */
  save(options, now = Date.now()) {
    if (!this.token || !this.peerId) {
      this.forget();
      return;
    }
    write(this.key, { token: this.token, peerId: this.peerId, lastSeq: this.lastSeq, seconds: this.seconds,
                      seenAt: now, options });
  }

  /** Refused, ended or left: nothing to resume any more. */
  end() {
    this.token = null;
    this.forget();
  }

  forget() {
    try {
      sessionStorage.removeItem(this.key);
      sessionStorage.removeItem(this.chatKey);
    } catch { /* storage disabled */ }
  }

  chat() {
    const entries = read(this.chatKey);
    return Array.isArray(entries) ? entries : [];
  }

  addChat(entry) {
    if (this.token) write(this.chatKey, [...this.chat(), entry].slice(-CHAT_LIMIT));
  }
}
