// What every dashboard window has: the header (app name, window title, Window menu, sync
// indicator, user), the toast and notice areas, the view the backend keeps current, and the
// hooks the end-to-end tests read (body data-window, data-ready, data-seq, data-sync-state).
// Each dashboard module calls startDashboard() with the view it asks for and its renderer.

import { COMMANDS, EVENTS, channel, invoke, listen, windowLabel } from "./ipc.js";
import { createView } from "./view.js";
import { clock, createProbes } from "./probes.js";
import { h, setText } from "./dom.js";
import { windowMenu } from "./menu.js";
import { noticer, rejectionToaster, toaster } from "./toasts.js";
import { passwordDialog } from "./password.js";
import { accountText, dotState, pendingText, syncedText, wordsFrom } from "./format.js";
import { createSyncPanel } from "./syncpanel.js";

const RETRY_MS = 1000;

/**
 * startDashboard({ spec, build }) where `spec` is the first view to load
 * ({ dashboard: "operator", filter: "all" }, ...) and build(ctx) returns { render(info) };
 * render gets { data, from, to, reset } (see view.js) and may be called again by the
 * dashboard itself with the last info when only local state changed.
 * ctx = { label, user, session, words, view, main, submit, act, toast, onReopen(form, open) }
 */
export async function startDashboard({ spec, build }) {
  const body = document.body;
  let label = "";
  try {
    label = windowLabel();
  } catch {
    label = `${spec.dashboard}-?`;
  }
  body.dataset.window = label;
  body.dataset.seq = "-1";

  const ui = frame();
  // The sync dot opens the sync panel; the session-ended banner offers to sign in again there.
  ui.panel = createSyncPanel({
    trigger: ui.sync,
    signInAgain: (password, newPassword) => invoke(COMMANDS.SIGN_IN_AGAIN, { password, newPassword }),
    minChars: () => (session && session.minPasswordChars) || 0,
  });
  ui.root.appendChild(ui.panel.el);
  ui.notices.insertBefore(ui.panel.offer, ui.loadError);
  body.replaceChildren(ui.root);

  let session;
  try {
    session = await invoke(COMMANDS.SESSION);
  } catch (err) {
    return fatal(ui, "Clinic Desk could not start this window.", err.message);
  }
  const title = (session.window && session.window.title) || "";
  setText(ui.title, title);
  document.title = title ? `${title} · Clinic Desk` : "Clinic Desk";
  if (!session.user) {
    return fatal(ui, "You are signed out.", "Sign in again from the login window.");
  }
  const user = session.user;
  setText(ui.user, user.display_name);
  ui.user.title = `${user.username} · ${user.roles.join(", ")}`;
  // The change-password dialog: from the Window menu here, or the app menu's item (which
  // names the window that shows it).
  let passwords = null;
  const changePassword = () => {
    passwords = passwords || passwordDialog({ minChars: session.minPasswordChars });
    passwords.open();
  };
  const showMenu = (s) =>
    windowMenu(ui.menu, s.dashboards || [], s.window && s.window.kind, [
      { text: "Change password…", className: "change-password", onClick: changePassword },
    ]);
  showMenu(session);
  if (session.notice) stickyNotice(ui.notices, session.notice);

  const probes = createProbes({ measure: session.measure, host: window });
  const words = wordsFrom(session.words);
  const toasts = toaster(ui.toasts);
  const notices = noticer(ui.notices);
  const refusals = rejectionToaster(ui.toasts);
  // The forms this dashboard can reopen a refused change in: form name -> open(mutation,
  // refusal), which returns true when it did, or false or a sentence saying why it could
  // not (the booking is not shown here: the toast says so and stays).
  const reopeners = new Map();
  // A refusal whose form this window lacks offers to open the window of the change's kind
  // (the backend says which, in r.open), which tells it again with its form.
  const tell = (r) =>
    refusals.show(r, {
      reopen: r.reopen && reopeners.has(r.reopen) ? () => reopeners.get(r.reopen)(r.mutation, r) : null,
      open: r.open ? () => invoke(COMMANDS.OPEN_WINDOW, { kind: r.open.kind }) : null,
      seen: () => invoke(COMMANDS.SEEN_REJECTION, { mutationId: r.mutationId }).catch((err) => console.warn("seen_rejection failed", err)),
    });

  // Sync state: sync://status events, and each view's status until the first event.
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
      // Every window shows the rollback through ordinary changes; only the one the backend
      // names tells the user, in its own words.
      if (!r || r.origin !== label) return;
      tell(r);
    }),
    listen(EVENTS.NOTICE, (n) => {
      if (!n) return;
      // A notice for one window (why windows closed) stays until dismissed.
      if (n.to) {
        if (n.to === label) stickyNotice(ui.notices, n);
        return;
      }
      notices.show(n.title, n.body);
    }),
    listen(EVENTS.CHANGE_PASSWORD, (to) => {
      if (to === label) changePassword();
    }),
    // The roles changed and this window stays: its menu offers what they allow now.
    listen(EVENTS.ROLES_CHANGED, async () => {
      try {
        const now = await invoke(COMMANDS.SESSION);
        if (!now.user) return;
        ui.user.title = `${now.user.username} · ${now.user.roles.join(", ")}`;
        showMenu(now);
      } catch (err) {
        console.warn("session after a role change", err);
      }
    }),
  ]).catch((err) => console.warn("listen failed", err));

  const view = createView({
    load: (v, base, updates) => invoke(COMMANDS.LOAD, { view: v, base, updates }),
    now: clock,
    updates: channel,
    retryMs: RETRY_MS,
    onError: (err) => {
      console.warn("clinic view:", err);
      // Said once in the page until a load succeeds; the view keeps trying.
      const why = err && typeof err.message === "string" && err.message ? err.message : "This dashboard could not be loaded.";
      setText(ui.loadError, `${why} Trying again…`);
      ui.loadError.hidden = false;
    },
  });

  /**
   * Submits a mutation. A click is recorded for the latency probes (unless probe: false);
   * a refusal is toasted unless the caller shows it itself (quiet: true, forms).
   */
  async function submit(mutation, { probe = true, quiet = false } = {}) {
    const entry = probe ? probes.action() : null;
    try {
      const res = await invoke(COMMANDS.SUBMIT, { mutation });
      if (entry && res) {
        entry.mutationId = res.mutationId;
        entry.submitted = clock();
      }
      return res;
    } catch (err) {
      if (!quiet) toasts.show(err.message, err.code);
      throw err;
    }
  }

  /** A click handler for a button that submits: disabled until the change shows up. */
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
    label,
    user,
    session,
    words,
    view,
    main: ui.main,
    submit,
    act,
    toast: (message, code = "info") => toasts.show(message, code),
    onReopen: (form, open) => reopeners.set(form, open),
  };
  const dashboard = build(ctx);
  // Refusals this window has to tell that nobody has seen yet (the app restarted since).
  invoke(COMMANDS.REJECTIONS)
    .then((list) => (list || []).forEach(tell))
    .catch((err) => console.warn("rejections failed", err));

  view.subscribe((info) => {
    try {
      dashboard.render(info);
    } catch (err) {
      console.error("render failed", err);
    }
    body.dataset.seq = String(info.to);
    probes.render(info.from, info.to, info.timing);
    ui.loadError.hidden = true;
    if (!statusFromEvent && info.data && info.data.status) {
      status = info.data.status;
      showStatus();
    }
    if (body.dataset.ready !== "true") {
      ui.root.classList.remove("is-loading");
      body.dataset.ready = "true";
    }
  });
  try {
    await view.start(spec);
  } catch (err) {
    fatal(ui, "Clinic Desk could not start this window.", err && err.message);
  }
}

