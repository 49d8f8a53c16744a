// Room settings: name, visibility, lock, size, members and roles, invite links, deletion; all through the REST API.
import { api } from "./api.js";

const config = JSON.parse(document.getElementById("settings-config").textContent);
const base = `/api/rooms/${encodeURIComponent(config.slug)}`;
const $ = (selector) => document.querySelector(selector);

function status(message, isError = false) {
  const box = $("#settings-status");
  box.textContent = message;
  box.className = isError ? "notice error" : message ? "notice" : "muted";
  box.setAttribute("role", isError ? "alert" : "status");
}

async function attempt(work, success) {
  try {
    const result = await work();
    if (success) status(success);
    return result;
  } catch (error) {
    status(error.message, true);
    return undefined;
  }
}

function button(label, className, onClick, ariaLabel) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = `button small ${className}`;
  element.textContent = label;
  if (ariaLabel) element.setAttribute("aria-label", ariaLabel);
  element.addEventListener("click", onClick);
  return element;
}

// Every item of a paginated list ({"count", "next", "previous", "results"}; docs/api.md), following `next`.
async function everyPage(path) {
  const items = [];
  let next = `${path}?page_size=100`;
  while (next) {
    const page = await api(next);
    items.push(...page.results);
    // `next` is absolute; keep only its path and query, so the request stays on this origin.
    next = page.next ? (({ pathname, search }) => pathname + search)(new URL(page.next, location.origin)) : null;
  }
  return items;
}

// --- General -----------------------------------------------------------------------------------------

$("#room-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = {
    name: $("#room-name").value.trim(),
    visibility: $("#room-visibility").value,
    max_participants: Number($("#room-max").value),
    locked: $("#room-locked").checked,
  };
  const room = await attempt(() => api(`${base}/`, { method: "PATCH", body }), "Saved.");
  if (room) {
    $("#room-name-heading").textContent = room.name;
    document.title = `Settings · ${room.name} · Parley`;
  }
});

// --- Members -----------------------------------------------------------------------------------------

async function loadMembers() {
  const members = await attempt(() => everyPage(`${base}/members/`));
  if (members) $("#members").replaceChildren(...members.map(memberRow));
}

function memberRow(member) {
  const { username } = member.user;
  const shown = member.user.display_name || username;
  const item = document.createElement("li");
  item.dataset.username = username;
  const name = document.createElement("span");
  name.textContent = shown;
  const detail = document.createElement("small");
  detail.className = "muted";
  detail.textContent = `@${username} · ${member.role}`;
  item.append(name, " ", detail);
  // The owner changes roles and removes anyone but themselves; a moderator removes plain members (docs/api.md).
  const isOwner = config.role === "owner";
  if (member.role !== "owner" && (isOwner || member.role === "member")) {
    const actions = document.createElement("span");
    actions.className = "row-actions";
    const other = member.role === "moderator" ? "member" : "moderator";
    if (isOwner) actions.append(
      button(other === "moderator" ? "Make moderator" : "Make member", "secondary", async () => {
        await attempt(() => api(`${base}/members/${encodeURIComponent(username)}/`, { method: "PATCH", body: { role: other } }),
                      `${shown} is now a ${other}.`);
        loadMembers();
      }, `Make ${shown} a ${other}`));
    actions.append(
      button("Remove", "danger", async () => {
        await attempt(() => api(`${base}/members/${encodeURIComponent(username)}/`, { method: "DELETE" }),
                      `${shown} is no longer a member.`);
        loadMembers();
      }, `Remove ${shown}`),
    );
    item.append(actions);
  }
  return item;
}

// Completing the username: people matching what was typed (usernames and display names, any case), from the API.
let suggestTimer = null;
let suggestSeq = 0;
$("#member-username").addEventListener("input", () => {
  clearTimeout(suggestTimer);
  const query = $("#member-username").value.trim();
  suggestTimer = setTimeout(async () => {
    const seq = ++suggestSeq;
    const people = query.length < 2 ? [] : await api(`${base}/member-candidates/?q=${encodeURIComponent(query)}`).catch(() => []);
    if (seq !== suggestSeq) return; // a newer search is on its way
    $("#member-suggestions").replaceChildren(...people.map((person) => {
      const option = document.createElement("option");
      option.value = person.username;
      option.label = person.display_name ? `${person.display_name} (@${person.username})` : `@${person.username}`;
      return option;
    }));
    $("#member-form").dataset.suggestions = String(people.length);
  }, 200);
});

$("#member-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const username = $("#member-username").value.trim();
  if (!username) return status("Type the username of the person to add.", true);
  const added = await attempt(() => api(`${base}/members/`, { method: "POST", body: { username, role: $("#member-role").value } }),
                              `${username} was added.`);
  if (added) $("#member-username").value = "";
  return loadMembers();
});

// --- Invites -----------------------------------------------------------------------------------------

async function loadInvites() {
  const invites = await attempt(() => everyPage(`${base}/invites/`));
  if (!invites) return;
  // Revoked, expired and used-up links stay in the API's list; only the ones that still work are shown.
  const active = invites.filter((invite) => invite.state === "active");
  $("#invites").replaceChildren(...active.map(inviteRow));
  if (!active.length) {
    const empty = document.createElement("li");
    empty.className = "muted";
    empty.textContent = "No invite links.";
    $("#invites").append(empty);
  }
}

function inviteRow(invite) {
  const url = new URL(invite.url, location.origin).href;  // absolute already; a path would do too
  const item = document.createElement("li");
  item.dataset.inviteId = String(invite.id);
  const link = document.createElement("span");
  link.className = "invite-url";
  link.textContent = url;
  item.append(link);
  const detail = document.createElement("small");
  detail.className = "muted";
  const times = (n) => `${n} ${n === 1 ? "time" : "times"}`;
  const uses = invite.max_uses === null ? `Used ${times(invite.use_count)}`
                                        : `Used ${invite.use_count} of ${times(invite.max_uses)}`;
  detail.textContent = `${uses} · expires ${new Date(invite.expires_at).toLocaleString()}`;
  item.append(detail);
  const actions = document.createElement("span");
  actions.className = "row-actions";
  actions.append(
    button("Copy", "secondary", async () => {
      try {
        await navigator.clipboard.writeText(url);
        status("Invite link copied.");
      } catch {
        status(`Copy this link: ${url}`);
      }
    }, "Copy invite link"),
    button("Revoke", "danger", async () => {
      await attempt(() => api(`${base}/invites/${invite.id}/`, { method: "DELETE" }), "Invite link revoked.");
      loadInvites();
    }, "Revoke invite link"),
  );
  item.append(actions);
  return item;
}

$("#create-invite").addEventListener("click", async () => {
  await attempt(() => api(`${base}/invites/`, { method: "POST", body: {} }), "Invite link created.");
  loadInvites();
});

// --- Deletion ----------------------------------------------------------------------------------------

const deleteForm = $("#delete-form");
if (deleteForm) {
  deleteForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if ($("#delete-confirm").value.trim() !== config.slug) {
      status(`Type ${config.slug} to confirm the deletion.`, true);
      return;
    }
    const deleted = await attempt(() => api(`${base}/`, { method: "DELETE" }).then(() => true));
    if (deleted) location.assign(config.home_url);
  });
}

Promise.all([loadMembers(), loadInvites()]).finally(() => { $("#room-settings").dataset.ready = "true"; });
