// The Staff dashboard (administrators): every account with its roles and state, as the
// backend reads them from the cache (staff records reach every app through the feed, so a
// change made anywhere shows here live). Its actions go to the server at once (create an
// account, change roles, disable or enable, reset a password); a refusal is shown where
// the action was taken, in the server's words, with what was typed kept. A one-time
// password the server makes is shown once, to copy and hand over.

import { startDashboard } from "./shell.js";
import { COMMANDS, EVENTS, invoke, listen } from "./ipc.js";
import { h, field, setText, syncList } from "./dom.js";
import { rowSig } from "./rows.js";

startDashboard({ spec: { dashboard: "admin" }, build });

function build(ctx) {
  const { main } = ctx;
  // Per-account local state: id -> { editing (roles being chosen) | null, editingVersion
  // (the account's version the ticks started from: a change by someone else meanwhile is
  // then refused as a conflict instead of being overwritten), error, busy }.
  const rows = new Map();
  let last = null;

  const list = h("ul", { class: "staff-list", id: "staff", "aria-label": "Staff accounts" }, h("li", { class: "placeholder" }, "Loading staff…"));
  const count = h("span", { class: "muted tabular" }, "");
  // Account changes are made on the server itself: said before anyone tries, when offline.
  const offline = h(
    "p",
    { class: "form-warning", id: "staff-offline", role: "status", hidden: true },
    "This computer cannot reach the clinic server: accounts can be seen but not changed until it is back online.",
  );
  listen(EVENTS.STATUS, (s) => {
    offline.hidden = !s || s.state !== "offline";
  }).catch((err) => console.warn("listen failed", err));
  const form = newStaffForm();
  const issued = issuedDialog();

  main.append(
    h(
      "div",
      { class: "layout-operator" },
      h("section", { class: "panel staff-panel" }, h("div", { class: "panel-head" }, h("h2", null, "Staff"), h("div", { class: "panel-tools" }, count)), offline, list),
      h("aside", { class: "col-side" }, form.el),
    ),
  );

  const stateOf = (id) => {
    if (!rows.has(id)) rows.set(id, { editing: null, editingVersion: null, error: "", busy: false });
    return rows.get(id);
  };
  const repaint = () => last && render(last);

  function render(info) {
    last = info;
    const d = info.data;
    const active = d.staff.filter((r) => r.state !== "disabled").length;
    setText(count, `${d.staff.length} accounts · ${active} enabled`);
    // Local state goes with the accounts that are gone.
    const ids = new Set(d.staff.map((r) => r.record.id));
    for (const id of rows.keys()) if (!ids.has(id)) rows.delete(id);
    syncList(list, d.staff, {
      key: (r) => r.record.id,
      // The editor's open state and message, not the boxes ticked: ticking must not rebuild.
      sig: (r) => {
        const s = rows.get(r.record.id);
        return rowSig(r, s ? [Boolean(s.editing), s.error, s.busy] : null);
      },
      build: (r) => staffRow(r, d.roles),
      empty: () => h("li", { class: "empty" }, "No staff accounts yet."),
    });
    form.refresh(d.roles);
  }

  /**
   * Runs one account action against the server; the row shows the refusal, or the
   * one-time password dialog opens. The row changes itself when the feed brings the change.
   */
  async function run(id, command, args, after) {
    const state = stateOf(id);
    state.busy = true;
    state.error = "";
    repaint();
    try {
      const answer = await invoke(command, args);
      if (after) after(answer);
      if (answer && answer.oneTimePassword) issued.show(answer.staff, answer.oneTimePassword, "reset");
    } catch (err) {
      state.error = err.message || "The change was not made.";
      state.code = err.code || "internal";
    } finally {
      state.busy = false;
      repaint();
    }
  }

  function staffRow(row, roles) {
    const s = row.record;
    const state = stateOf(s.id);
    const label = (value) => (roles.find((r) => r.value === value) || { label: value }).label;
    const disabled = row.state === "disabled";
    const editRoles = h(
      "button",
      {
        type: "button",
        class: ["btn", "btn-quiet", state.editing && "is-on"],
        dataset: { action: "edit-roles" },
        "aria-expanded": state.editing ? "true" : "false",
        disabled: state.busy,
        onClick: () => {
          state.editing = state.editing ? null : new Set(s.roles);
          state.editingVersion = state.editing ? s.version : null;
          state.error = "";
          repaint();
        },
      },
      "Roles…",
    );
    const toggle = h(
      "button",
      {
        type: "button",
        class: ["btn", disabled ? "btn-quiet" : "btn-danger"],
        dataset: { action: disabled ? "enable" : "disable" },
        disabled: state.busy,
        onClick: () => run(s.id, COMMANDS.CHANGE_STAFF, { id: s.id, version: s.version, disabled: !disabled }),
      },
      disabled ? "Enable" : "Disable",
    );
    const reset = h(
      "button",
      { type: "button", class: "btn btn-quiet", dataset: { action: "reset-password" }, disabled: state.busy || disabled, onClick: () => run(s.id, COMMANDS.RESET_PASSWORD, { id: s.id }) },
      "Reset password",
    );
    let editor = null;
    if (state.editing) {
      const chosen = state.editing;
      editor = h(
        "form",
        {
          class: "editor roles-editor",
          "aria-label": `Roles of ${s.display_name}`,
          onSubmit: (e) => {
            e.preventDefault();
            const picked = roles.map((r) => r.value).filter((v) => chosen.has(v));
            run(s.id, COMMANDS.CHANGE_STAFF, { id: s.id, version: state.editingVersion, roles: picked }, () => {
              state.editing = null;
              state.editingVersion = null;
            });
          },
        },
        roleBoxes(roles, chosen),
        h(
          "div",
          { class: "editor-buttons" },
          h("button", { type: "submit", class: "btn btn-primary", disabled: state.busy }, "Save roles"),
          h("button", { type: "button", class: "btn btn-quiet", onClick: () => { state.editing = null; state.editingVersion = null; state.error = ""; repaint(); } }, "Close"),
        ),
      );
    }
    return h(
      "li",
      { class: ["staff", disabled && "is-disabled"], dataset: { staffId: s.id, username: s.username, state: row.state, roles: s.roles.join(",") } },
      h(
        "div",
        { class: "staff-head" },
        h("span", { class: "staff-name" }, s.display_name, row.me ? h("span", { class: "muted" }, " (you)") : null),
        h("span", { class: "staff-username muted" }, s.username),
        h("span", { class: "chip staff-state", dataset: { state: row.state } }, row.stateLabel),
      ),
      h("div", { class: "staff-roles" }, s.roles.map((r) => h("span", { class: "chip role", dataset: { role: r } }, label(r)))),
      // Not one's own account: disabling it or resetting its password would end this very
      // session (one's own password is changed from the Window menu).
      h("div", { class: "staff-tools" }, editRoles, row.me ? null : toggle, row.me ? null : reset),
      editor,
      h("p", { class: "form-error", role: "alert", dataset: { code: state.error ? state.code : "" } }, state.error || ""),
    );
  }

  /** The form that makes an account. What was typed stays until the server takes it. */
  function newStaffForm() {
    const chosen = new Set();
    const error = h("p", { class: "form-error", role: "alert", id: "new-staff-error" });
    const boxes = h("div", { class: "role-boxes-slot" });
    const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Create account");
    const el = h(
      "form",
      { id: "new-staff", class: "panel form", "aria-labelledby": "new-staff-title" },
      h("h2", { id: "new-staff-title" }, "New person"),
      field("Username", h("input", { name: "username", type: "text", required: true, autocomplete: "off", spellcheck: "false", autocapitalize: "off", maxlength: 64 })),
      field("Full name", h("input", { name: "display_name", type: "text", required: true, autocomplete: "off", maxlength: 200 })),
      h("fieldset", { class: "roles-field" }, h("legend", { class: "field-label" }, "Roles"), boxes),
      error,
      h("div", { class: "form-buttons" }, submit),
      h("p", { class: "hint" }, "They get a one-time password, shown once here, and choose their own at their first sign-in."),
    );
    let busy = false;
    el.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (busy) return;
      busy = true;
      submit.disabled = true;
      setText(error, "");
      const f = el.elements;
      const staff = { username: f.username.value.trim(), displayName: f.display_name.value.trim(), roles: Array.from(chosen) };
      try {
        const answer = await invoke(COMMANDS.CREATE_STAFF, { staff });
        el.reset();
        chosen.clear();
        for (const box of el.querySelectorAll("input[name=role]")) box.checked = false;
        delete error.dataset.code;
        issued.show(answer.staff, answer.oneTimePassword, "new");
      } catch (err) {
        setText(error, err.message || "The account was not made.");
        error.dataset.code = err.code || "internal";
      } finally {
        busy = false;
        submit.disabled = false;
      }
    });
    let shown = false;
    return {
      el,
      refresh(roles) {
        if (shown || !roles.length) return;
        shown = true;
        boxes.replaceChildren(roleBoxes(roles, chosen));
      },
    };
  }

  return { render };
}

