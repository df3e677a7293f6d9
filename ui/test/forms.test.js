// The pure parts of the shared booking forms (ui/js/forms.js).

import { test } from "node:test";
import assert from "node:assert/strict";
import { annotatedOptions, editorValues, freeQuery, reopenValues, sameQuery, standingOf, warnings } from "../js/forms.js";

const free = {
  query: { date: "2026-12-01", start: "10:00:00", end: "11:00:00", booking: null },
  therapists: [
    { id: "t1", name: "Elena", role: "therapist", standing: { state: "free" }, words: "Free", warns: false },
    { id: "t2", name: "Jun", role: "therapist", standing: { state: "busy" }, words: "Busy 10:30–11:30 (Ana, confirmed)", warns: true },
  ],
  drivers: [{ id: "d1", name: "Tom", role: "driver", standing: { state: "off" }, words: "Account disabled", warns: true }],
};

test("a form's time becomes the view's query only when it is complete and in order", () => {
  assert.deepEqual(freeQuery({ date: "2026-12-01", start: "10:00", end: "11:00" }), { date: "2026-12-01", start: "10:00:00", end: "11:00:00", booking: null });
  assert.deepEqual(freeQuery({ date: "2026-12-01", start: "10:00:00", end: "11:30" }, "b1").booking, "b1");
  assert.equal(freeQuery({ date: "", start: "10:00", end: "11:00" }), null);
  assert.equal(freeQuery({ date: "2026-12-01", start: "10:00", end: "" }), null);
  assert.equal(freeQuery({ date: "2026-12-01", start: "11:00", end: "10:00" }), null);
  assert.equal(freeQuery({ date: "2026-12-01", start: "10:00", end: "10:00" }), null);
  assert.equal(freeQuery(null), null);
});

test("an answer is for a form's time only when date, times and booking all match", () => {
  const q = { date: "2026-12-01", start: "10:00", end: "11:00" };
  assert.ok(sameQuery(free.query, freeQuery(q)));
  assert.ok(!sameQuery(free.query, freeQuery(q, "b1")));
  assert.ok(!sameQuery(free.query, freeQuery({ ...q, end: "11:15" })));
  assert.ok(sameQuery(null, null));
  assert.ok(!sameQuery(free.query, null));
});

test("only a chosen person who is not free is warned about, in the backend's words", () => {
  assert.deepEqual(warnings(free, { therapist_id: "t1", driver_id: "" }), []);
  assert.deepEqual(warnings(free, { therapist_id: "t2", driver_id: "d1" }), ["Jun: Busy 10:30–11:30 (Ana, confirmed)", "Tom: Account disabled"]);
  assert.deepEqual(warnings(null, { therapist_id: "t2" }), [], "no answer yet: nothing to warn about");
  assert.equal(standingOf(free, "d1").words, "Account disabled");
  assert.equal(standingOf(free, "nobody"), null);
});

test("pickers say each person's standing when the answer is there", () => {
  const people = [
    { id: "t1", name: "Elena" },
    { id: "t3", name: "Kim" },
  ];
  assert.deepEqual(annotatedOptions(people, free.therapists, "— Unassigned —"), [
    { value: "", label: "— Unassigned —" },
    { value: "t1", label: "Elena · Free" },
    { value: "t3", label: "Kim" },
  ]);
  assert.deepEqual(annotatedOptions(people, null).map((o) => o.label), ["Elena", "Kim"]);
});

test("a refused change reopens its form with every value typed", () => {
  const booking = {
    id: "b9",
    client_name: "Ana",
    client_phone: "555",
    address: "1 Main St",
    service: "Massage",
    date: "2026-12-01",
    start: "10:00:00",
    end: "11:00:00",
    therapist_id: "t1",
    driver_id: null,
    notes: "gate code 12",
  };
  assert.deepEqual(reopenValues({ op: "create_booking", booking }), {
    id: "b9",
    values: { client_name: "Ana", client_phone: "555", address: "1 Main St", service: "Massage", date: "2026-12-01", start: "10:00", end: "11:00", therapist_id: "t1", driver_id: "", notes: "gate code 12" },
  });
  assert.deepEqual(reopenValues({ op: "assign_booking", id: "b1", version: 3, therapist_id: null, driver_id: "d1" }), { id: "b1", values: { therapist_id: "", driver_id: "d1" } });
  assert.deepEqual(reopenValues({ op: "reschedule_booking", id: "b1", version: 3, date: "2026-12-02", start: "09:30:00", end: "10:30:00" }).values, { date: "2026-12-02", start: "09:30", end: "10:30" });
  assert.equal(reopenValues({ op: "create_slot", slot: { id: "s1", staff_id: "t1", date: "2026-12-01", start: "09:00:00", end: "12:00:00", note: "" } }).id, "s1");
  assert.deepEqual(reopenValues({ op: "update_slot", id: "s1", version: 2, date: "2026-12-01", start: "09:00:00", end: "13:00:00", note: "late" }).values, { date: "2026-12-01", start: "09:00", end: "13:00", note: "late" });
  assert.equal(reopenValues({ op: "booking_action", id: "b1", version: 1, action: "accept" }), null);
});

test("an editor starts from the booking as it is", () => {
  const b = { date: "2026-12-01", start: "10:00:00", end: "11:00:00", therapist_id: null, driver_id: "d1" };
  assert.deepEqual(editorValues("assign", b), { therapist_id: "", driver_id: "d1" });
  assert.deepEqual(editorValues("reschedule", b), { date: "2026-12-01", start: "10:00", end: "11:00" });
});
