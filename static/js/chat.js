// The call's chat: in a mesh, messages go peer to peer over each RTCPeerConnection's "chat" data channel; in SFU
// mode (no connections between peers) through the signaling socket, as `chat` frames (docs/signaling.md).
import { $ } from "./dom.js";

export class Chat {
  /**
   * @param {() => Iterable} peers  the current peers (each with sendChat)
   * @param {(entry: {who, text, from, note}) => void} onShown  every message shown (the page keeps them)
   * @param {() => object|null} socket  the signaling socket when chat goes through it (SFU mode), else null
   */
  constructor(peers, onShown = () => {}, socket = () => null) {
    this.peers = peers;
    this.socket = socket;
    this.onShown = onShown;
    this.log = $("#chat-log");
    this.input = $("#chat-input");
    $("#chat-form").addEventListener("submit", (event) => { event.preventDefault(); this.send(); });
  }

  send() {
    const text = this.input.value.trim();
    if (!text) return;
    const socket = this.socket();
    if (socket) {
      const sent = socket.up && socket.send({ type: "chat", text: text.slice(0, 2000) });
      this.show("You", text, "local", sent ? "" : "not delivered: reconnecting");
      this.input.value = "";
      return;
    }
    let delivered = 0;
    let peers = 0;
    for (const peer of this.peers()) {
      peers += 1;
      if (peer.sendChat({ text })) delivered += 1;
    }
    this.show("You", text, "local", delivered === 0 && peers > 0 ? "not delivered: nobody connected yet" : "");
    this.input.value = "";
  }

  /** Show a message; `restored` ones (from before a reload) are not reported again. */
  show(who, text, from, note = "", { restored = false } = {}) {
    const item = document.createElement("li");
    item.dataset.from = from;
    const name = document.createElement("strong");
    name.textContent = who;
    const body = document.createElement("span");
    body.className = "chat-text";
    body.textContent = text;
    item.append(name, " ", body);
    if (note) {
      const small = document.createElement("small");
      small.className = "muted";
      small.textContent = ` (${note})`;
      item.append(small);
    }
    this.log.append(item);
    this.log.scrollTop = this.log.scrollHeight;
    if (!restored) this.onShown({ who, text, from, note });
  }
}
