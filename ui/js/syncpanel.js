// The sync panel: what the sync dot sums up, in full. Clicking the dot (or Enter on it)
// opens it in every dashboard: connection, server and its version, last sync, lag, the
// changes waiting to be sent (what, from which window, how long), the last error, and
// whether desktop notifications work. Every figure comes from the backend's status
// (sync://status, the same payload in every window), so every window shows the same.
// When the server ended the session, the panel is where the user signs in again.
//
// The top half is pure (figures and words from a status), so node tests it; the rest
// builds the panel with dom.js, text only.

import { h, replaceChildren, setText } from "./dom.js";
import { accountText, ago, clock } from "./format.js";
import { checkNewPassword } from "./password.js";

/** The connection in words, the session's end first: it is why nothing syncs. */
export function connectionText(status) {
  if (!status) return "Connecting…";
  if (status.accountDisabled) return "Account disabled";
  if (status.sessionExpired) return "Session ended: sign in again";
  if (status.state === "online") return "Connected";
  if (status.state === "syncing") return "Connected, syncing";
  return "Offline";
}

/** "1 change" / "3 changes" */
export function changes(n) {
  return `${n} change${n === 1 ? "" : "s"}`;
}

/** An ISO time -> "14:02 (5 s ago)", or "never". */
export function sinceText(iso, now = Date.now()) {
  const t = iso ? Date.parse(iso) : NaN;
  if (Number.isNaN(t)) return "never";
  return `${clock(iso)} (${ago(now - t)})`;
}

/**
 * The panel's figures, in order: { key, label, value, text }. `value` is the raw figure
 * (the same in every window at any moment), `text` what is shown (ages move with the clock).
 */
export function figures(status, now = Date.now()) {
  const s = status || {};
  const pending = s.pending || 0;
  const lag = s.lag || 0;
  // Before the first status the words are the backend's to say; nothing is shown meanwhile.
  const notifications = s.notifications || { state: "unknown", words: "—" };
  return [
    { key: "state", label: "Connection", value: s.accountDisabled ? "disabled" : s.sessionExpired ? "expired" : s.state || "", text: connectionText(status) },
    { key: "server", label: "Server", value: s.server || "", text: s.server || "—" },
    { key: "version", label: "Server version", value: s.serverVersion || "", text: s.serverVersion || "not connected yet" },
    { key: "last-sync", label: "Last sync", value: s.lastSyncAt || "", text: sinceText(s.lastSyncAt, now) },
    { key: "lag", label: "Behind the server", value: String(lag), text: lag === 0 ? "up to date" : `${changes(lag)} behind` },
    { key: "pending", label: "Waiting to be sent", value: String(pending), text: pending === 0 ? "nothing" : changes(pending) },
    { key: "error", label: "Last error", value: s.lastError || "", text: s.lastError || "none" },
    { key: "notifications", label: "Notifications", value: notifications.state, text: notifications.words },
  ];
}

/**
 * The waiting changes as the panel lists them: { id, what, window, label, age }, oldest
 * first, and how many more wait beyond the list (the backend sends the first few).
 */
export function waiting(status, now = Date.now()) {
  const outbox = (status && Array.isArray(status.outbox)) ? status.outbox : [];
  const items = outbox.map((c) => {
    const at = Date.parse(c.queuedAt);
    return {
      id: c.mutationId,
      what: c.what || "A change",
      window: c.window ? (c.windowLabel ? `${c.window} (${c.windowLabel})` : c.window) : "another session",
      label: c.windowLabel || "",
      age: Number.isNaN(at) ? "" : waitedText(now - at),
    };
  });
  const more = Math.max(0, ((status && status.pending) || 0) - items.length);
  return { items, more };
}

/** How long a change has waited: "just now", "waiting 12 s", "waiting 3 min". */
export function waitedText(ms) {
  const a = ago(ms);
  return a === "just now" ? a : `waiting ${a.replace(/ ago$/, "")}`;
}

/**
 * The panel, for the dashboard shell: createSyncPanel({ trigger, signInAgain, minChars })
 * where `trigger` is the sync indicator (a button), signInAgain(password, newPassword) asks
 * the backend and minChars() is the fewest characters of a new password (the session's
 * `minPasswordChars`, asked when needed: the panel exists before the session is known). Returns { el, offer, render(status), open({ signIn }), close() }; `offer` is
 * the "Sign in again…" button the shell shows next to the session-ended banner.
 */
