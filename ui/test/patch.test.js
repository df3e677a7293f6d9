// View patches (ui/js/patch.js), in the format src-tauri/patch.rs makes.

import { test } from "node:test";
import assert from "node:assert/strict";
import { applyPatch } from "../js/patch.js";

const row = (id, status) => ({ record: { id, status }, pending: false });

test("no patch is no change", () => {
  const v = { seq: 1 };
  assert.equal(applyPatch(v, null), v);
});

test("fields and rows are patched, everything else keeps its identity", () => {
  const a = row("a", "requested");
  const b = row("b", "requested");
  const old = { seq: 3, more: false, bookings: [a, b] };
  const next = applyPatch(old, {
    o: { seq: { "=": 4 }, bookings: { l: [{ i: 1, p: { o: { record: { o: { status: { "=": "confirmed" } } } } } }, 0, { "=": row("c", "new") }] } },
  });
  assert.deepEqual(next, { seq: 4, more: false, bookings: [row("b", "confirmed"), a, row("c", "new")] });
  assert.equal(next.bookings[1], a);
  assert.equal(old.seq, 3, "the old view is untouched");
  assert.equal(b.record.status, "requested");
});

test("a patch that does not fit is refused", () => {
  assert.throws(() => applyPatch({ rows: [] }, { o: { rows: { l: [0] } } }), /no such row/);
  assert.throws(() => applyPatch([1], { o: { x: { "=": 1 } } }), /not an object/);
  assert.throws(() => applyPatch({}, { x: 1 }), /unknown form/);
});
