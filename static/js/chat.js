// The call's chat: messages go peer to peer over each RTCPeerConnection's "chat" data channel.
import { $ } from "./dom.js";

export class Chat {
  /** @param {() => Iterable} peers  the current peers (each with sendChat) */
  constructor(peers) {
    this.peers = peers;
    this.log = $("#chat-log");
    this.input = $("#chat-input");
    $("#chat-form").addEventListener("submit", (event) => { event.preventDefault(); this.send(); });
  }

  send() {
    const text = this.input.value.trim();
    if (!text) return;
    let delivered = 0;
    let peers = 0;
    for (const peer of this.peers()) {
      peers += 1;
      if (peer.sendChat({ text })) delivered += 1;
    }
    this.show("You", text, "local", delivered === 0 && peers > 0 ? "not delivered: nobody connected yet" : "");
    this.input.value = "";
  }

  show(who, text, from, note = "") {
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
  }
}
