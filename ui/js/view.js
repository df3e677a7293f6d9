// What one window shows: the backend's answer to `load {view}` for the spec the dashboard
// asks for, kept current by what the backend pushes after each change. Pure logic: the
// backend calls are injected, so node can test it (ui/test/view.test.js).
//
// Protocol (src-tauri/watch.rs):
// - Each load gives the backend a new `updates` channel (a Tauri channel's Rust side
//   numbers its messages from 0 each time it is taken, so one is never handed over
//   twice); the backend drops the previous one. The answer is a read numbered `rev`: the whole view,
//   or a patch (patch.js) to the read the window named as `base`. A view's `seq` is the
//   cache sequence it was read at.
// - From then on every change batch arrives on the channel as { batch, view }: `view` is
//   a patch to the read the window holds when the batch concerns its view (the whole view
//   if the backend no longer keeps that read), else null.
//   A batch with `to <= seq` is old news. A patch to the read held is applied: no load.
// - A load is needed when a batch concerns the view and brings no patch that fits, when a
//   batch is a `reset`, or when batches were missed (a gap in seq).
// - At most one load is in flight. Whatever arrives meanwhile is judged against its
//   answer; if it still asks for a load, or the dashboard asked for another spec, one
//   more load follows. An answer for a spec that is no longer wanted is never rendered.
// - A failed load is reported through `onError` and tried again after `retryMs`.

