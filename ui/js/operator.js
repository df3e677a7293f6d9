// Operator dashboard: today's figures, the bookings the backend selects for the chosen
// filter (newest first, a page at a time), each with the actions its row carries, the
// assign and reschedule editors where the row is editable, and the new-booking form when the
// view says the user may create bookings.

import { startDashboard } from "./shell.js";
import { h, field, select, fillSelect, setText, syncList } from "./dom.js";
import { hm, wireTime } from "./format.js";
import { bookingCard } from "./bookings.js";
import { personOptions, rowSig } from "./rows.js";

// The filters the operator view offers (src-tauri/ipc.rs OperatorFilter): the backend
// selects the rows; these are only the menu's words.
const FILTERS = [
  { value: "all", label: "All bookings" },
  { value: "attention", label: "Needs attention" },
  { value: "today", label: "Today" },
  { value: "open", label: "Open (not finished)" },
];
/** How many more rows "Show more" asks for. */
const PAGE = 200;

startDashboard({ spec: { dashboard: "operator", filter: "all" }, build });

function build(ctx) {
  const { view, main } = ctx;
  // Per-booking editor state: id -> { mode: "assign" | "reschedule", values, error }
  const editing = new Map();
  let last = null; // the last info rendered, for repaints after local changes

  const figure = (id, label) =>
    h("div", { class: "figure" }, h("span", { class: "figure-value", id }, "–"), h("span", { class: "figure-label" }, label));
  const figures = h(
    "section",
    { class: "figures", "aria-label": "Today" },
    figure("count-pending", "Pending requests"),
    figure("count-confirmed-today", "Confirmed today"),
    figure("count-total", "Total bookings"),
  );

  const list = h("ul", { class: "booking-list", id: "bookings", "aria-label": "Bookings" }, h("li", { class: "placeholder" }, "Loading bookings…"));
  const filterSelect = select(
    { "aria-label": "Show", class: "compact", onChange: (e) => view.show({ dashboard: "operator", filter: e.target.value }) },
    FILTERS,
    "all",
  );
  const shownCount = h("span", { class: "muted tabular" }, "");
  const more = h("button", { type: "button", class: "btn btn-quiet more", hidden: true, onClick: showMore }, "Show more");
  const form = newBookingForm(ctx);
  const side = h("aside", { class: "col-side", hidden: true }, form.el);

  main.append(
    h(
      "div",
      { class: "layout-operator" },
      h(
        "div",
        { class: "col-main" },
        figures,
        h(
          "section",
          { class: "panel" },
          h("div", { class: "panel-head" }, h("h2", null, "Bookings"), h("div", { class: "panel-tools" }, shownCount, filterSelect)),
          list,
          more,
        ),
      ),
      side,
    ),
  );

  function showMore() {
    const spec = view.spec;
    const shown = last ? last.data.bookings.length : 0;
    view.show({ dashboard: "operator", filter: spec.filter, limit: shown + PAGE });
  }

  function render(info) {
    last = info;
    const d = info.data;
    const today = d.today;
    setText(document.getElementById("count-pending"), d.counts.pendingRequests);
    setText(document.getElementById("count-confirmed-today"), d.counts.confirmedToday);
    setText(document.getElementById("count-total"), d.counts.total);
    const unsynced = d.counts.unsynced ? ` · ${d.counts.unsynced} unsynced` : "";
    setText(shownCount, `${d.bookings.length}${d.more ? "+" : ""} shown${unsynced}`);
    more.hidden = !d.more;

    // An editor stays open only while its row is here and still editable.
    const editable = new Set(d.bookings.filter((r) => r.editable).map((r) => r.record.id));
    for (const id of editing.keys()) if (!editable.has(id)) editing.delete(id);

    const filter = view.spec.filter || "all";
    syncList(list, d.bookings, {
      key: (r) => r.record.id,
      // The editor's mode and message, not its values: typing must not rebuild the row.
      sig: (r) => rowSig(r, editorSig(editing.get(r.record.id)), today),
      build: (r) => card(r, today),
      empty: () => h("li", { class: "empty" }, filter === "all" ? "No bookings yet." : "No bookings match this filter."),
    });
    side.hidden = !d.mayCreate;
    form.refresh(d);
  }

  const repaint = () => last && render(last);
  const editorSig = (state) => (state ? [state.mode, state.error] : null);

  function card(row, today) {
    const b = row.record;
    const state = editing.get(b.id);
    const toggle = (mode, text) =>
      h(
        "button",
        {
          type: "button",
          class: ["btn", "btn-quiet", state?.mode === mode && "is-on"],
          dataset: { edit: mode },
          "aria-expanded": state?.mode === mode ? "true" : "false",
          onClick: () => {
            if (editing.get(b.id)?.mode === mode) editing.delete(b.id);
            else editing.set(b.id, { mode, values: initialValues(mode, b), error: "" });
            repaint();
            const el = list.querySelector(`[data-booking-id="${b.id}"]`);
            const first = el && el.querySelector(".editor select, .editor input");
            if (first) first.focus();
          },
        },
        text,
      );
    const tools = row.editable ? [toggle("assign", "Assign"), toggle("reschedule", "Reschedule")] : null;
    let extra = null;
    if (row.editable && state) extra = state.mode === "assign" ? assignEditor(b, state) : rescheduleEditor(b, state);
    return bookingCard(ctx, row, { today, tools, extra });
  }

  function initialValues(mode, b) {
    return mode === "assign"
      ? { therapist_id: b.therapist_id || "", driver_id: b.driver_id || "" }
      : { date: b.date, start: hm(b.start), end: hm(b.end) };
  }

  function close(id) {
    editing.delete(id);
    repaint();
  }

  /** Submits an editor's change: closes it when taken, shows the backend's sentence if not. */
  function save(id, state, mutation) {
    ctx.submit(mutation, { quiet: true }).then(
      () => close(id),
      (err) => {
        state.error = err.message;
        repaint();
      },
    );
  }

  function editorButtons(id, text) {
    return h("div", { class: "editor-buttons" }, h("button", { type: "submit", class: "btn btn-primary" }, text), h("button", { type: "button", class: "btn btn-quiet", onClick: () => close(id) }, "Close"));
  }

  function assignEditor(b, state) {
    const v = state.values;
    const onChange = (e) => {
      v[e.target.name] = e.target.value;
    };
    const d = last.data;
    return h(
      "form",
      {
        class: "editor",
        "aria-label": "Assign therapist and driver",
        onSubmit: (e) => {
          e.preventDefault();
          save(b.id, state, { op: "assign_booking", id: b.id, version: b.version, therapist_id: v.therapist_id || null, driver_id: v.driver_id || null });
        },
      },
      field("Therapist", select({ name: "therapist_id", onChange }, personOptions(d.therapists, "— Unassigned —"), v.therapist_id)),
      field("Driver", select({ name: "driver_id", onChange }, personOptions(d.drivers, "— No driver —"), v.driver_id)),
      editorButtons(b.id, "Save assignment"),
      h("p", { class: "form-error", role: "alert" }, state.error || ""),
    );
  }

  function rescheduleEditor(b, state) {
    const v = state.values;
    const onInput = (e) => {
      v[e.target.name] = e.target.value;
    };
    return h(
      "form",
      {
        class: "editor",
        "aria-label": "Reschedule",
        onSubmit: (e) => {
          e.preventDefault();
          save(b.id, state, { op: "reschedule_booking", id: b.id, version: b.version, date: v.date, start: wireTime(v.start), end: wireTime(v.end) });
        },
      },
      field("Date", h("input", { type: "date", name: "date", value: v.date, required: true, onInput })),
      field("Start", h("input", { type: "time", name: "start", value: v.start, required: true, onInput })),
      field("End", h("input", { type: "time", name: "end", value: v.end, required: true, onInput })),
      editorButtons(b.id, "Move booking"),
      h("p", { class: "form-error", role: "alert" }, state.error || ""),
      h("p", { class: "hint" }, "A new time goes back to the therapist to confirm."),
    );
  }

  return { render };
}

