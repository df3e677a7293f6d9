// The two message areas of a dashboard: toasts (a change of mine the backend refused, in
// the window where I acted) and notices (in-app news when native notifications are not
// available). User text goes in as text only.

import { h, setText } from "./dom.js";

const TOAST_MS = 10_000;
const NOTICE_MS = 8_000;
const MAX_TOASTS = 4;
const MAX_NOTICES = 3;

/** Toasts: one per distinct message (repeats bump a counter), dismissable, ~10 s. */
export function toaster(area) {
  const live = new Map();
  function remove(key) {
    const t = live.get(key);
    if (!t) return;
    clearTimeout(t.timer);
    t.el.remove();
    live.delete(key);
  }
  return {
    show(message, code = "error", detail = null) {
      const key = `${code}\u0000${message}\u0000${detail || ""}`;
      const existing = live.get(key);
      if (existing) {
        existing.count += 1;
        setText(existing.countEl, `×${existing.count}`);
        clearTimeout(existing.timer);
        existing.timer = setTimeout(() => remove(key), TOAST_MS);
        return;
      }
      const countEl = h("span", { class: "toast-count" });
      const el = h(
        "div",
        { class: "toast", role: "alert", dataset: { code } },
        h("div", { class: "toast-text" }, h("span", { class: "toast-message" }, message), detail ? h("span", { class: "toast-detail" }, detail) : null),
        countEl,
        h("button", { type: "button", class: "toast-close", "aria-label": "Dismiss", title: "Dismiss", onClick: () => remove(key) }, "×"),
      );
      area.appendChild(el);
      live.set(key, { el, countEl, count: 1, timer: setTimeout(() => remove(key), TOAST_MS) });
      while (live.size > MAX_TOASTS) remove(live.keys().next().value);
    },
  };
}

/**
 * A refusal of a change (a RejectionPayload) told in this window: the reason in words and
 *  - when this dashboard can reopen the change's form (`reopen`, a function, or null), a
 *    "Reopen" button that does so with the typed values. reopen() returns true (or nothing)
 *    when it did, false or a sentence saying why it could not (shown in the toast, which
 *    stays);
 *  - otherwise, when the change was made in a window of another kind (`r.open`, from the
 *    backend), a button that opens one (`open`, a function returning a promise): the new
 *    window tells the refusal with its form, so this toast goes without forgetting it.
 * A refusal with a form (`r.reopen`) stays until the user dismisses or reopens it, whether
 * or not this window can reopen it: what was typed is never dropped on a timer. Only then
 * is `seen()` called, so the backend forgets it (it is kept across restarts until then).
 * A refusal with nothing typed goes after a while like any toast. Shown once per mutation
 * id (the event and the list asked for at load may both bring it).
 */
export function rejectionToaster(area) {
  const live = new Map();
  return {
    show(r, { reopen = null, open = null, seen = () => {} } = {}) {
      if (!r || live.has(r.mutationId)) return;
      const note = h("span", { class: "toast-detail toast-why" });
      note.hidden = true;
      const say = (text) => {
        setText(note, text);
        note.hidden = !text;
      };
      const remove = () => {
        const t = live.get(r.mutationId);
        if (t) clearTimeout(t.timer);
        el.remove();
        live.delete(r.mutationId);
      };
      const done = () => {
        remove();
        seen();
      };
      let action = null;
      if (reopen) {
        action = h(
          "button",
          {
            type: "button",
            class: "btn btn-quiet toast-reopen",
            title: "Open the form again with what you typed",
            onClick: () => {
              const result = reopen();
              if (result === true || result === undefined) done();
              else say(typeof result === "string" && result ? result : "This change cannot be reopened here now.");
            },
          },
          "Reopen",
        );
      } else if (open && r.open) {
        action = h(
          "button",
          {
            type: "button",
            class: "btn btn-quiet toast-open",
            dataset: { kind: r.open.kind },
            title: "That window can reopen the form with what you typed",
            onClick: () =>
              Promise.resolve(open()).then(remove, (err) => say((err && err.message) || `The ${r.open.title} window could not be opened.`)),
          },
          `Open the ${r.open.title} window`,
        );
      }
      const el = h(
        "div",
        { class: "toast toast-rejection", role: "alert", dataset: { code: r.code, mutationId: r.mutationId, reopen: reopen ? r.reopen : "" } },
        h("div", { class: "toast-text" }, h("span", { class: "toast-message" }, r.message), r.detail ? h("span", { class: "toast-detail" }, r.detail) : null, note),
        action,
        h("button", { type: "button", class: "toast-close", "aria-label": "Dismiss", title: "Dismiss", onClick: done }, "×"),
      );
      area.appendChild(el);
      live.set(r.mutationId, { el, timer: r.reopen ? null : setTimeout(done, TOAST_MS) });
    },
  };
}

/** In-app news (app://notice): quiet banners, collapsed when repeated. */
export function noticer(area) {
  const live = new Map();
  function remove(key) {
    const n = live.get(key);
    if (!n) return;
    clearTimeout(n.timer);
    n.el.remove();
    live.delete(key);
  }
  return {
    show(title, body) {
      const key = `${title}\u0000${body}`;
      if (live.has(key)) {
        const n = live.get(key);
        clearTimeout(n.timer);
        n.timer = setTimeout(() => remove(key), NOTICE_MS);
        return;
      }
      const el = h(
        "div",
        { class: "notice", role: "status" },
        h("strong", { class: "notice-title" }, title || "Notice"),
        h("span", { class: "notice-body" }, body || ""),
        h("button", { type: "button", class: "notice-close", "aria-label": "Dismiss", title: "Dismiss", onClick: () => remove(key) }, "×"),
      );
      area.appendChild(el);
      live.set(key, { el, timer: setTimeout(() => remove(key), NOTICE_MS) });
      while (live.size > MAX_NOTICES) remove(live.keys().next().value);
    },
  };
}
