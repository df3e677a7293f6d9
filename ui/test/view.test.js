// The view protocol (ui/js/view.js) against a fake backend: each load is a promise the test
// answers by hand, change batches are delivered by hand, time is a promise the test controls.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createView } from "../js/view.js";

const flush = () => new Promise((resolve) => setImmediate(resolve));

/** A view wired to a fake backend; `loads` are the pending load calls, in order. */
function rig({ kinds = ["booking", "staff"] } = {}) {
  const log = [];
  const loads = [];
  const renders = [];
  const errors = [];
  const waits = [];
  let handler = null;
  const view = createView({
    load: (spec) =>
      new Promise((resolve, reject) => {
        log.push("load");
        loads.push({ spec, resolve, reject });
      }),
    listenChanges: async (fn) => {
      log.push("listen");
      handler = fn;
      return () => {
        handler = null;
      };
    },
    onError: (err) => errors.push(err),
    retryMs: 250,
    wait: (ms) => {
      waits.push(ms);
      return Promise.resolve();
    },
  });
  view.subscribe((info) => renders.push(info));
  const answer = async (i, seq, extra = {}) => {
    loads[i].resolve({ seq, kinds, rows: [`at ${seq}`], ...extra });
    await flush();
  };
  const batch = async (from, to, batchKinds = ["booking"], reset = false) => {
    handler({ from, to, kinds: batchKinds, reset });
    await flush();
  };
  return { view, log, loads, renders, errors, waits, answer, batch };
}

test("subscribes to changes before the first load, then renders the answer", async () => {
  const r = rig();
  r.view.start({ dashboard: "operator", filter: "all" });
  await flush();
  assert.deepEqual(r.log, ["listen", "load"]);
  assert.deepEqual(r.loads[0].spec, { dashboard: "operator", filter: "all" });
  assert.equal(r.renders.length, 0, "nothing rendered before the answer");
  await r.answer(0, 7);
  assert.equal(r.renders.length, 1);
  assert.deepEqual(r.renders[0], { data: { seq: 7, kinds: ["booking", "staff"], rows: ["at 7"] }, from: 0, to: 7, reset: true });
  assert.equal(r.view.seq, 7);
  assert.deepEqual(r.view.data.rows, ["at 7"]);
});

test("start resolves once the first view is rendered", async () => {
  const r = rig();
  let done = false;
  const started = r.view.start({ dashboard: "driver" }).then(() => {
    done = true;
  });
  await flush();
  assert.equal(done, false);
  await r.answer(0, 3);
  await started;
  assert.equal(done, true);
});

test("a batch that is old news changes nothing", async () => {
  const r = rig();
  r.view.start({ dashboard: "operator" });
  await flush();
  await r.answer(0, 10);
  await r.batch(9, 10);
  await r.batch(4, 6, [], true);
  assert.equal(r.loads.length, 1, "no load");
  assert.equal(r.renders.length, 1, "no render");
  assert.equal(r.view.seq, 10);
});

test("a batch of a kind the view reads makes it load again", async () => {
  const r = rig();
  r.view.start({ dashboard: "operator" });
  await flush();
  await r.answer(0, 10);
  await r.batch(11, 12, ["slot", "booking"]);
  assert.equal(r.loads.length, 2);
  await r.answer(1, 12);
  assert.equal(r.renders.length, 2);
  assert.deepEqual(r.renders[1], { data: { seq: 12, kinds: ["booking", "staff"], rows: ["at 12"] }, from: 11, to: 12, reset: false });
  assert.equal(r.view.seq, 12);
});

test("a batch of other kinds only moves the view's seq forward", async () => {
  const r = rig();
  r.view.start({ dashboard: "operator" });
  await flush();
  await r.answer(0, 10);
  const before = r.view.data;
  await r.batch(11, 13, ["message"]);
  assert.equal(r.loads.length, 1, "no load for messages in a bookings view");
  assert.equal(r.view.seq, 13);
  assert.equal(r.renders.length, 2);
  assert.equal(r.renders[1].data, before, "the same data");
  assert.deepEqual([r.renders[1].from, r.renders[1].to, r.renders[1].reset], [11, 13, false]);
});

test("a reset makes the view load again and says so", async () => {
  const r = rig();
  r.view.start({ dashboard: "therapist" });
  await flush();
  await r.answer(0, 10);
  await r.batch(11, 11, [], true);
  assert.equal(r.loads.length, 2);
  await r.answer(1, 11);
  assert.equal(r.renders[1].reset, true);
  assert.equal(r.view.seq, 11);
});

test("a gap in the batches makes the view load again", async () => {
  const r = rig();
  r.view.start({ dashboard: "operator" });
  await flush();
  await r.answer(0, 10);
  await r.batch(15, 16, ["message"]);
  assert.equal(r.loads.length, 2, "changes 11..14 were never heard of");
});

