// Operator dashboard: today's figures, every booking (newest first) with the actions the
// user's roles allow in its status, a new-booking form, assign and reschedule editors.

import { startDashboard } from "./shell.js";
import { h, field, select, fillSelect, setText, syncList } from "./dom.js";
import { todayISO, wireTime, hm, minutes } from "./format.js";
import { actionsFor, canEdit, canCreateBooking } from "./rules.js";
import { bookingCard, cardSig } from "./bookings.js";
import { staffOptions } from "./staff.js";

const CONFIRMED_TODAY = ["confirmed", "pickup_confirmed", "en_route", "arrived", "in_session", "completed"];

const FILTERS = [
  { value: "all", label: "All bookings", test: () => true },
  { value: "attention", label: "Needs attention", test: (b) => b.status === "requested" || b.status === "declined" || (b.status === "completed" && b.payment === "unpaid") },
  { value: "today", label: "Today", test: (b) => b.date === todayISO() },
  { value: "active", label: "Open (not finished)", test: (b) => b.status !== "completed" && b.status !== "cancelled" },
];

startDashboard({ kind: "operator", build });

function build(ctx) {
  const { store, user, main } = ctx;
  // Per-booking editor state: id -> { mode: "assign" | "reschedule", values }
  const editing = new Map();
  let filter = "all";

  const figure = (id, label, hint) =>
    h("div", { class: "figure" }, h("span", { class: "figure-value", id }, "–"), h("span", { class: "figure-label" }, label), h("span", { class: "figure-hint" }, hint));
  const figures = h(
    "section",
    { class: "figures", "aria-label": "Today" },
    figure("count-pending", "Pending requests", "requested or declined"),
    figure("count-confirmed-today", "Confirmed today", "confirmed through completed"),
    figure("count-total", "Total bookings", "not cancelled"),
  );

  const list = h("ul", { class: "booking-list", id: "bookings", "aria-label": "Bookings" }, h("li", { class: "placeholder" }, "Loading bookings…"));
  const filterSelect = select(
    { "aria-label": "Show", class: "compact", onChange: (e) => { filter = e.target.value; render(); } },
    FILTERS.map(({ value, label }) => ({ value, label })),
    filter,
  );
  const shownCount = h("span", { class: "muted tabular" }, "");

  const form = newBookingForm(ctx);

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
        ),
      ),
      canCreateBooking(user) ? h("aside", { class: "col-side" }, form.el) : null,
    ),
  );

  function render() {
    const all = store.bookings();
    const today = todayISO();
    let pending = 0;
    let confirmedToday = 0;
    let total = 0;
    for (const { record: b } of all) {
      if (b.status === "requested" || b.status === "declined") pending += 1;
      if (b.date === today && CONFIRMED_TODAY.includes(b.status)) confirmedToday += 1;
      if (b.status !== "cancelled") total += 1;
    }
    setText(document.getElementById("count-pending"), pending);
    setText(document.getElementById("count-confirmed-today"), confirmedToday);
    setText(document.getElementById("count-total"), total);

    const test = FILTERS.find((f) => f.value === filter)?.test || (() => true);
    const shown = all
      .filter((e) => test(e.record))
      .sort((a, b) => b.record.created_at.localeCompare(a.record.created_at) || b.record.id.localeCompare(a.record.id));
    setText(shownCount, `${shown.length} shown`);
    for (const id of editing.keys()) if (!store.get("booking", id)) editing.delete(id);

    syncList(list, shown, {
      key: (e) => e.record.id,
      sig: (e) => cardSig(ctx, e, JSON.stringify(editing.get(e.record.id) || null) + (e.record.date === today)),
      build: (e) => card(e),
      empty: () => h("li", { class: "empty" }, filter === "all" ? "No bookings yet." : "No bookings match this filter."),
    });
    form.refresh();
  }

  function card(entry) {
    const b = entry.record;
    const editable = canEdit(user, b);
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
            else editing.set(b.id, { mode, values: initialValues(mode, b) });
            render();
            const row = list.querySelector(`[data-booking-id="${b.id}"]`);
            const first = row && row.querySelector(".editor select, .editor input");
            if (first) first.focus();
          },
        },
        text,
      );
    const tools = editable ? [toggle("assign", "Assign"), toggle("reschedule", "Reschedule")] : null;
    let extra = null;
    if (editable && state) extra = state.mode === "assign" ? assignEditor(b, state) : rescheduleEditor(b, state);
    return bookingCard(ctx, entry, { actions: actionsFor("operator", user, b), tools, extra });
  }

  function initialValues(mode, b) {
    return mode === "assign"
      ? { therapist_id: b.therapist_id || "", driver_id: b.driver_id || "" }
      : { date: b.date, start: hm(b.start), end: hm(b.end) };
  }

  function close(id) {
    editing.delete(id);
    render();
  }

  function assignEditor(b, state) {
    const v = state.values;
    const onChange = (e) => { v[e.target.name] = e.target.value; };
    const therapist = select({ name: "therapist_id", onChange }, staffOptions(store, "therapist", "— Unassigned —"), v.therapist_id);
    const driver = select({ name: "driver_id", onChange }, staffOptions(store, "driver", "— No driver —"), v.driver_id);
    return h(
      "form",
      {
        class: "editor",
        "aria-label": "Assign therapist and driver",
        onSubmit: (e) => {
          e.preventDefault();
          ctx.submit({ op: "assign_booking", id: b.id, version: b.version, therapist_id: v.therapist_id || null, driver_id: v.driver_id || null }).catch(() => {});
          close(b.id);
        },
      },
      field("Therapist", therapist),
      field("Driver", driver),
      h("div", { class: "editor-buttons" }, h("button", { type: "submit", class: "btn btn-primary" }, "Save assignment"), h("button", { type: "button", class: "btn btn-quiet", onClick: () => close(b.id) }, "Close")),
    );
  }

  function rescheduleEditor(b, state) {
    const v = state.values;
    const onInput = (e) => { v[e.target.name] = e.target.value; };
    const err = h("p", { class: "form-error", role: "alert" });
    return h(
      "form",
      {
        class: "editor",
        "aria-label": "Reschedule",
        onSubmit: (e) => {
          e.preventDefault();
          if (!v.date || !v.start || !v.end) return setText(err, "Date, start and end are required.");
          if (minutes(v.end) <= minutes(v.start)) return setText(err, "The end must be after the start.");
          ctx.submit({ op: "reschedule_booking", id: b.id, version: b.version, date: v.date, start: wireTime(v.start), end: wireTime(v.end) }).catch(() => {});
          close(b.id);
        },
      },
      field("Date", h("input", { type: "date", name: "date", value: v.date, required: true, onInput })),
      field("Start", h("input", { type: "time", name: "start", value: v.start, required: true, onInput })),
      field("End", h("input", { type: "time", name: "end", value: v.end, required: true, onInput })),
      h("div", { class: "editor-buttons" }, h("button", { type: "submit", class: "btn btn-primary" }, "Move booking"), h("button", { type: "button", class: "btn btn-quiet", onClick: () => close(b.id) }, "Close")),
      err,
      h("p", { class: "hint" }, "A new time goes back to the therapist to confirm."),
    );
  }

  return { render };
}