function newBookingForm(ctx) {
  const err = h("p", { class: "form-error", role: "alert" });
  const therapist = select({ name: "therapist_id", id: "nb-therapist" }, [], "");
  const driver = select({ name: "driver_id", id: "nb-driver" }, [], "");
  const date = h("input", { type: "date", name: "date", required: true });
  const input = (name, label, attrs = {}) => field(label, h("input", { name, type: "text", autocomplete: "off", ...attrs }));
  const el = h(
    "form",
    { id: "new-booking", class: "panel form", "aria-labelledby": "new-booking-title" },
    h("h2", { id: "new-booking-title" }, "New booking"),
    input("client_name", "Client name", { required: true, maxlength: 200 }),
    input("client_phone", "Phone", { type: "tel", maxlength: 200 }),
    input("address", "Address", { maxlength: 200 }),
    input("service", "Service", { required: true, maxlength: 200, placeholder: "e.g. Deep tissue massage" }),
    field("Date", date),
    h(
      "div",
      { class: "field-row" },
      field("Start", h("input", { type: "time", name: "start", required: true })),
      field("End", h("input", { type: "time", name: "end", required: true })),
    ),
    field("Therapist", therapist),
    field("Driver", driver),
    field("Notes", h("textarea", { name: "notes", rows: 3, maxlength: 2000 })),
    err,
    h("div", { class: "form-buttons" }, h("button", { type: "submit", class: "btn btn-primary" }, "Create booking")),
  );
  el.addEventListener("submit", (e) => {
    e.preventDefault();
    const f = el.elements;
    const v = (n) => f[n].value;
    setText(err, "");
    // HTML `required` keeps empty fields out; every other judgement is the backend's.
    const booking = {
      id: crypto.randomUUID(),
      client_name: v("client_name").trim(),
      client_phone: v("client_phone").trim(),
      address: v("address").trim(),
      service: v("service").trim(),
      date: v("date"),
      start: wireTime(v("start")),
      end: wireTime(v("end")),
      therapist_id: v("therapist_id") || null,
      driver_id: v("driver_id") || null,
      notes: v("notes"),
    };
    ctx.submit({ op: "create_booking", booking }, { quiet: true }).then(
      () => {
        const day = v("date");
        el.reset();
        f.date.value = day;
        f.client_name.focus();
      },
      (refused) => setText(err, refused.message),
    );
  });
  return {
    el,
    /** Fills the pickers from the view, and the date with the clinic's today until set. */
    refresh(d) {
      fillSelect(therapist, personOptions(d.therapists, "— Unassigned —"));
      fillSelect(driver, personOptions(d.drivers, "— No driver —"));
      if (!date.value) date.value = d.today;
    },
  };
}
