// What this tab needs to take its place in the call back after a reload or a crash: the participation (resume
// token, peer id, last seq seen) and the call's chat, in sessionStorage per room (a tab of its own, gone with it).

const CHAT_LIMIT = 200;

function read(key) {
  try { return JSON.parse(sessionStorage.getItem(key)); } catch { return null; }
}

function write(key, value) {
  try { sessionStorage.setItem(key, JSON.stringify(value)); } catch { /* storage full or disabled: no resume */ }
}

export class ResumeStore {
  constructor(slug) {
    this.key = `parley.call.${slug}`;
    this.chatKey = `parley.chat.${slug}`;
  }

  /**
   * The stored participation if the server may still honour it: heard from within its resume window.
   * @returns {{token: string, peerId: string, lastSeq: number, seconds: number, seenAt: number,
   *            options: {audio: boolean, video: boolean, micEnabled: boolean}} | null}
   */
  load(now = Date.now()) {
    const record = read(this.key);
    if (!record || typeof record.token !== "string" || !record.token) return null;
    if (!(now - record.seenAt <= (record.seconds || 30) * 1000)) return null;
    return record;
  }

  save(record) { write(this.key, record); }

  chat() {
    const entries = read(this.chatKey);
    return Array.isArray(entries) ? entries : [];
  }

  addChat(entry) {
    write(this.chatKey, [...this.chat(), entry].slice(-CHAT_LIMIT));
  }

  clear() {
    try {
      sessionStorage.removeItem(this.key);
      sessionStorage.removeItem(this.chatKey);
    } catch { /* storage disabled */ }
  }
}