test("batches during a load are coalesced into one more load", async () => {
  const r = rig();
  r.view.start({ dashboard: "operator" });
  await flush();
  await r.answer(0, 10);
  await r.batch(11, 11);
  assert.equal(r.loads.length, 2);
  for (let s = 12; s <= 16; s++) await r.batch(s, s);
  assert.equal(r.loads.length, 2, "at most one load in flight");
  await r.answer(1, 11); // read before 12..16 happened
  assert.equal(r.renders.length, 2, "the answer is rendered");
  assert.equal(r.loads.length, 3, "exactly one more load for everything heard meanwhile");
  await r.answer(2, 16);
  assert.equal(r.loads.length, 3);
  assert.equal(r.view.seq, 16);
});

test("batches the answer already holds cause no further load", async () => {
  const r = rig();
  r.view.start({ dashboard: "operator" });
  await flush();
  await r.batch(5, 6); // heard while the first load is in flight
  await r.answer(0, 6);
  assert.equal(r.loads.length, 1);
  assert.equal(r.view.seq, 6);
});

test("other kinds heard during a load move the seq past the answer without a load", async () => {
  const r = rig();
  r.view.start({ dashboard: "operator" });
  await flush();
  await r.batch(7, 8, ["message"]);
  await r.answer(0, 6);
  assert.equal(r.loads.length, 1);
  assert.equal(r.view.seq, 8);
  assert.deepEqual([r.renders[0].from, r.renders[0].to], [0, 8]);
});

test("an answer for an outdated spec is never rendered", async () => {
  const r = rig();
  r.view.start({ dashboard: "scheduling" });
  await flush();
  await r.answer(0, 5);
  r.view.show({ dashboard: "scheduling", week: "2026-11-02" });
  r.view.show({ dashboard: "scheduling", week: "2026-11-09" });
  await flush();
  assert.equal(r.loads.length, 2, "one load in flight");
  assert.deepEqual(r.loads[1].spec, { dashboard: "scheduling", week: "2026-11-02" });
  await r.answer(1, 5, { week: "2026-11-02" });
  assert.equal(r.renders.length, 1, "the answer for 2 Nov is dropped");
  assert.equal(r.loads.length, 3);
  assert.deepEqual(r.loads[2].spec, { dashboard: "scheduling", week: "2026-11-09" });
  await r.answer(2, 5, { week: "2026-11-09" });
  assert.equal(r.renders.length, 2);
  assert.equal(r.renders[1].data.week, "2026-11-09");
  assert.equal(r.renders[1].reset, true, "another spec replaces the view");
  assert.deepEqual(r.view.spec, { dashboard: "scheduling", week: "2026-11-09" });
});

test("a spec asked for while rendering is loaded next", async () => {
  const r = rig();
  let asked = false;
  r.view.subscribe(() => {
    if (!asked) {
      asked = true;
      r.view.show({ dashboard: "messages", peer: "p2" });
    }
  });
  r.view.start({ dashboard: "messages", peer: null });
  await flush();
  await r.answer(0, 4);
  assert.equal(r.loads.length, 2);
  assert.deepEqual(r.loads[1].spec, { dashboard: "messages", peer: "p2" });
  await r.answer(1, 4);
  assert.equal(r.renders.length, 2);
  assert.equal(r.loads.length, 2);
});

test("a failed load is reported and tried again after retryMs", async () => {
  const r = rig();
  r.view.start({ dashboard: "driver" });
  await flush();
  r.loads[0].reject({ code: "internal", message: "The cache is busy." });
  await flush();
  assert.equal(r.errors.length, 1);
  assert.equal(r.errors[0].message, "The cache is busy.");
  assert.deepEqual(r.waits, [250]);
  assert.equal(r.loads.length, 2, "tried again");
  assert.equal(r.renders.length, 0);
  await r.answer(1, 9);
  assert.equal(r.renders.length, 1);
  assert.equal(r.view.seq, 9);
});

test("after the loop ends, the next relevant batch starts a new load", async () => {
  const r = rig();
  r.view.start({ dashboard: "operator" });
  await flush();
  await r.answer(0, 1);
  await r.batch(2, 2);
  await r.answer(1, 2);
  await r.batch(3, 3);
  assert.equal(r.loads.length, 3);
});

test("renders cover consecutive seq ranges and never go back", async () => {
  const r = rig();
  r.view.start({ dashboard: "operator" });
  await flush();
  await r.answer(0, 3);
  await r.batch(4, 4, ["message"]);
  await r.batch(5, 6, ["booking"]);
  await r.answer(1, 6);
  await r.batch(7, 9, ["staff"]);
  await r.answer(2, 9);
  const ranges = r.renders.map((x) => [x.from, x.to]);
  assert.deepEqual(ranges, [[0, 3], [4, 4], [5, 6], [7, 9]]);
});

test("stop unsubscribes and drops a late answer", async () => {
  const r = rig();
  r.view.start({ dashboard: "operator" });
  await flush();
  r.view.stop();
  await r.answer(0, 3);
  assert.equal(r.renders.length, 0);
});