/** A checkbox per role (the backend's list and words), kept in `chosen`. */
function roleBoxes(roles, chosen) {
  return h(
    "div",
    { class: "role-boxes" },
    roles.map((r) =>
      h(
        "label",
        { class: "role-box" },
        h("input", {
          type: "checkbox",
          name: "role",
          value: r.value,
          checked: chosen.has(r.value),
          onChange: (e) => (e.target.checked ? chosen.add(r.value) : chosen.delete(r.value)),
        }),
        h("span", null, r.label),
      ),
    ),
  );
}

/** The dialog that shows a one-time password, once: copy it and hand it over. */
function issuedDialog() {
  const intro = h("p", { id: "issued-intro" });
  const password = h("output", { id: "issued-password", class: "issued-password tabular" });
  const copied = h("span", { class: "muted", role: "status" });
  const copy = h(
    "button",
    {
      type: "button",
      class: "btn",
      onClick: async () => {
        try {
          await navigator.clipboard.writeText(password.textContent);
          setText(copied, "Copied.");
        } catch {
          // Without clipboard access the text is selected, for Ctrl+C.
          const range = document.createRange();
          range.selectNodeContents(password);
          const sel = window.getSelection();
          sel.removeAllRanges();
          sel.addRange(range);
          setText(copied, "Selected: press Ctrl+C to copy.");
        }
      },
    },
    "Copy",
  );
  const dialog = h(
    "dialog",
    { class: "dialog", id: "issued-dialog", "aria-labelledby": "issued-title" },
    h(
      "div",
      { class: "form dialog-form" },
      h("h2", { id: "issued-title" }, "One-time password"),
      intro,
      h("div", { class: "issued-row" }, password, copy, copied),
      h("p", { class: "hint" }, "It is shown only now. They sign in with it once and then choose a password of their own."),
      h("div", { class: "form-buttons" }, h("button", { type: "button", class: "btn btn-primary", onClick: () => dialog.close() }, "Done")),
    ),
  );
  // The password leaves the page when the dialog closes.
  dialog.addEventListener("close", () => {
    setText(password, "");
    setText(copied, "");
  });
  document.body.appendChild(dialog);
  return {
    show(staff, oneTime, why) {
      const who = `${staff.display_name} (${staff.username})`;
      setText(intro, why === "new" ? `${who} can now sign in with this password:` : `${who}'s password was reset. Their sessions were ended; they sign in with:`);
      setText(password, oneTime);
      setText(copied, "");
      dialog.dataset.username = staff.username;
      if (!dialog.open) dialog.showModal();
    },
  };
}
