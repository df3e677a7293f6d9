// Helpers over the backend's rows (ui/js/rows.js).

import { test } from "node:test";
import assert from "node:assert/strict";
import { cellItems, itemKey, personOptions, rowSig, threadItems, toDoOn, withDayHeaders } from "../js/rows.js";

const booking = (id, date, start = "09:00:00", more = {}) => ({
  record: { id, date, start, end: "10:00:00", status: "requested", version: 1 },
  pending: false,
  actions: [],
  editable: false,
  therapistName: "Maria",
  driverName: null,
  ...more,
});

test("a row's signature changes with everything the backend sent for it", () => {
  const a = booking("b1", "2026-11-22");
  const same = booking("b1", "2026-11-22");
  assert.equal(rowSig(a), rowSig(same));
  assert.notEqual(rowSig(a), rowSig({ ...a, pending: true }));
  assert.notEqual(rowSig(a), rowSig({ ...a, actions: ["accept"] }));
  assert.notEqual(rowSig(a), rowSig({ ...a, therapistName: "Maria R." }));
  assert.notEqual(rowSig(a), rowSig({ ...a, record: { ...a.record, version: 2 } }));
  assert.notEqual(rowSig(a, "2026-11-22"), rowSig(a, "2026-11-23"), "and with local state");
});

test("day headers come before each new day, with the day's count", () => {
  const rows = [booking("a", "2026-11-22"), booking("b", "2026-11-22"), booking("c", "2026-11-23")];
  const items = withDayHeaders(rows, "2026-11-22");
  assert.deepEqual(
    items.map((i) => (i.header ? `${i.label}:${i.count}` : i.record.id)),
    ["Today:2", "a", "b", "Tomorrow:1", "c"],
  );
  assert.deepEqual(items.map(itemKey), ["day:2026-11-22", "a", "b", "day:2026-11-23", "c"]);
  assert.deepEqual(withDayHeaders([], "2026-11-22"), []);
});

test("to do today counts today's rows that offer an action", () => {
  const rows = [
    booking("a", "2026-11-22", "09:00:00", { actions: ["accept", "decline"] }),
    booking("b", "2026-11-22"),
    booking("c", "2026-11-23", "09:00:00", { actions: ["accept"] }),
  ];
  assert.equal(toDoOn(rows, "2026-11-22"), 1);
  assert.equal(toDoOn(rows, "2026-11-24"), 0);
});

test("person options", () => {
  const people = [{ id: "t1", name: "Maria", roles: ["therapist"] }, { id: "t2", name: "Reyes", roles: ["therapist"] }];
  assert.deepEqual(personOptions(people), [{ value: "t1", label: "Maria" }, { value: "t2", label: "Reyes" }]);
  assert.deepEqual(personOptions(people, "— None —")[0], { value: "", label: "— None —" });
  assert.deepEqual(personOptions(undefined, "x"), [{ value: "", label: "x" }]);
});

test("a thread gets a header per local day", () => {
  const local = (y, m, d, hr) => ({ record: { id: `${d}-${hr}`, sent_at: new Date(y, m, d, hr).toISOString() }, pending: false, mine: true });
  const days = threadItems([local(2026, 10, 22, 9), local(2026, 10, 22, 18), local(2026, 10, 23, 8)]);
  assert.deepEqual(days.map((i) => i.header || i.record.id), ["2026-11-22", "22-9", "22-18", "2026-11-23", "23-8"]);
});

test("a cell holds the lane's slots and bookings of that day by start, slots first", () => {
  const slot = (id, date, start) => ({ record: { id, date, start }, pending: false, manageable: true, staffName: "Maria" });
  const lane = {
    id: "t1",
    name: "Maria",
    manageable: true,
    slots: [slot("s1", "2026-11-22", "08:00:00"), slot("s2", "2026-11-22", "13:00:00"), slot("s3", "2026-11-23", "08:00:00")],
    bookings: [booking("b1", "2026-11-22", "13:00:00"), booking("b2", "2026-11-22", "10:00:00")],
  };
  assert.deepEqual(cellItems(lane, "2026-11-22").map((i) => i.row.record.id), ["s1", "b2", "s2", "b1"]);
  assert.deepEqual(cellItems(lane, "2026-11-24"), []);
});
