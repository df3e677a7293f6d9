// The window's copy of the cache: every record the user may see, keyed "kind:id", at the
// cache sequence `lastSeq`. Pure logic: the backend calls are injected, so node can test it.
//
// Protocol (src-tauri/events.rs): subscribe to change batches BEFORE reading the view,
// buffer batches while the view is loading, then apply the buffered ones that follow the
// view's seq. A batch applies only when from == lastSeq + 1; to <= lastSeq is a duplicate;
// a gap or a reset means: read the whole view again.

export function recordKey(kind, id) {
  return `${kind}:${id}`;
}

/**
 * createStore({ loadView, listenChanges, retryMs, onError })
 *   loadView(): Promise<{ seq, records: [{ record, pending }], status }>
 *   listenChanges(handler): Promise<unlisten>   handler receives { from, to, changes }
 */
export function createStore({ loadView, listenChanges, retryMs = 1000, onError = () => {} }) {
  const records = new Map();
  const subscribers = new Set();
  let lastSeq = -1;
  let status = null;
  let loaded = false;
  let loading = false;
  let buffer = [];
  let inflight = null;
  let staffRev = 0;
  let unlisten = null;

  function notify(info) {
    for (const fn of Array.from(subscribers)) {
      try {
        fn(info);
      } catch (err) {
        onError(err);
      }
    }
  }

  function put(entry) {
    const r = entry.record;
    if (!r || !r.kind) return;
    records.set(recordKey(r.kind, r.id), { record: r, pending: Boolean(entry.pending) });
    if (r.kind === "staff") staffRev += 1;
  }

  function replace(view) {
    records.clear();
    staffRev += 1;
    for (const entry of view.records || []) put(entry);
    lastSeq = Number(view.seq);
    if (view.status) status = view.status;
  }

  /** Applies one batch: "applied", "duplicate" or "reload" (gap or reset). */
  function applyBatch(batch) {
    const from = Number(batch.from);
    const to = Number(batch.to);
    if (to <= lastSeq) return "duplicate";
    if (from > lastSeq + 1) return "reload";
    // A batch overlapping what we have: skip the changes already applied.
    const changes = (batch.changes || []).slice(lastSeq + 1 - from);
    for (const change of changes) {
      if (change.type === "reset") return "reload";
      if (change.type === "upsert") put(change);
      else if (change.type === "remove") {
        records.delete(recordKey(change.kind, change.id));
        if (change.kind === "staff") staffRev += 1;
      }
    }
    lastSeq = to;
    return "applied";
  }

  function onBatch(batch) {
    if (!batch) return;
    if (loading || !loaded) {
      buffer.push(batch);
      return;
    }
    const result = applyBatch(batch);
    if (result === "applied") notify({ from: Number(batch.from), to: lastSeq, reset: false });
    else if (result === "reload") reload();
  }

  /** Reads the whole view again (coalescing concurrent requests); resolves when current. */
  function reload() {
    // Batches that arrive meanwhile are buffered and checked once the view is in.
    if (loading) return inflight;
    loading = true;
    inflight = (async () => {
      const fromSeq = lastSeq;
      let again;
      do {
        again = false;
        let view;
        try {
          view = await loadView();
        } catch (err) {
          onError(err);
          again = true;
          await new Promise((r) => setTimeout(r, retryMs));
          continue;
        }
        replace(view);
        const buffered = buffer.sort((a, b) => Number(a.from) - Number(b.from));
        buffer = [];
        for (const batch of buffered) {
          if (applyBatch(batch) === "reload") {
            again = true;
            break;
          }
        }
      } while (again);
      loading = false;
      loaded = true;
      notify({ from: fromSeq + 1, to: lastSeq, reset: true });
    })();
    return inflight;
  }

  const entries = (kind) => {
    const out = [];
    for (const e of records.values()) if (e.record.kind === kind) out.push(e);
    return out;
  };

  return {
    /** Subscribes to changes, then reads the view. Resolves once the first view is in. */
    async start() {
      if (listenChanges) unlisten = await listenChanges(onBatch);
      await reload();
    },
    stop() {
      if (typeof unlisten === "function") unlisten();
      subscribers.clear();
    },
    reload,
    /** For tests and the event handler: feed a batch as if it came from the backend. */
    receive: onBatch,
    subscribe(fn) {
      subscribers.add(fn);
      return () => subscribers.delete(fn);
    },
    get lastSeq() {
      return lastSeq;
    },
    get loaded() {
      return loaded;
    },
    get status() {
      return status;
    },
    set status(s) {
      status = s;
    },
    /** Changes whenever any staff record changes (names in other records' rows). */
    get staffRev() {
      return staffRev;
    },
    get size() {
      return records.size;
    },
    get(kind, id) {
      return records.get(recordKey(kind, id)) || null;
    },
    record(kind, id) {
      const e = records.get(recordKey(kind, id));
      return e ? e.record : null;
    },
    entries,
    staffList() {
      return entries("staff")
        .map((e) => e.record)
        .sort((a, b) => a.display_name.localeCompare(b.display_name));
    },
    staff(id) {
      return id ? this.record("staff", id) : null;
    },
    staffName(id, fallback = "Unassigned") {
      if (!id) return fallback;
      const s = this.record("staff", id);
      return s ? s.display_name : "Unknown staff";
    },
    withRole(role) {
      return this.staffList().filter((s) => s.roles.includes(role));
    },
    bookings() {
      return entries("booking");
    },
    slots() {
      return entries("slot");
    },
    messages() {
      return entries("message");
    },
  };
}
