// Formatting: times, dates, relative times, the sync indicator's words, and the lookup of
// the words the backend sends (`session.words`). Pure; no DOM, so node tests it.

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

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

/** "2026-11-22" -> "Sun 22 Nov" */
export function dayLabel(iso) {
  const d = parseDate(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${DAYS[d.getDay()]} ${d.getDate()} ${MONTHS[d.getMonth()]}`;
}

/** "Today", "Tomorrow", "Yesterday" or "Sun 22 Nov", relative to `today` (the clinic's date). */
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

/** "3 Nov – 9 Nov 2026" for a week's days (as the scheduling view sends them). */
export function weekLabel(days) {
  if (!Array.isArray(days) || days.length === 0) return "";
  const first = parseDate(days[0]);
  const last = parseDate(days[days.length - 1]);
  if (Number.isNaN(first.getTime()) || Number.isNaN(last.getTime())) return "";
  return `${first.getDate()} ${MONTHS[first.getMonth()]} – ${last.getDate()} ${MONTHS[last.getMonth()]} ${last.getFullYear()}`;
}

/**
 * The words the backend sends for protocol values (`session.words`), with the wire name as
 * the fallback: a value the backend has no word for still shows, just not prettily.
 *   const w = wordsFrom(session.words); w.status("en_route") -> "En route"
 */
export function wordsFrom(words) {
  const statuses = (words && words.statuses) || {};
  const actions = (words && words.actions) || {};
  const methods = (words && words.paymentMethods) || {};
  const duty = (words && words.duty) || {};
  const own = (map, key) => (Object.prototype.hasOwnProperty.call(map, key) ? map[key] : undefined);
  return Object.freeze({
    /** Chip and legend label: "Pickup confirmed". */
    status: (s) => own(statuses, s)?.label ?? String(s),
    /** In a sentence: "awaiting pickup". */
    statusWords: (s) => own(statuses, s)?.words ?? String(s),
    /** A booking action's button label: "Confirm pickup". */
    action: (a) => own(actions, a) ?? String(a),
    /** Every status the backend named, in the order it sent them. */
    statuses: Object.keys(statuses),
    /** The payment methods as picker options, in the backend's order: [{ value, label }]. */
    paymentMethods: Object.entries(methods).map(([value, label]) => ({ value, label })),
    /** A driver's duty as a chip reads: duty(true) -> "On duty". */
    duty: (on) => (on ? own(duty, "on") ?? "on" : own(duty, "off") ?? "off"),
    /** The step that puts a driver on duty (true) or off it: dutyStep(false) -> "Go off duty". */
    dutyStep: (on) => (on ? own(duty, "goOn") ?? "on" : own(duty, "goOff") ?? "off"),
  });
}

/** Why this account no longer syncs, in words, or "" while it does (status from sync://status). */
export function accountText(status) {
  if (status && status.accountDisabled) {
    return "Your account was disabled by an administrator. Nothing is sent or received; the changes you made and have not sent are kept on this computer and go out if the account is enabled again.";
  }
  if (status && status.sessionExpired) {
    return "Your session has ended: nothing is sent or received until you sign in again. Your unsent changes are kept and go out once you have.";
  }
  return "";
}

/**
 * An amount as typed ("120.5", "1,234.50", "80") -> cents (12050), or null when it is not
 * an amount with at most two decimals. A comma is read only as a thousands separator, in
 * its places ("1,234"): "12,50" is refused rather than taken for 1,250 (or for 12.50, as a
 * decimal comma would mean). Whether the amount is allowed is the backend's call.
 */
export function parseCents(text) {
  const s = String(text ?? "").trim();
  const m = /^(\d{1,12}|\d{1,3}(?:,\d{3}){1,3})(?:\.(\d{0,2}))?$/.exec(s);
  if (!m) return null;
  return Number(m[1].replace(/,/g, "")) * 100 + Number((m[2] || "").padEnd(2, "0"));
}
