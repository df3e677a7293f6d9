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
