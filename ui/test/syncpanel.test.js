// The sync panel's figures and words (ui/js/syncpanel.js), from statuses as the backend
// sends them (src-tauri/status.rs).

import { test } from "node:test";
import assert from "node:assert/strict";
import { changes, connectionText, figures, sinceText, waitedText, waiting } from "../js/syncpanel.js";

const NOW = Date.parse("2026-11-30T10:00:00Z");

const STATUS = {
  state: "syncing",
  pending: 23,
  oldestPendingSecs: 95,
  lag: 4,
  lastSyncAt: "2026-11-30T09:59:55Z",
  lastError: null,
  sessionExpired: false,
  accountDisabled: false,
  server: "http://clinic.lan:8080",
  serverVersion: "clinic-server/0.1.0",
  outbox: [
    { mutationId: "m1", what: "Accept a booking", queuedAt: "2026-11-30T09:58:25Z", window: "My appointments", windowLabel: "therapist-1" },
    { mutationId: "m2", what: "Message: \u201chi\u201d", queuedAt: "2026-11-30T09:59:58Z", window: null, windowLabel: null },
  ],
  notifications: { state: "working", words: "Desktop notifications work (dunst 1.9)." },
};

const byKey = (list) => Object.fromEntries(list.map((f) => [f.key, f]));

test("the connection says the session's end before anything else", () => {
  assert.equal(connectionText(null), "Connecting…");
  assert.equal(connectionText({ state: "online" }), "Connected");
  assert.equal(connectionText({ state: "syncing" }), "Connected, syncing");
  assert.equal(connectionText({ state: "offline" }), "Offline");
  assert.equal(connectionText({ state: "offline", sessionExpired: true }), "Session ended: sign in again");
  assert.equal(connectionText({ state: "offline", sessionExpired: true, accountDisabled: true }), "Account disabled");
});

test("every figure of the status is shown, with its raw value", () => {
  const f = byKey(figures(STATUS, NOW));
  assert.deepEqual(Object.keys(f), ["state", "server", "version", "last-sync", "lag", "pending", "error", "notifications"]);
  assert.equal(f.state.value, "syncing");
  assert.equal(f.server.text, "http://clinic.lan:8080");
  assert.equal(f.version.text, "clinic-server/0.1.0");
  assert.equal(f["last-sync"].value, "2026-11-30T09:59:55Z");
  assert.match(f["last-sync"].text, /^\d\d:\d\d \(5 s ago\)$/);
  assert.equal(f.lag.text, "4 changes behind");
  assert.equal(f.pending.text, "23 changes");
  assert.equal(f.error.text, "none");
  assert.equal(f.notifications.value, "working");
  assert.match(f.notifications.text, /dunst/);
});

test("figures of a status not there yet, or of an ended session, still read", () => {
  const f = byKey(figures(null, NOW));
  assert.equal(f.version.text, "not connected yet");
  assert.equal(f["last-sync"].text, "never");
  assert.equal(f.lag.text, "up to date");
  assert.equal(f.pending.text, "nothing");
  assert.equal(f.notifications.value, "unknown");
  const ended = byKey(figures({ ...STATUS, state: "offline", sessionExpired: true, lastError: "The session has expired; sign in again." }, NOW));
  assert.equal(ended.state.value, "expired");
  assert.equal(ended.error.text, "The session has expired; sign in again.");
});

test("the same status gives the same values at different moments; only the ages move", () => {
  const a = figures(STATUS, NOW).map((f) => f.value);
  const b = figures(STATUS, NOW + 7000).map((f) => f.value);
  assert.deepEqual(a, b);
});

test("waiting changes say what, from which window, and for how long", () => {
  const { items, more } = waiting(STATUS, NOW);
  assert.equal(items.length, 2);
  assert.deepEqual(items[0], { id: "m1", what: "Accept a booking", window: "My appointments (therapist-1)", label: "therapist-1", age: "waiting 1 min" });
  assert.equal(items[1].window, "another session");
  assert.equal(items[1].age, "waiting 2 s");
  assert.equal(waitedText(500), "just now");
  assert.equal(more, 21, "the backend lists the first few; the rest are counted");
  assert.deepEqual(waiting(null, NOW), { items: [], more: 0 });
});

test("small words", () => {
  assert.equal(changes(1), "1 change");
  assert.equal(changes(0), "0 changes");
  assert.equal(sinceText(null, NOW), "never");
  assert.equal(sinceText("garbage", NOW), "never");
});
