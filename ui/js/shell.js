// What every dashboard window has: the header (app name, window title, user, sync
// indicator, the Window menu), the toast and notice areas, the store, and the probes the
// end-to-end tests read. Each dashboard module calls startDashboard() with its renderer.

import { COMMANDS, EVENTS, invoke, listen, windowLabel } from "./ipc.js";
import { createStore } from "./store.js";
import { h, setText } from "./dom.js";
import { KIND_SHORTCUTS, KIND_TITLES, dotState, pendingText, syncedText, statusLabel } from "./format.js";

// Latency probes: clicks/submits in `actions`, applied-and-rendered batches in `renders`.
window.__clinic = window.__clinic || { actions: [], renders: [] };

const now = () => performance.timeOrigin + performance.now();
const TOAST_MS = 10_000;
const NOTICE_MS = 8_000;
const MAX_TOASTS = 4;

/**
 * startDashboard({ kind, build(ctx) }) where build returns { render(info) }.
 * ctx = { kind, label, user, session, store, main, submit, toast, act }
 */
export async function startDashboard({ kind, build }) {
  const body = document.body;
  let label = "";
  try {
    label = windowLabel();
  } catch (err) {
    label = `${kind}-?`;
  }
  body.dataset.window = label;
  body.dataset.seq = "-1";

  const title = KIND_TITLES[kind] || kind;
  document.title = `${title} · Clinic Desk`;

  const ui = frame(title);
  body.replaceChildren(ui.root);

  let session;
  try {
    session = await invoke(COMMANDS.SESSION);
  } catch (err) {
    return fatal(ui, "Clinic Desk could not start this window.", err.message);
  }
  if (!session.user) {
    return fatal(ui, "You are signed out.", "Sign in again from the login window.");
  }
  const user = session.user;
  setText(ui.user, user.display_name);
  ui.user.title = `${user.username} · ${user.roles.join(", ")}`;
  buildWindowMenu(ui, session.dashboards || [], kind);

  const toasts = toaster(ui.toasts);
  const notices = noticer(ui.notices);

  // Sync state, driven by sync://status (and load_view's status until the first event).
  let status = null;
  let statusFromEvent = false;
  const showStatus = () => renderSync(ui, status);
  setInterval(showStatus, 1000);
  await Promise.all([
    listen(EVENTS.STATUS, (s) => {
      status = s;
      statusFromEvent = true;
      showStatus();
    }),
    listen(EVENTS.REJECTION, (r) => {
      // Every window rolls back through ordinary changes; only the one where the user
      // acted tells them.
      if (!r || r.origin !== label) return;
      toasts.show(r.message, r.code, rejectionDetail(r.current));
    }),
    listen(EVENTS.NOTICE, (n) => {
      if (n) notices.show(n.title, n.body);
    }),
  ]).catch((err) => console.warn("listen failed", err));

  const store = createStore({
    loadView: () => invoke(COMMANDS.LOAD_VIEW),
    listenChanges: (handler) => listen(EVENTS.CHANGES, handler),
    onError: (err) => console.warn("clinic store:", err),
  });

  /** Submits a mutation; records the click for the latency probe; toasts a refusal. */
  async function submit(mutation, { probe = true } = {}) {
    const entry = probe ? { t: now(), mutationId: null } : null;
    if (entry) window.__clinic.actions.push(entry);
    try {
      const res = await invoke(COMMANDS.SUBMIT, { mutation });
      if (entry && res) entry.mutationId = res.mutationId;
      return res;
    } catch (err) {
      toasts.show(err.message, err.code);
      throw err;
    }
  }

  /** A click handler for a button that submits: disables it until the change shows up. */
  function act(button, makeMutation) {
    button.addEventListener("click", () => {
      if (button.disabled) return;
      button.disabled = true;
      submit(makeMutation()).catch(() => {
        button.disabled = false;
      });
    });
    return button;
  }

  const ctx = {
    kind,
    label,
    user,
    session,
    store,
    main: ui.main,
    submit,
    act,
    toast: (message, code = "info") => toasts.show(message, code),
  };
  const dashboard = build(ctx);

  store.subscribe((info) => {
    try {
      dashboard.render(info);
    } catch (err) {
      console.error("render failed", err);
    }
    body.dataset.seq = String(store.lastSeq);
    window.__clinic.renders.push({ t: now(), from: info.from, to: info.to });
    if (!statusFromEvent && store.status) {
      status = store.status;
      showStatus();
    }
    if (body.dataset.ready !== "true") {
      ui.root.classList.remove("is-loading");
      body.dataset.ready = "true";
    }
  });
  await store.start();
}