function frame() {
  const dot = h("span", { id: "sync-dot", class: "sync-dot", dataset: { state: "syncing" }, "aria-hidden": "true" });
  const pending = h("span", { id: "sync-pending", class: "sync-pending" }, "");
  const last = h("span", { id: "sync-last", class: "sync-last" }, "connecting…");
  const sync = h("button", { type: "button", id: "sync-button", class: "sync", "aria-live": "polite", title: "Sync state: click for details" }, dot, pending, last);
  const user = h("span", { class: "user-name" }, "");
  const menu = h("nav", { class: "window-menu", "aria-label": "Window" });
  const title = h("h1", { class: "window-title" }, "");
  const header = h(
    "header",
    { class: "app-header" },
    h("div", { class: "brand" }, h("span", { class: "app-name" }, "Clinic Desk"), title),
    menu,
    h("div", { class: "header-right" }, sync, user),
  );
  const loadError = h("p", { class: "load-error", role: "alert", hidden: true }, "");
  // Why nothing syncs for this account any more (disabled, or the session ended).
  const account = h("p", { class: "load-error account-state", role: "alert", hidden: true }, "");
  const notices = h("div", { id: "notices", class: "notices", "aria-live": "polite" }, account, loadError);
  const toasts = h("div", { id: "toasts", class: "toasts", "aria-live": "assertive" });
  const main = h("main", { class: "app-main", id: "main" });
  const root = h("div", { class: "app is-loading" }, header, notices, main, toasts);
  return { root, header, title, main, menu, user, dot, pending, last, sync, notices, loadError, account, toasts };
}

/** A notice that stays until dismissed (its kind in data-kind, for the tests). */
function stickyNotice(area, n) {
  const el = h(
    "div",
    { class: "notice notice-sticky", role: "status", dataset: { kind: n.kind || "" } },
    h("strong", { class: "notice-title" }, n.title || "Notice"),
    h("span", { class: "notice-body" }, n.body || ""),
    h("button", { type: "button", class: "notice-close", "aria-label": "Dismiss", title: "Dismiss", onClick: () => el.remove() }, "×"),
  );
  area.appendChild(el);
}

function fatal(ui, heading, detail) {
  ui.main.replaceChildren(h("div", { class: "fatal" }, h("h2", null, heading), h("p", null, detail || "")));
  ui.root.classList.remove("is-loading");
  document.body.dataset.ready = "true";
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
  const why = accountText(status);
  if (ui.account.textContent !== why) setText(ui.account, why);
  ui.account.hidden = why === "";
  ui.account.dataset.state = status.accountDisabled ? "disabled" : status.sessionExpired ? "expired" : "ok";
  if (ui.panel) ui.panel.render(status);
}
