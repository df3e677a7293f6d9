// The view protocol (ui/js/view.js) against a fake backend: each load is a promise the test
// answers by hand, channel messages are delivered by hand, time is a promise the test controls.

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
    load: (spec, base, channel) =>
      new Promise((resolve, reject) => {
        log.push("load");
        loads.push({ spec, base, channel, resolve, reject });
      }),
    updates: (fn) => {
      log.push("channel");
      handler = fn;
      return `channel ${log.filter((l) => l === "channel").length}`;
    },
    onError: (err) => errors.push(err),
    retryMs: 250,
    now: () => 1000 + log.length,
    wait: (ms) => {
      waits.push(ms);
      return Promise.resolve();
    },
  });
  view.subscribe((info) => renders.push(info));
  let revs = 0;
  /** Answers load `i` with the whole view at `seq`. */
  const answer = async (i, seq, extra = {}) => {
    revs += 1;
    loads[i].resolve({ rev: revs, data: { seq, kinds, rows: [`at ${seq}`], ...extra } });
    await flush();
  };
  /** Answers load `i` with a patch to read `base`. */
  const patch = async (i, base, p) => {
    revs += 1;
    loads[i].resolve({ rev: revs, base, patch: p });
    await flush();
  };
  /** A batch on the channel, without a view patch (as for a batch that does not concern the view). */
  const batch = async (from, to, batchKinds = ["booking"], reset = false, at = 500) => {
    handler({ batch: { from, to, kinds: batchKinds, reset, at, viewsMs: 2 }, view: null });
    await flush();
  };
  /** A batch on the channel with a patch to read `base`, making read `rev`. */
  const pushed = async (from, to, view, batchKinds = ["booking"]) => {
    handler({ batch: { from, to, kinds: batchKinds, reset: false, at: 500 }, view });
    await flush();
  };
  return { view, log, loads, renders, errors, waits, answer, patch, batch, pushed };
}