function frame(title) {
  const dot = h("span", { id: "sync-dot", class: "sync-dot", dataset: { state: "syncing" }, "aria-hidden": "true" });
  const pending = h("span", { id: "sync-pending", class: "sync-pending" }, "");
  const last = h("span", { id: "sync-last", class: "sync-last" }, "connecting…");
  const sync = h("div", { class: "sync", role: "status", "aria-live": "polite", title: "Sync state" }, dot, pending, last);
  const user = h("span", { class: "user-name" }, "");
  const menu = h("nav", { class: "window-menu", "aria-label": "Window" });
  const header = h(
    "header",
    { class: "app-header" },
    h("div", { class: "brand" }, h("span", { class: "app-name" }, "Clinic Desk"), h("h1", { class: "window-title" }, title)),
    menu,
    h("div", { class: "header-right" }, sync, user),
  );
  const notices = h("div", { id: "notices", class: "notices", "aria-live": "polite" });
  const toasts = h("div", { id: "toasts", class: "toasts", "aria-live": "assertive" });
  const main = h("main", { class: "app-main", id: "main" });
  const root = h("div", { class: "app is-loading" }, header, notices, main, toasts);
  return { root, header, main, menu, user, dot, pending, last, sync, notices, toasts };
}

function fatal(ui, heading, detail) {
  ui.main.replaceChildren(h("div", { class: "fatal" }, h("h2", null, heading), h("p", null, detail || "")));
  ui.root.classList.remove("is-loading");
  document.body.dataset.ready = "true";
}

function buildWindowMenu(ui, kinds, current) {
  const order = ["operator", "therapist", "driver", "scheduling", "messages"];
  const items = order.filter((k) => kinds.includes(k));
  const list = h("div", { class: "menu-list", id: "window-menu-list", role: "menu", hidden: true });
  const toggle = h(
    "button",
    { type: "button", class: "menu-toggle", "aria-haspopup": "menu", "aria-expanded": "false", "aria-controls": "window-menu-list" },
    "Window",
    h("span", { class: "caret", "aria-hidden": "true" }, "▾"),
  );
  const setOpen = (open) => {
    list.hidden = !open;
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) list.querySelector("button")?.focus();
  };
  toggle.addEventListener("click", () => setOpen(list.hidden));
  const item = (text, hint, onClick, extra = {}) =>
    h(
      "button",
      {
        type: "button",
        role: "menuitem",
        class: "menu-item",
        ...extra,
        onClick: () => {
          setOpen(false);
          toggle.focus();
          onClick();
        },
      },
      h("span", null, text),
      hint ? h("span", { class: "menu-hint" }, hint) : null,
    );
  list.append(
    ...items.map((k) =>
      item(`New ${KIND_TITLES[k]} window`, KIND_SHORTCUTS[k], () => invoke(COMMANDS.OPEN_WINDOW, { kind: k }).catch((err) => console.warn(err)), {
        dataset: { open: k },
        class: ["menu-item", k === current && "is-current"],
      }),
    ),
    h("div", { class: "menu-sep", role: "separator" }),
    item("Sign out", null, () => invoke(COMMANDS.LOGOUT).catch((err) => console.warn(err)), { class: "menu-item sign-out" }),
  );
  list.addEventListener("keydown", (e) => {
    const buttons = Array.from(list.querySelectorAll("button"));
    const i = buttons.indexOf(document.activeElement);
    if (e.key === "Escape") {
      setOpen(false);
      toggle.focus();
    } else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      const next = (i + (e.key === "ArrowDown" ? 1 : buttons.length - 1)) % buttons.length;
      buttons[next].focus();
    }
  });
  document.addEventListener("click", (e) => {
    if (!list.hidden && !ui.menu.contains(e.target)) setOpen(false);
  });
  ui.menu.replaceChildren(toggle, list);
}

function renderSync(ui, status) {
  const state = status ? dotState(status) : "syncing";
  if (ui.dot.dataset.state !== state) ui.dot.dataset.state = state;
  document.body.dataset.syncState = status ? status.state : "syncing";
  if (!status) return;
  setText(ui.pending, pendingText(status.pending || 0));
  setText(ui.last, status.state === "offline" ? `offline · ${syncedText(status.lastSyncAt)}` : syncedText(status.lastSyncAt));
  const parts = [
    status.state === "online" ? "Connected" : status.state === "syncing" ? "Syncing" : "Offline",
    status.pending ? `${status.pending} change(s) waiting for the server` : "all changes saved",
  ];
  if (status.oldestPendingSecs != null && status.pending) parts.push(`oldest waiting ${status.oldestPendingSecs} s`);
  if (status.lastError) parts.push(status.lastError);
  ui.sync.title = parts.join(" · ");
}

function rejectionDetail(current) {
  if (!current) return null;
  if (current.kind === "booking") {
    return `Booking for ${current.client_name} is now ${statusLabel(current.status).toLowerCase()}.`;
  }
  return null;
}

/** Toasts: one per distinct message (repeats bump a counter), dismissable, ~10 s. */
function toaster(area) {
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
      const key = `${code}\u0000${message}`;
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
function noticer(area) {
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
      while (live.size > 3) remove(live.keys().next().value);
    },
  };
}
