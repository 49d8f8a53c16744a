// Times in the viewer's time zone: every <time data-local="datetime|time"> is rewritten from its datetime
// attribute, and [data-tz-name] says which zone. The zone is kept in a cookie, so the server's date filters and
// its own rendering use it too (calls/history.py).
const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
document.cookie = `tz=${encodeURIComponent(zone)}; path=/; max-age=31536000; SameSite=Lax`;

const pad = (n) => String(n).padStart(2, "0");

function zoneAbbreviation(date) {
  const part = new Intl.DateTimeFormat("en-US", { timeZoneName: "short" }).formatToParts(date)
    .find((p) => p.type === "timeZoneName");
  return part ? part.value : zone;
}

export function formatLocal(date, kind = "datetime") {
  const day = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  const clock = kind === "time"
    ? `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
    : `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  return `${kind === "time" ? clock : `${day} ${clock}`} ${zoneAbbreviation(date)}`;
}

for (const element of document.querySelectorAll("time[data-local]")) {
  const date = new Date(element.getAttribute("datetime"));
  if (Number.isNaN(date.getTime())) continue;
  element.textContent = formatLocal(date, element.dataset.local);
  element.title = date.toString();
}
for (const element of document.querySelectorAll("[data-tz-name]")) element.textContent = zone;
document.documentElement.dataset.localTimes = "done";
