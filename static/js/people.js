// The People page: contacts with live presence dots, a search box, and a Call button each (ringing.js calls).
import { me } from "./me.js";
import { callPerson } from "./ringing.js";

const list = document.getElementById("people-list");
const search = document.getElementById("people-search");

search.addEventListener("input", () => {
  const words = search.value.trim().toLowerCase();
  for (const item of list.querySelectorAll("li[data-contact]")) {
    item.hidden = Boolean(words) && !item.dataset.name.includes(words);
  }
});

list.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-call]");
  if (!button) return;
  const item = button.closest("li[data-contact]");
  callPerson(button.dataset.call, item.querySelector(".person-name").textContent);
});

me.on("presence", (frame) => {
  const item = list.querySelector(`li[data-contact="${CSS.escape(frame.user.username)}"]`);
  if (!item) return;
  const dot = item.querySelector(".presence-dot");
  dot.dataset.presence = frame.presence;
  dot.title = frame.presence;
  item.querySelector(".presence-text").textContent = frame.presence;
});
