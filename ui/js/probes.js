// Latency probes for the end-to-end tests and the window benchmark: when the app runs with
// --measure (`session.measure`), a page keeps `window.__clinic = { actions, renders }`;
// otherwise it keeps nothing, so a day's work does not grow the page's memory.

/** Beyond this many entries an array drops its oldest ones. */
export const PROBE_LIMIT = 10_000;

/** The pages' common clock: epoch milliseconds, comparable across windows. */
export const clock = () => performance.timeOrigin + performance.now();

/**
 * createProbes({ measure, host, now, limit }) -> { action(), render(from, to, timing) }
 * `host` is the object that gets `__clinic` (the window; tests pass a plain object).
 * action() returns the entry pushed for a click (the caller fills in its mutationId and
 * `submitted`, when the backend took it), or null. A render's entry carries the view's
 * `timing` ({ at, viewsMs, heard, loaded }, see view.js) when it has one.
 */
export function createProbes({ measure, host = globalThis, now = clock, limit = PROBE_LIMIT }) {
  if (measure !== true) {
    return { action: () => null, render: () => {} };
  }
  host.__clinic = { actions: [], renders: [] };
  // Through `host.__clinic` each time, and with the array's own push: the benchmark wraps
  // `renders.push` to look at the page at the moment of each render.
  const push = (name, entry) => {
    const list = host.__clinic && host.__clinic[name];
    if (!Array.isArray(list)) return;
    list.push(entry);
    if (list.length > limit) list.splice(0, list.length - limit);
  };
  return {
    action() {
      const entry = { t: now(), mutationId: null };
      push("actions", entry);
      return entry;
    },
    render(from, to, timing = null) {
      push("renders", { t: now(), from, to, ...(timing || {}) });
    },
  };
}
