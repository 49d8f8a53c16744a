// Ringing, on every page: the incoming-call dialog (ringtone, Accept, Decline, a notification when the tab is hidden)
// and the outgoing calling screen ("Calling Ben...", ring-back, Cancel). Both follow the ring's frames on /ws/me/;
// answering opens the room's call page joined (the camera is asked for only then).
import { api } from "./api.js";

const $ = (id) => document.getElementById(id);
const nameOf = (user) => (user && (user.display_name || user.username)) || "Someone";
const callPage = (ring) => `/rooms/${encodeURIComponent(ring.room.slug)}/?join=1`;

// --- Tones (Web Audio): a ringtone for incoming calls, a ring-back while calling ---------------------------

class Tone {
  constructor(pattern) {
    this.pattern = pattern; // [seconds on, seconds off]
    this.context = null;
    this.timer = null;
  }

  start() {
    if (this.timer) return;
    try {
      this.context = new AudioContext();
    } catch {
      return; // no audio here: the dialog still shows
    }
    const [on, off] = this.pattern;
    const burst = () => {
      const now = this.context.currentTime;
      const gain = this.context.createGain();
      gain.gain.setValueAtTime(0.0001, now);
      gain.gain.exponentialRampToValueAtTime(0.15, now + 0.05);
      gain.gain.setValueAtTime(0.15, now + on - 0.05);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + on);
      gain.connect(this.context.destination);
      for (const frequency of [440, 480]) {
        const oscillator = this.context.createOscillator();
        oscillator.frequency.value = frequency;
        oscillator.connect(gain);
        oscillator.start(now);
        oscillator.stop(now + on);
      }
    };
    burst();
    this.timer = setInterval(burst, (on + off) * 1000);
    document.body.dataset.tone = "playing";
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    if (this.context) this.context.close().catch(() => {});
    this.context = null;
    delete document.body.dataset.tone;
  }
}

const ringtone = new Tone([1.2, 1.8]);
const ringback = new Tone([1.0, 3.0]);

// --- Incoming -------------------------------------------------------------------------------------------

let incoming = null; // the ring shown in the dialog
let notification = null;

function showIncoming(ring) {
  if (incoming && incoming.id === ring.id) return;
  incoming = ring;
  const dialog = $("ring-incoming");
  dialog.dataset.ringId = String(ring.id);
  $("ring-incoming-name").textContent = nameOf(ring.caller);
  $("ring-incoming-note").hidden = !inACall();
  if (!dialog.open) dialog.show();
  ringtone.start();
  if (document.hidden && "Notification" in window && Notification.permission === "granted") {
    notification = new Notification(`${nameOf(ring.caller)} is calling`, { tag: `parley-ring-${ring.id}` });
    notification.onclick = () => { window.focus(); };
  }
}

function stopIncoming(ringId) {
  if (!incoming || (ringId !== undefined && incoming.id !== ringId)) return;
  incoming = null;
  ringtone.stop();
  if (notification) notification.close();
  notification = null;
  const dialog = $("ring-incoming");
  dialog.dataset.ringId = "";
  if (dialog.open) dialog.close();
}

function inACall() {
  return Boolean(document.querySelector("#call[data-state=joined], #call[data-state=reconnecting]"));
}

async function accept() {
  const ring = incoming;
  if (!ring) return;
  stopIncoming();
  try {
    const answered = await api(`/api/rings/${ring.id}/accept/`, { method: "POST" });
    location.assign(callPage(answered));
  } catch (error) {
    alert(`The call could not be answered: ${error.message}`);
  }
}

async function decline() {
  const ring = incoming;
  if (!ring) return;
  stopIncoming();
  const body = inACall() ? { reason: "busy" } : {};
  try { await api(`/api/rings/${ring.id}/decline/`, { method: "POST", body }); } catch { /* decided already */ }
}

// --- Outgoing -------------------------------------------------------------------------------------------

let outgoing = null; // { id, name } of the ring this tab made

function showOutgoing(state, text) {
  const dialog = $("ring-outgoing");
  dialog.dataset.state = state;
  $("ring-outgoing-title").textContent = text;
  const ringing = state === "calling";
  $("ring-cancel").hidden = !ringing;
  $("ring-close").hidden = ringing;
  if (!dialog.open) dialog.show();
  if (ringing) ringback.start(); else ringback.stop();
}

export async function callPerson(username, name) {
  if (outgoing) return;
  if ("Notification" in window && Notification.permission === "default") Notification.requestPermission();
  outgoing = { id: null, name };
  showOutgoing("calling", `Calling ${name}…`);
  try {
    const ring = await api("/api/rings/", { method: "POST", body: { callee: username } });
    outgoing.id = ring.id;
    $("ring-outgoing").dataset.ringId = String(ring.id);
  } catch (error) {
    outgoing = null;
    showOutgoing("failed", error.status === 409 ? error.message : `${name} cannot be called: ${error.message}`);
  }
}

function endOutgoing(ring, state, text) {
  if (!outgoing || outgoing.id !== ring.id) return false;
  outgoing = null;
  showOutgoing(state, text);
  return true;
}

async function cancel() {
  const ring = outgoing;
  if (!ring || ring.id === null) return;
  try {
    await api(`/api/rings/${ring.id}/cancel/`, { method: "POST" });
    endOutgoing({ id: ring.id }, "cancelled", "Call cancelled.");
  } catch { /* answered or ended meanwhile: its frame says which */ }
}

// --- Frames ---------------------------------------------------------------------------------------------

export function startRinging(me) {
  $("ring-accept").addEventListener("click", accept);
  $("ring-decline").addEventListener("click", decline);
  $("ring-cancel").addEventListener("click", cancel);
  $("ring-close").addEventListener("click", () => $("ring-outgoing").close());

  me.on("welcome", (frame) => {
    for (const ring of frame.rings) if (ring.callee.id === frame.user.id) showIncoming(ring);
  });
  me.on("ring", (frame) => showIncoming(frame.ring));
  me.on("ring-answered", (frame) => {
    stopIncoming(frame.ring.id); // answered here (this tab navigates) or in another tab
    if (endOutgoing(frame.ring, "answered", `${nameOf(frame.ring.callee)} answered.`)) location.assign(callPage(frame.ring));
  });
  me.on("ring-declined", (frame) => {
    stopIncoming(frame.ring.id);
    const name = nameOf(frame.ring.callee);
    endOutgoing(frame.ring, frame.ring.state, frame.ring.state === "busy" ? `${name} is busy.` : `${name} declined.`);
  });
  me.on("ring-ended", (frame) => {
    stopIncoming(frame.ring.id);
    endOutgoing(frame.ring, frame.ring.state, frame.ring.state === "missed" ? "No answer." : "Call cancelled.");
  });
}