function newBookingForm(ctx) {
  const { store } = ctx;
  const err = h("p", { class: "form-error", role: "alert" });
  const therapist = select({ name: "therapist_id", id: "nb-therapist" }, [], "");
  const driver = select({ name: "driver_id", id: "nb-driver" }, [], "");
  const input = (name, label, attrs = {}) => field(label, h("input", { name, type: "text", autocomplete: "off", ...attrs }));
  const el = h(
    "form",
    { id: "new-booking", class: "panel form", "aria-labelledby": "new-booking-title" },
    h("h2", { id: "new-booking-title" }, "New booking"),
    input("client_name", "Client name", { required: true, maxlength: 200 }),
    input("client_phone", "Phone", { type: "tel", maxlength: 200 }),
    input("address", "Address", { maxlength: 200 }),
    input("service", "Service", { required: true, maxlength: 200, placeholder: "e.g. Deep tissue massage" }),
    field("Date", h("input", { type: "date", name: "date", required: true, value: todayISO() })),
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
    if (!v("client_name").trim() || !v("service").trim()) return setText(err, "Client name and service are required.");
    if (!v("date") || !v("start") || !v("end")) return setText(err, "Date, start and end are required.");
    if (minutes(v("end")) <= minutes(v("start"))) return setText(err, "The end must be after the start.");
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
    ctx.submit({ op: "create_booking", booking }).then(
      () => {
        const date = v("date");
        el.reset();
        f.date.value = date;
        f.client_name.focus();
      },
      () => {},
    );
  });
  // Enter in a text field submits (textarea keeps newlines).
  return {
    el,
    refresh() {
      fillSelect(therapist, staffOptions(store, "therapist", "— Unassigned —"));
      fillSelect(driver, staffOptions(store, "driver", "— No driver —"));
    },
  };
}