export function createSyncPanel({ trigger, signInAgain, minChars = () => 0 }) {
  let status = null;
  const title = h("h2", { id: "sync-panel-title" }, "Sync");
  const close = h("button", { type: "button", class: "btn btn-quiet sync-panel-close", "aria-label": "Close", title: "Close (Esc)", onClick: () => hide(true) }, "×");
  const list = h("dl", { class: "sync-figures" });
  const outbox = h("ul", { class: "sync-outbox", "aria-label": "Changes waiting to be sent" });
  const more = h("p", { class: "sync-more muted", hidden: true }, "");

  const why = h("p", { class: "sync-signin-why" }, "");
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true });
  const newPassword = h("input", { type: "password", name: "new-password", autocomplete: "new-password" });
  const repeat = h("input", { type: "password", name: "repeat-password", autocomplete: "new-password" });
  const choose = h(
    "div",
    { class: "choose-password", hidden: true },
    h("p", { class: "muted" }, "That was a one-time password: choose a password of your own."),
    h("label", { class: "field" }, h("span", { class: "field-label" }, "New password"), newPassword),
    h("label", { class: "field" }, h("span", { class: "field-label" }, "New password again"), repeat),
  );
  const error = h("p", { class: "form-error", role: "alert", id: "sync-signin-error" }, "");
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Sign in again");
  const form = h(
    "form",
    { class: "form sync-signin", id: "sync-signin", hidden: true },
    h("h3", null, "Sign in again"),
    why,
    h("label", { class: "field" }, h("span", { class: "field-label" }, "Password"), password),
    choose,
    error,
    h("div", { class: "form-buttons" }, submit),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });

  const el = h(
    "section",
    { id: "sync-panel", class: "sync-panel", role: "dialog", "aria-labelledby": "sync-panel-title", hidden: true },
    h("div", { class: "sync-panel-head" }, title, close),
    list,
    h("h3", { class: "sync-outbox-title" }, "Waiting to be sent"),
    outbox,
    more,
    form,
  );
  el.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      hide(true);
    }
  });
  const offer = h("button", { type: "button", class: "btn btn-primary sign-in-again", hidden: true, onClick: () => show({ signIn: true }) }, "Sign in again…");

  trigger.setAttribute("aria-haspopup", "dialog");
  trigger.setAttribute("aria-controls", "sync-panel");
  trigger.setAttribute("aria-expanded", "false");
  trigger.addEventListener("click", () => (el.hidden ? show({}) : hide(false)));
  // A click elsewhere closes it, as a popover does; the keyboard closes it with Esc.
  document.addEventListener("mousedown", (event) => {
    if (!el.hidden && !el.contains(event.target) && !trigger.contains(event.target) && event.target !== offer) hide(false);
  });
  // Ages and "synced 5 s ago" move with the clock while the panel is open.
  setInterval(() => {
    if (!el.hidden) draw();
  }, 1000);

  async function send() {
    if (submit.disabled) return;
    const wantsNew = !choose.hidden;
    const wrong = wantsNew ? checkNewPassword(newPassword.value, repeat.value, minChars()) : null;
    if (wrong) {
      (wrong.code === "passwords_differ" ? repeat : newPassword).focus();
      return fail(wrong);
    }
    submit.disabled = true;
    setText(error, "");
    delete error.dataset.code;
    try {
      await signInAgain(password.value, wantsNew ? newPassword.value : null);
      forget();
      choose.hidden = true;
      form.dataset.done = "true";
    } catch (err) {
      if (err && err.code === "password_change_required") {
        choose.hidden = false;
        newPassword.required = true;
        repeat.required = true;
      }
      fail(err);
    } finally {
      submit.disabled = false;
    }
  }

  function fail(err) {
    setText(error, (err && err.message) || "Could not sign in.");
    error.dataset.code = (err && err.code) || "internal";
  }

  function draw() {
    const now = Date.now();
    replaceChildren(
      list,
      figures(status, now).map((f) =>
        h("div", { class: "sync-figure", dataset: { figure: f.key, value: f.value } }, h("dt", null, f.label), h("dd", null, f.text)),
      ),
    );
    const { items, more: beyond } = waiting(status, now);
    replaceChildren(
      outbox,
      items.length === 0
        ? h("li", { class: "sync-outbox-empty muted" }, "Nothing: every change you made has reached the server.")
        : items.map((c) =>
            h(
              "li",
              { class: "sync-change", dataset: { mutationId: c.id, window: c.label } },
              h("span", { class: "sync-change-what" }, c.what),
              h("span", { class: "sync-change-where muted" }, `made in ${c.window}`),
              h("span", { class: "sync-change-age muted" }, c.age),
            ),
          ),
    );
    setText(more, beyond > 0 ? `and ${changes(beyond)} more` : "");
    more.hidden = beyond === 0;
    const offerWhy = accountText(status);
    setText(why, offerWhy);
    form.hidden = offerWhy === "";
    if (offerWhy !== "") delete form.dataset.done;
    else forget();
  }

  function show({ signIn = false }) {
    el.hidden = false;
    trigger.setAttribute("aria-expanded", "true");
    draw();
    if (signIn && !form.hidden) password.focus();
    else close.focus();
  }

  // Passwords are not kept in the page once the form is out of sight.
  function forget() {
    for (const input of [password, newPassword, repeat]) input.value = "";
  }

  function hide(returnFocus) {
    if (el.hidden) return;
    el.hidden = true;
    forget();
    trigger.setAttribute("aria-expanded", "false");
    if (returnFocus) trigger.focus();
  }

  return {
    el,
    offer,
    render(next) {
      status = next;
      offer.hidden = accountText(status) === "";
      if (!el.hidden) draw();
    },
    open: show,
    close: () => hide(false),
  };
}