import { applyPatch } from "./patch.js";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * createView({ load, updates, onError, retryMs, wait, now })
 *   load(spec, base, channel): Promise<{ rev, data } | { rev, base, patch }>
 *                              (data is ViewData: seq, kinds, and the rows)
 *   updates(handler): channel   makes a channel for `load` to hand the backend; handler gets
 *                               { batch: { from, to, kinds, reset, at, viewsMs }, view }
 *   wait(ms): Promise           (tests make time pass faster)
 *   now(): number               (the page's clock, for `timing`)
 * Subscribers get { data, from, to, reset, timing }: from..to is the seq range since the
 * previous render; `reset` says that since the previous render the view was replaced rather
 * than updated (the first render, another spec, or a cache reset heard), so a dashboard may
 * drop state tied to the old rows. Rows a patch did not touch are the same objects as in the
 * previous render. `timing` is { at, viewsMs, heard, loaded } for a render caused by a
 * batch (when the backend sent it, how long it read views before, when the page heard it,
 * when its patch was in hand), else null.
 */
export function createView({ load, updates, onError = () => {}, retryMs = 1000, wait = sleep, now = () => Date.now() }) {
  const subscribers = new Set();
  let wanted = null; // the spec the dashboard asks for now
  let generation = 0; // bumped by every show(), so an answer knows whether it is outdated
  let data = null;
  let rev = null; // the backend's number for the read `data` is, while it is for `wanted`
  let seq = -1; // the seq the rendered data is known to be current at
  let kinds = [];
  let busy = false;
  let settled = Promise.resolve();
  let waiting = []; // messages heard while a load is in flight, in order
  let replaced = true; // the next render replaces the view (see `reset` above)
  let stopped = false;
  let cause = null; // { at, viewsMs, heard } of the first batch since the last render
  let loaded = null; // when what is about to be rendered was in hand

  function notify(from) {
    const timing = cause && loaded !== null ? { ...cause, loaded } : null;
    const info = { data, from, to: seq, reset: replaced, timing };
    replaced = false;
    cause = null;
    loaded = null;
    for (const fn of Array.from(subscribers)) {
      try {
        fn(info);
      } catch (err) {
        onError(err);
      }
    }
  }

  /**
   * Brings the view up to a message newer than `seq`, without a load if it can; returns
   * false if a load is needed.
   */
  function take({ batch, view }) {
    // A reset replaced everything; a gap means changes we never heard of.
    if (batch.reset || Number(batch.from) > seq + 1) return false;
    if (view && view.data) {
      data = view.data;
      rev = view.rev;
      kinds = Array.isArray(data.kinds) ? data.kinds : [];
      seq = Math.max(Number(data.seq), Number(batch.to));
      loaded = now();
      return true;
    }
    if (view) {
      if (rev === null || view.base !== rev) return false;
      let next;
      try {
        next = applyPatch(data, view.patch);
      } catch (err) {
        onError(err);
        return false;
      }
      data = next;
      rev = view.rev;
      seq = Math.max(Number(data.seq), Number(batch.to));
      loaded = now();
      return true;
    }
    const concerns = !Array.isArray(batch.kinds) || batch.kinds.some((k) => kinds.includes(k));
    if (concerns) return false; // it should have come with a patch
    seq = Number(batch.to);
    return true;
  }

  function onMessage(message) {
    if (stopped || !message || !message.batch) return;
    const batch = message.batch;
    if (Number(batch.to) <= seq) return; // old news
    if (batch.reset) replaced = true;
    if (cause === null) cause = { at: Number(batch.at), viewsMs: Number(batch.viewsMs), heard: now() };
    if (busy || data === null) {
      waiting.push(message);
      return;
    }
    const from = seq + 1;
    if (take(message)) notify(from);
    else kick();
  }

  /** Takes a fresh view; returns whether something heard meanwhile asks for another load. */
  function accept(view) {
    const from = seq + 1;
    data = view;
    seq = Number(view.seq);
    kinds = Array.isArray(view.kinds) ? view.kinds : [];
    const heard = waiting;
    waiting = [];
    let again = false;
    for (const message of heard) {
      if (Number(message.batch.to) <= seq) continue;
      if (!take(message)) {
        again = true;
        break;
      }
    }
    notify(from);
    return again;
  }

  /** The view an answer gives: the whole view, or the held one patched (throws if it does not fit). */
  function viewFrom(answer) {
    if (answer.data) return answer.data;
    if (rev === null || answer.base !== rev) throw new Error("view patch: for another read");
    return applyPatch(data, answer.patch);
  }

  async function run() {
    for (;;) {
      const asked = generation;
      // Messages heard before this load starts are in its answer (it is read later).
      waiting = [];
      let answer;
      try {
        answer = await load(wanted, rev, updates ? updates(onMessage) : null);
      } catch (err) {
        if (stopped) break;
        onError(err);
        await wait(retryMs);
        continue;
      }
      if (stopped) break;
      if (asked !== generation) continue; // the dashboard wants another spec now
      let view;
      try {
        view = viewFrom(answer);
      } catch (err) {
        // Not a patch to what this window holds: the next load asks for the whole view.
        onError(err);
        rev = null;
        continue;
      }
      rev = answer.rev;
      loaded = now();
      const again = accept(view);
      // A subscriber may have asked for another spec while rendering.
      if (!again && asked === generation) break;
    }
    // Set synchronously with the loop's end, so a message right after starts a new load.
    busy = false;
  }

  /** Starts a load unless one is running (that one then decides whether to load again). */
  function kick() {
    if (stopped) return settled;
    if (!busy) {
      busy = true;
      settled = run();
    }
    return settled;
  }

  return {
    /** Loads `spec`. Resolves once the view is current. */
    async start(spec) {
      wanted = spec;
      return kick();
    },
    /** Asks for another spec (filter, week, peer): loads it; older answers are dropped. */
    show(spec) {
      wanted = spec;
      generation += 1;
      replaced = true;
      rev = null; // a patch is to a read of the same spec only
      return kick();
    },
    stop() {
      stopped = true;
      subscribers.clear();
    },
    subscribe(fn) {
      subscribers.add(fn);
      return () => subscribers.delete(fn);
    },
    /** For tests: feed a message as if it came on the channel. */
    receive: onMessage,
    get data() {
      return data;
    },
    get seq() {
      return seq;
    },
    get spec() {
      return wanted;
    },
  };
}
