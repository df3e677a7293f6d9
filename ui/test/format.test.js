// Formatting helpers (ui/js/format.js), and the lookup of the backend's words.

import { test } from "node:test";
import assert from "node:assert/strict";
import * as format from "../js/format.js";
import { addDays, ago, dayLabel, dayName, dotState, hm, initials, pendingText, syncedText, timeRange, weekLabel, wireTime, wordsFrom } from "../js/format.js";

const WORDS = {
  statuses: {
    en_route: { label: "En route", words: "on the way" },
    requested: { label: "Requested", words: "waiting for the therapist" },
  },
  actions: { confirm_pickup: "Confirm pickup", cancel: "Cancel booking" },
  duty: { on: "On duty", off: "Off duty", goOn: "Go on duty", goOff: "Go off duty" },
};

test("wordsFrom gives the backend's labels", () => {
  const w = wordsFrom(WORDS);
  assert.equal(w.status("en_route"), "En route");
  assert.equal(w.statusWords("requested"), "waiting for the therapist");
  assert.equal(w.action("confirm_pickup"), "Confirm pickup");
  assert.equal(w.action("cancel"), "Cancel booking");
  assert.deepEqual(w.statuses, ["en_route", "requested"]);
  assert.equal(w.duty(true), "On duty");
  assert.equal(w.duty(false), "Off duty");
  assert.equal(w.dutyStep(true), "Go on duty");
  assert.equal(w.dutyStep(false), "Go off duty");
});

test("wordsFrom falls back to the wire name, never to an inherited property", () => {
  const w = wordsFrom(WORDS);
  assert.equal(w.status("arrived"), "arrived");
  assert.equal(w.action("start_journey"), "start_journey");
  assert.equal(w.status("constructor"), "constructor");
  assert.equal(w.action("toString"), "toString");
  const none = wordsFrom(undefined);
  assert.equal(none.status("completed"), "completed");
  assert.equal(none.duty(true), "on");
  assert.equal(none.dutyStep(false), "off");
  assert.deepEqual(none.statuses, []);
});

test("format keeps no copy of the backend's words, titles or shortcuts", () => {
  for (const name of ["STATUS", "ACTION_LABELS", "KIND_TITLES", "KIND_SHORTCUTS", "statusLabel"]) {
    assert.equal(format[name], undefined, `format.js still exports ${name}`);
  }
});

test("times", () => {
  assert.equal(hm("14:30:00"), "14:30");
  assert.equal(hm(null), "");
  assert.equal(wireTime("09:05"), "09:05:00");
  assert.equal(wireTime("09:05:30.000"), "09:05:30");
  assert.equal(wireTime(" 7 "), "7");
  assert.equal(timeRange("08:00:00", "09:30:00"), "08:00–09:30");
});

test("dates", () => {
  assert.equal(addDays("2026-10-30", 3), "2026-11-02");
  assert.equal(addDays("2026-03-02", -7), "2026-02-23");
  assert.equal(dayLabel("2026-11-22"), "Sun 22 Nov");
  assert.equal(dayLabel("nonsense"), "nonsense");
  assert.equal(dayName("2026-11-22", "2026-11-22"), "Today");
  assert.equal(dayName("2026-11-23", "2026-11-22"), "Tomorrow");
  assert.equal(dayName("2026-11-21", "2026-11-22"), "Yesterday");
  assert.equal(dayName("2026-11-25", "2026-11-22"), "Wed 25 Nov");
  const week = ["2026-12-28", "2026-12-29", "2026-12-30", "2026-12-31", "2027-01-01", "2027-01-02", "2027-01-03"];
  assert.equal(weekLabel(week), "28 Dec – 3 Jan 2027");
  assert.equal(weekLabel([]), "");
});

test("relative times and the sync indicator", () => {
  assert.equal(ago(500), "just now");
  assert.equal(ago(5_000), "5 s ago");
  assert.equal(ago(3 * 60_000), "3 min ago");
  assert.equal(ago(2 * 3_600_000), "2 h ago");
  assert.equal(ago(4 * 86_400_000), "4 d ago");
  const now = Date.parse("2026-11-22T10:00:10Z");
  assert.equal(syncedText("2026-11-22T10:00:00Z", now), "synced 10 s ago");
  assert.equal(syncedText(null, now), "not synced yet");
  assert.equal(pendingText(0), "all saved");
  assert.equal(pendingText(3), "3 pending");
  assert.equal(dotState(null), "offline");
  assert.equal(dotState({ state: "offline", pending: 0 }), "offline");
  assert.equal(dotState({ state: "online", pending: 2 }), "syncing");
  assert.equal(dotState({ state: "online", pending: 0 }), "online");
});

test("initials", () => {
  assert.equal(initials("Elena Reyes"), "ER");
  assert.equal(initials("Ana María de la Cruz"), "LC");
  assert.equal(initials(""), "?");
  assert.equal(initials("(team)"), "?");
});

test("the account's state is told in words only when it stops syncing", async () => {
  const { accountText } = await import("../js/format.js");
  assert.equal(accountText({ state: "online" }), "");
  assert.equal(accountText(null), "");
  assert.match(accountText({ accountDisabled: true, sessionExpired: true }), /disabled by an administrator.*kept/);
  assert.match(accountText({ sessionExpired: true }), /session has ended/);
});
