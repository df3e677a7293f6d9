// What one window shows: the backend's answer to `load {view}` for the spec the dashboard
// asks for, kept current by loading again when a change batch concerns it. Pure logic: the
// backend calls are injected, so node can test it (ui/test/view.test.js).
//
// Protocol (the app's IPC spec, "Views" and `cache://changes`):
// - Subscribe to change batches BEFORE the first load, so that nothing can slip between the
//   read and the subscription.
// - A view's `seq` is read before its rows, so a batch with `to > seq` may not be in it yet;
//   a batch with `to <= seq` is old news.
// - A batch whose `kinds` meet the view's `kinds`, or a `reset`, means: load again. A batch
//   that concerns other kinds only moves the view's seq forward (nothing it shows changed).
// - At most one load is in flight. Whatever arrives meanwhile is judged against the answer;
//   if it concerns the view, or the dashboard asked for another spec, one more load follows.
//   An answer for a spec that is no longer wanted is never rendered.
// - A failed load is reported through `onError` and tried again after `retryMs`.

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * createView({ load, listenChanges, onError, retryMs, wait })
 *   load(spec): Promise<ViewData>            (ViewData has seq, kinds, and the rows)
 *   listenChanges(handler): Promise<unlisten>  handler gets { from, to, kinds, reset }
 *   wait(ms): Promise                          (tests make time pass faster)
 * Subscribers get { data, from, to, reset }: from..to is the seq range since the previous
 * render; `reset` says that since the previous render the view was replaced rather than
 * updated (the first render, another spec, or a cache reset heard), so a dashboard may drop
 * state tied to the old rows.
 */
export function createView({ load, listenChanges, onError = () => {}, retryMs = 1000, wait = sleep }) {
  const subscribers = new Set();
  let wanted = null; // the spec the dashboard asks for now
  let generation = 0; // bumped by every show(), so an answer knows whether it is outdated
  let data = null;
  let seq = -1; // the seq the rendered data is known to be current at
  let kinds = [];
  let busy = false;
  let settled = Promise.resolve();
  let waiting = []; // batches heard while a load is in flight
  let replaced = true; // the next render replaces the view (see `reset` above)
  let unlisten = null;
  let stopped = false;

  function notify(from) {
    const info = { data, from, to: seq, reset: replaced };
    replaced = false;
    for (const fn of Array.from(subscribers)) {
      try {
        fn(info);
      } catch (err) {
        onError(err);
      }
    }
  }

  /** Whether `batch`, newer than `seq`, may change what the view shows. */
  function concerns(batch) {
    if (batch.reset) return true;
    // A gap means changes we never heard of: they may concern us.
    if (Number(batch.from) > seq + 1) return true;
    if (!Array.isArray(batch.kinds)) return true;
    return batch.kinds.some((k) => kinds.includes(k));
  }

  function onBatch(batch) {
    if (!batch || stopped) return;
    if (Number(batch.to) <= seq) return; // old news
    if (batch.reset) replaced = true;
    if (busy || data === null) {
      waiting.push(batch);
      return;
    }
    if (concerns(batch)) {
      kick();
      return;
    }
    const from = seq + 1;
    seq = Number(batch.to);
    notify(from);
  }

  /** Takes a fresh answer; returns whether something heard meanwhile asks for another load. */
  function accept(answer) {
    const from = seq + 1;
    data = answer;
    seq = Number(answer.seq);
    kinds = Array.isArray(answer.kinds) ? answer.kinds : [];
    const heard = waiting.sort((a, b) => Number(a.from) - Number(b.from));
    waiting = [];
    let again = false;
    for (const batch of heard) {
      if (Number(batch.to) <= seq) continue;
      if (concerns(batch)) {
        // Later batches may not be advanced past this one; the next load covers them.
        again = true;
        break;
      }
      seq = Number(batch.to);
    }
    notify(from);
    return again;
  }

  async function run() {
    for (;;) {
      const asked = generation;
      // Batches heard before this load starts are in its answer (its seq is read later).
      waiting = [];
      let answer;
      try {
        answer = await load(wanted);
      } catch (err) {
        if (stopped) break;
        onError(err);
        await wait(retryMs);
        continue;
      }
      if (stopped) break;
      if (asked !== generation) continue; // the dashboard wants another spec now
      const again = accept(answer);
      // A subscriber may have asked for another spec while rendering.
      if (!again && asked === generation) break;
    }
    // Set synchronously with the loop's end, so a batch right after starts a new load.
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
    /** Subscribes to changes, then loads `spec`. Resolves once the view is current. */
    async start(spec) {
      wanted = spec;
      if (listenChanges) unlisten = await listenChanges(onBatch);
      return kick();
    },
    /** Asks for another spec (filter, week, peer): loads it; older answers are dropped. */
    show(spec) {
      wanted = spec;
      generation += 1;
      replaced = true;
      return kick();
    },
    stop() {
      stopped = true;
      if (typeof unlisten === "function") unlisten();
      subscribers.clear();
    },
    subscribe(fn) {
      subscribers.add(fn);
      return () => subscribers.delete(fn);
    },
    /** For tests: feed a batch as if it came from the backend. */
    receive: onBatch,
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
