// The admin's "Live now" page (templates/admin/calls/live.html): every few seconds, fetch the JSON view of the
// same snapshot (calls/live_view.py) and redraw #live-calls with the markup the template renders. Text goes in
// with textContent only. A failed fetch says so and tries again at the next tick.
const root = document.getElementById("live-now");
let lastGenerated = root ? document.getElementById("live-updated").textContent : "";

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function participantRow(p) {
  const name = element("td", {}, p.name);
  if (p.username && p.username !== p.name) name.append(" ", element("span", { class: "quiet" }, `(${p.username})`));
  const server = element("td", { class: "live-server" }, p.server || "–");
  if (p.server && !p.server_alive) server.append(" ", element("span", { class: "live-warning" }, "(no heartbeat)"));
  const connection = element("td", {}, p.connection || "–");
  if (p.relay) connection.append(" ", element("span", { class: "live-warning" }, "TURN"));
  const verdict = p.quality.verdict.replace(/\s+/g, "-");
  let state = p.state === "reconnecting" ? `reconnecting since ${p.reconnecting_since}` : "connected";
  if (p.reconnects) state += ` (${plural(p.reconnects, "reconnect")})`;
  return element("tr", { "data-peer-id": p.peer_id, class: `live-${p.state}` },
    name, element("td", {}, p.joined), server, connection,
    element("td", { class: `live-quality live-quality-${verdict}` }, p.quality.text),
    element("td", { class: "live-state" }, state),
    element("td", {}, element("a", { class: "live-kick", href: p.kick_url }, "Remove")));
}

function callModule(call) {
  const caption = element("caption", {},
    element("a", { href: call.admin_url }, call.room), " ",
    element("span", { class: "live-call-since" }, `started ${call.started} (${call.duration})`), " ",
    element("span", { class: "live-call-media", "data-media": call.media }, call.media === "sfu" ? "SFU" : "mesh"), " ",
    element("a", { class: "live-end", href: call.end_url }, "End call"));
  const head = element("thead", {}, element("tr", {},
    ...["Name", "Joined", "Server process", "Connection", "Quality", "State", ""].map(
      (label) => element("th", { scope: "col" }, label))));
  const body = element("tbody");
  if (call.participants.length) body.append(...call.participants.map(participantRow));
  else body.append(element("tr", {}, element("td", { colspan: "7" },
    "Nobody is connected (the call ends when its last participant leaves).")));
  return element("div", { class: "module live-call", "data-call-id": String(call.id) },
    element("table", {}, caption, head, body));
}

export function render(snapshot) {
  const calls = document.getElementById("live-calls");
  calls.replaceChildren(...(snapshot.calls.length
    ? snapshot.calls.map(callModule)
    : [element("p", { class: "live-none" }, "No calls in progress.")]));
  document.getElementById("live-counts").textContent =
    `${plural(snapshot.calls.length, "live call")}, ${plural(snapshot.participant_count, "participant")}`;
  lastGenerated = snapshot.generated;
  document.getElementById("live-updated").textContent = lastGenerated;
  root.dataset.refreshed = String(Number(root.dataset.refreshed || 0) + 1);
}

async function refresh() {
  try {
    const response = await fetch(root.dataset.url, { headers: { Accept: "application/json" },
                                                     credentials: "same-origin" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    root.classList.remove("live-stale");
  } catch (error) {
    root.classList.add("live-stale");
    document.getElementById("live-updated").textContent = `${lastGenerated} (could not refresh: ${error.message})`;
  }
}

if (root) {
  const every = Math.max(Number(root.dataset.every) || 5, 1) * 1000;
  let running = false;
  setInterval(async () => {
    if (running || document.hidden) return;  // one fetch at a time; none while the tab is in the background
    running = true;
    try { await refresh(); } finally { running = false; }
  }, every);
}