test("hands each load a channel of its own, then renders the answer", async () => {
  const r = rig();
  r.view.start({ dashboard: "operator", filter: "all" });
  await flush();
  assert.deepEqual(r.log, ["channel", "load"]);
  assert.equal(r.loads[0].channel, "channel 1");
  assert.deepEqual(r.loads[0].spec, { dashboard: "operator", filter: "all" });
  assert.equal(r.renders.length, 0, "nothing rendered before the answer");
  await r.answer(0, 7);
  assert.equal(r.renders.length, 1);
  assert.deepEqual(r.renders[0], { data: { seq: 7, kinds: ["booking", "staff"], rows: ["at 7"] }, from: 0, to: 7, reset: true, timing: null });
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

test("a batch of a kind the view reads, without a patch, makes it load again", async () => {
  const r = rig();
  r.view.start({ dashboard: "operator" });
  await flush();
  await r.answer(0, 10);
  await r.batch(11, 12, ["slot", "booking"]);
  assert.equal(r.loads.length, 2);
  await r.answer(1, 12);
  assert.equal(r.renders.length, 2);
  const { timing, ...info } = r.renders[1];
  assert.deepEqual(info, { data: { seq: 12, kinds: ["booking", "staff"], rows: ["at 12"] }, from: 11, to: 12, reset: false });
  assert.equal(timing.at, 500, "when the backend sent the batch");
  assert.equal(timing.viewsMs, 2, "and how long it read views before");
  assert.ok(timing.heard < timing.loaded, "heard, then loaded");
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

test("loading again names the read held, and a patch to it keeps untouched rows as they were", async () => {
  const r = rig();
  r.view.start({ dashboard: "operator" });
  await flush();
  assert.equal(r.loads[0].base, null, "nothing held yet: the whole view");
  r.loads[0].resolve({ rev: 4, data: { seq: 3, kinds: ["booking"], bookings: [{ id: "a", s: 1 }, { id: "b", s: 1 }] } });
  await flush();
  const [a, b] = r.view.data.bookings;
  await r.batch(4, 4);
  assert.equal(r.loads[1].base, 4, "the read this window holds");
  assert.equal(r.loads[1].channel, "channel 2", "a channel of its own");
  r.loads[1].resolve({ rev: 5, base: 4, patch: { o: { seq: { "=": 4 }, bookings: { l: [0, { i: 1, p: { o: { s: { "=": 2 } } } }] } } } });
  await flush();
  assert.equal(r.view.seq, 4);
  assert.equal(r.view.data.bookings[0], a, "the untouched row is the same object");
  assert.notEqual(r.view.data.bookings[1], b);
  assert.deepEqual(r.view.data.bookings[1], { id: "b", s: 2 });
  assert.deepEqual(b, { id: "b", s: 1 }, "the old view is not modified");
  await r.batch(5, 5);
  assert.equal(r.loads[2].base, 5);
  r.loads[2].resolve({ rev: 5, base: 5, patch: null });
  await flush();
  assert.equal(r.renders.length, 3);
  assert.deepEqual(r.view.data.bookings, [a, r.renders[1].data.bookings[1]], "nothing changed");
});

test("a patch to another read is not applied: the whole view is loaded instead", async () => {
  const r = rig();
  r.view.start({ dashboard: "operator" });
  await flush();
  await r.answer(0, 3); // rev 1
  await r.batch(4, 4);
  await r.patch(1, 7, { o: { seq: { "=": 4 } } });
  assert.equal(r.errors.length, 1, "said");
  assert.equal(r.renders.length, 1, "not rendered");
  assert.equal(r.loads.length, 3);
  assert.equal(r.loads[2].base, null, "the whole view");
  await r.answer(2, 4);
  assert.equal(r.view.seq, 4);
});

test("another spec is loaded whole, never patched onto the old one", async () => {
  const r = rig();
  r.view.start({ dashboard: "scheduling" });
  await flush();
  await r.answer(0, 5);
  r.view.show({ dashboard: "scheduling", week: "2026-11-09" });
  await flush();
  assert.equal(r.loads[1].base, null);
});

test("a pushed patch to the read held is applied without a load", async () => {
  const r = rig();
  r.view.start({ dashboard: "operator" });
  await flush();
  r.loads[0].resolve({ rev: 4, data: { seq: 3, kinds: ["booking"], bookings: [{ id: "a", s: 1 }, { id: "b", s: 1 }] } });
  await flush();
  const [a] = r.view.data.bookings;
  await r.pushed(4, 5, { rev: 6, base: 4, patch: { o: { seq: { "=": 5 }, bookings: { l: [0, { i: 1, p: { o: { s: { "=": 2 } } } }] } } } });
  assert.equal(r.loads.length, 1, "no load");
  assert.equal(r.view.seq, 5);
  assert.equal(r.view.data.bookings[0], a);
  assert.deepEqual(r.view.data.bookings[1], { id: "b", s: 2 });
  const last = r.renders[1];
  assert.deepEqual([last.from, last.to, last.reset], [4, 5, false]);
  assert.equal(last.timing.at, 500);
  await r.pushed(6, 6, { rev: 7, base: 6, patch: null });
  assert.equal(r.view.seq, 6);
  assert.equal(r.loads.length, 1);
});

test("a pushed patch to another read makes the view load, naming the read it holds", async () => {
  const r = rig();
  r.view.start({ dashboard: "operator" });
  await flush();
  await r.answer(0, 3); // rev 1
  await r.pushed(4, 4, { rev: 9, base: 8, patch: null });
  assert.equal(r.loads.length, 2);
  assert.equal(r.loads[1].base, 1);
});

test("pushes heard during a load are applied after its answer when they fit it", async () => {
  const r = rig();
  r.view.start({ dashboard: "operator" });
  await flush();
  // Pushed after the backend registered the read it is answering with (rev 1, seq 3).
  await r.pushed(4, 4, { rev: 2, base: 1, patch: { o: { seq: { "=": 4 } } } });
  await r.pushed(2, 3, { rev: 0, base: 0, patch: null }); // made before the read: old news
  await r.answer(0, 3);
  assert.equal(r.loads.length, 1, "no further load");
  assert.equal(r.view.seq, 4);
  assert.equal(r.renders.length, 1, "one render for the answer and what came with it");
});

test("a gap or a reset on the channel makes the view load", async () => {
  const r = rig();
  r.view.start({ dashboard: "operator" });
  await flush();
  await r.answer(0, 3);
  await r.pushed(6, 6, { rev: 5, base: 1, patch: null });
  assert.equal(r.loads.length, 2, "4 and 5 were missed");
  await r.answer(1, 6);
  await r.batch(7, 7, [], true);
  assert.equal(r.loads.length, 3);
});

test("a whole view pushed in place of a patch is taken as it is", async () => {
  const r = rig();
  r.view.start({ dashboard: "operator" });
  await flush();
  await r.answer(0, 3); // rev 1
  await r.pushed(4, 4, { rev: 9, data: { seq: 4, kinds: ["booking"], rows: ["whole at 4"] } });
  assert.equal(r.loads.length, 1, "no load");
  assert.deepEqual(r.view.data.rows, ["whole at 4"]);
  await r.pushed(5, 5, { rev: 10, base: 9, patch: { o: { seq: { "=": 5 } } } });
  assert.equal(r.view.seq, 5, "the next patch is to that read");
  assert.equal(r.loads.length, 1);
});
