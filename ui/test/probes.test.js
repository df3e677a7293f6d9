// Page probes (ui/js/probes.js): only with --measure, bounded, through the arrays' own push.

import { test } from "node:test";
import assert from "node:assert/strict";
import { PROBE_LIMIT, createProbes } from "../js/probes.js";

test("without measure the page keeps no probes at all", () => {
  const host = {};
  const probes = createProbes({ measure: false, host });
  assert.equal("__clinic" in host, false);
  assert.equal(probes.action(), null);
  probes.render(1, 2);
  assert.equal("__clinic" in host, false);
  createProbes({ measure: undefined, host });
  assert.equal("__clinic" in host, false, "only an explicit true turns them on");
});

test("with measure, clicks and renders are recorded with the clock", () => {
  const host = {};
  let t = 100;
  const probes = createProbes({ measure: true, host, now: () => t++ });
  assert.deepEqual(host.__clinic, { actions: [], renders: [] });
  const entry = probes.action();
  entry.mutationId = "m-1";
  probes.render(5, 7);
  assert.deepEqual(host.__clinic.actions, [{ t: 100, mutationId: "m-1" }]);
  assert.deepEqual(host.__clinic.renders, [{ t: 101, from: 5, to: 7 }]);
  probes.render(8, 8, { at: 90, heard: 95, loaded: 99 });
  assert.deepEqual(host.__clinic.renders[1], { t: 102, from: 8, to: 8, at: 90, heard: 95, loaded: 99 }, "with the view's timing");
});

test("each array drops its oldest entries beyond the limit", () => {
  const host = {};
  let t = 0;
  const probes = createProbes({ measure: true, host, now: () => t++, limit: 3 });
  for (let i = 0; i < 5; i++) probes.render(i, i);
  assert.deepEqual(host.__clinic.renders.map((r) => r.from), [2, 3, 4]);
  assert.equal(PROBE_LIMIT, 10_000);
});

test("renders go through the array's own push, which the benchmark wraps", () => {
  const host = {};
  const probes = createProbes({ measure: true, host, now: () => 1 });
  const seen = [];
  const push = Array.prototype.push;
  host.__clinic.renders.push = function (...items) {
    seen.push(...items);
    return push.apply(this, items);
  };
  probes.render(3, 4);
  assert.deepEqual(seen, [{ t: 1, from: 3, to: 4 }]);
  host.__clinic.actions.length = 0; // the benchmark empties the arrays in place
  probes.action();
  assert.equal(host.__clinic.actions.length, 1);
});
