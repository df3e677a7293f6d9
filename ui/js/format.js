// Formatting: times, dates, status labels, relative times. Pure; no DOM.

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** Booking statuses in life-cycle order: label for chips, words for sentences, tone for colour. */
export const STATUS = Object.freeze({
  requested: { label: "Requested", words: "waiting for the therapist", tone: "amber" },
  confirmed: { label: "Confirmed", words: "confirmed", tone: "blue" },
  declined: { label: "Declined", words: "declined", tone: "red" },
  pickup_confirmed: { label: "Pickup confirmed", words: "awaiting pickup", tone: "violet" },
  en_route: { label: "En route", words: "on the way", tone: "violet" },
  arrived: { label: "Arrived", words: "arrived", tone: "teal" },
  in_session: { label: "In session", words: "in session", tone: "green" },
  completed: { label: "Completed", words: "completed", tone: "slate" },
  cancelled: { label: "Cancelled", words: "cancelled", tone: "grey" },
});

export function statusLabel(status) {
  return STATUS[status]?.label ?? String(status);
}

/** Button labels of the booking actions. */
export const ACTION_LABELS = Object.freeze({
  accept: "Accept",
  decline: "Decline",
  confirm_pickup: "Confirm pickup",
  start_journey: "Start journey",
  mark_arrived: "Mark arrived",
  start_session: "Start session",
  complete: "Complete",
  verify_payment: "Verify payment",
  cancel: "Cancel booking",
});

const pad = (n) => String(n).padStart(2, "0");

/** "14:30:00" -> "14:30" */
export function hm(time) {
  if (!time) return "";
  return String(time).slice(0, 5);
}

/** "14:30" (from <input type=time>) -> "14:30:00" for the wire. */
export function wireTime(value) {
  const s = String(value || "").trim();
  if (/^\d{2}:\d{2}$/.test(s)) return `${s}:00`;
  if (/^\d{2}:\d{2}:\d{2}/.test(s)) return s.slice(0, 8);
  return s;
}

/** "14:30–15:30" */
export function timeRange(start, end) {
  return `${hm(start)}–${hm(end)}`;
}

/** Minutes since midnight of "14:30:00". */
export function minutes(time) {
  const [h, m] = String(time).split(":").map(Number);
  return h * 60 + (m || 0);
}

/** "2026-11-22" -> a local Date at midnight. */
export function parseDate(iso) {
  const [y, m, d] = String(iso).split("-").map(Number);
  return new Date(y, m - 1, d);
}

/** A Date -> "2026-11-22" (local). */
export function isoDate(date) {
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

export function todayISO(now = new Date()) {
  return isoDate(now);
}

export function addDays(iso, n) {
  const d = parseDate(iso);
  d.setDate(d.getDate() + n);
  return isoDate(d);
}

/** The Monday of the week containing `iso`. */
export function weekStart(iso) {
  const d = parseDate(iso);
  const back = (d.getDay() + 6) % 7;
  d.setDate(d.getDate() - back);
  return isoDate(d);
}

/** "2026-11-22" -> "Sun 22 Nov" */
export function dayLabel(iso) {
  const d = parseDate(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${DAYS[d.getDay()]} ${d.getDate()} ${MONTHS[d.getMonth()]}`;
}

/** "Today", "Tomorrow", "Yesterday" or "Sun 22 Nov". */
export function dayName(iso, today = todayISO()) {
  if (iso === today) return "Today";
  if (iso === addDays(today, 1)) return "Tomorrow";
  if (iso === addDays(today, -1)) return "Yesterday";
  return dayLabel(iso);
}

/** A timestamp (ISO string) -> local "14:30". */
export function clock(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return "";
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A timestamp -> "14:30" today, "Sun 22 Nov 14:30" otherwise. */
export function when(ts, now = new Date()) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return "";
  const day = isoDate(d);
  return day === isoDate(now) ? clock(ts) : `${dayLabel(day)} ${clock(ts)}`;
}

/** Milliseconds -> "just now", "5 s ago", "3 min ago", "2 h ago", "4 d ago". */
export function ago(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 2) return "just now";
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs} h ago`;
  return `${Math.floor(hrs / 24)} d ago`;
}

/** "synced 5 s ago" / "not synced yet" */
export function syncedText(lastSyncAt, now = Date.now()) {
  if (!lastSyncAt) return "not synced yet";
  const t = Date.parse(lastSyncAt);
  if (Number.isNaN(t)) return "not synced yet";
  return `synced ${ago(now - t)}`;
}

/** "2 pending" / "all saved" */
export function pendingText(n) {
  return n > 0 ? `${n} pending` : "all saved";
}

/** The dot colour: red offline, orange syncing or anything pending, green otherwise. */
export function dotState(status) {
  if (!status || status.state === "offline") return "offline";
  if (status.state === "syncing" || status.pending > 0) return "syncing";
  return "online";
}

/** First letters of a name, for avatars: "Elena Reyes" -> "ER". */
export function initials(name) {
  return String(name || "?")
    .split(/\s+/)
    .filter((w) => /^[\p{L}\p{N}]/u.test(w))
    .slice(-2)
    .map((w) => w[0].toUpperCase())
    .join("") || "?";
}

export const KIND_TITLES = Object.freeze({
  operator: "Operator",
  therapist: "My appointments",
  driver: "My runs",
  scheduling: "Scheduling",
  messages: "Messages",
  login: "Sign in",
});

export const KIND_SHORTCUTS = Object.freeze({
  operator: "Ctrl+1",
  therapist: "Ctrl+2",
  driver: "Ctrl+3",
  scheduling: "Ctrl+4",
  messages: "Ctrl+5",
});
