// The booking forms the operator and scheduling dashboards share: the new-booking form and
// the assign and reschedule editors. Each shows who is free at its time: the backend works
// that out (clinic_protocol::free, in Rust) as part of the window's view, which the form asks
// for by adding its time to the view's spec (`free`), so the list stays live like the rest
// of the view. Choosing someone who is not free asks for a second click before the change
// goes: a warning, not a refusal (the server's rules decide what is refused).
//
// The pure helpers come first (no DOM: node tests them in ui/test/forms.test.js).

import { h, field, select, fillSelect, setText } from "./dom.js";
import { hm, wireTime } from "./format.js";
import { personOptions } from "./rows.js";

// ---------------------------------------------------------------------------------------
// Pure helpers

const DATE = /^\d{4}-\d{2}-\d{2}$/;
const TIME = /^\d{2}:\d{2}:\d{2}$/;

/**
 * The view's `free` query for a form's values ({ date, start, end } as the inputs hold
 * them) and the booking it edits; null while the time is incomplete or ends before it starts.
 */
export function freeQuery(values, booking = null) {
  if (!values) return null;
  const start = wireTime(values.start);
  const end = wireTime(values.end);
  if (!DATE.test(String(values.date || "")) || !TIME.test(start) || !TIME.test(end) || end <= start) return null;
  return { date: values.date, start, end, booking: booking || null };
}

/** Whether two queries ask about the same time for the same booking. */
export function sameQuery(a, b) {
  if (!a || !b) return !a && !b;
  return a.date === b.date && wireTime(a.start) === wireTime(b.start) && wireTime(a.end) === wireTime(b.end) && (a.booking || null) === (b.booking || null);
}

/** The person `id` in the backend's FreeBusy answer, or null. */
export function standingOf(free, id) {
  if (!free || !id) return null;
  return [...(free.therapists || []), ...(free.drivers || [])].find((p) => p.id === id) || null;
}

/**
 * What deserves a warning before sending a choice ({ therapist_id, driver_id }), in the
 * backend's words: "Dr. Elena Reyes: Busy 10:00–11:00 (Ana Lopez, confirmed)".
 */
export function warnings(free, choice) {
  const out = [];
  if (!free) return out;
  const pick = (list, id) => (id ? (list || []).find((p) => p.id === id) : null);
  for (const p of [pick(free.therapists, choice.therapist_id), pick(free.drivers, choice.driver_id)]) {
    if (p && p.warns) out.push(`${p.name}: ${p.words}`);
  }
  return out;
}

/**
 * Picker options with each person's standing at the form's time, when the answer is for
 * it: "Dr. Elena Reyes · Free".
 */
export function annotatedOptions(people, list, none) {
  const by = new Map((list || []).map((p) => [p.id, p]));
  return personOptions(
    (people || []).map((p) => (by.has(p.id) ? { id: p.id, name: `${p.name} · ${by.get(p.id).words}` } : p)),
    none,
  );
}

/**
 * The values to fill a refused change's form with, from the change itself (the
 * RejectionPayload's `mutation`): { id, values }. Which form that is, the backend says
 * (the payload's `reopen`).
 */
export function reopenValues(mutation) {
  if (!mutation) return null;
  switch (mutation.op) {
    case "create_booking": {
      const b = mutation.booking;
      return {
        id: b.id,
        values: {
          client_name: b.client_name || "",
          client_phone: b.client_phone || "",
          address: b.address || "",
          service: b.service || "",
          date: b.date,
          start: hm(b.start),
          end: hm(b.end),
          therapist_id: b.therapist_id || "",
          driver_id: b.driver_id || "",
          notes: b.notes || "",
        },
      };
    }
    case "assign_booking":
      return { id: mutation.id, values: { therapist_id: mutation.therapist_id || "", driver_id: mutation.driver_id || "" } };
    case "reschedule_booking":
      return { id: mutation.id, values: { date: mutation.date, start: hm(mutation.start), end: hm(mutation.end) } };
    case "create_slot": {
      const s = mutation.slot;
      return { id: s.id, values: { staff_id: s.staff_id, date: s.date, start: hm(s.start), end: hm(s.end), note: s.note || "" } };
    }
    case "update_slot":
      return { id: mutation.id, values: { date: mutation.date, start: hm(mutation.start), end: hm(mutation.end), note: mutation.note || "" } };
    default:
      return null;
  }
}

/** An editor's starting values for booking `b` in `mode` ("assign" | "reschedule"). */
export function editorValues(mode, b) {
  return mode === "assign" ? { therapist_id: b.therapist_id || "", driver_id: b.driver_id || "" } : { date: b.date, start: hm(b.start), end: hm(b.end) };
}

// ---------------------------------------------------------------------------------------
// Who is free, live

/** How long typing settles before the view is asked for another time. */
const SETTLE_MS = 150;

/**
 * The window's one free/busy question: the form the user works in last says its time; the
 * view is shown again with it (`spec.free`), and every form's panel paints the answer when
 * it is for its own time. Call `render(data)` from the dashboard's render.
 */
export function freeTracker(view) {
  let active = null; // { id, query, panel }
  let timer = null;
  let last = null; // the last answer heard (data.free)
  const panels = new Set();

  function wanted() {
    return active && active.panel.el.isConnected ? active.query : null;
  }

  function apply() {
    timer = null;
    const spec = view.spec || {};
    const want = wanted();
    if (sameQuery(want, spec.free || null)) return;
    const next = { ...spec };
    if (want) next.free = want;
    else delete next.free;
    view.show(next);
  }

  function schedule() {
    if (!timer) timer = setTimeout(apply, SETTLE_MS);
  }

  return {
    /** Form `id` (with its `panel`) now asks about `query` (null: nothing to ask yet). */
    want(id, query, panel) {
      panels.add(panel);
      if (query) active = { id, query, panel };
      else if (active && active.id === id) active = null;
      panel.paint(last);
      schedule();
    },
    /** Form `id` closed. */
    release(id) {
      if (active && active.id === id) {
        active = null;
        schedule();
      }
    },
    /** The view's data arrived: every open form's panel paints its answer. */
    render(data) {
      last = (data && data.free) || null;
      for (const p of panels) {
        if (p.el.isConnected) p.paint(last);
        else panels.delete(p);
      }
      // Another spec was shown meanwhile (a filter, a week) without the form's time.
      if (!sameQuery(wanted(), (view.spec && view.spec.free) || null)) schedule();
    },
  };
}

/**
 * A form's "Who is free" list. `query()` is the form's time now; `onPaint(free)` lets the
 * form annotate its pickers. The list holds the answer only when it is for that time.
 */
function freePanel(query, onPaint) {
  const el = h("div", { class: "free-list", dataset: { state: "idle" }, "aria-live": "polite" });
  let free = null;
  let sig = null;
  const panel = {
    el,
    get free() {
      return free;
    },
    paint(answer) {
      const q = query();
      free = answer && q && sameQuery(answer.query, q) ? answer : null;
      const next = q ? JSON.stringify(free) : "";
      if (next !== sig) {
        sig = next;
        draw(q);
      }
      if (onPaint) onPaint(free);
    },
  };
  function draw(q) {
    el.dataset.state = !q ? "idle" : free ? "ready" : "loading";
    if (!q) {
      el.replaceChildren(h("p", { class: "hint" }, "Choose a date and times to see who is free."));
      return;
    }
    if (!free) {
      el.replaceChildren(h("p", { class: "hint" }, "Checking who is free…"));
      return;
    }
    const group = (title, people) =>
      people.length
        ? h(
            "div",
            { class: "free-group" },
            h("h4", null, title),
            h(
              "ul",
              null,
              people.map((p) =>
                h(
                  "li",
                  { class: ["free-person", p.warns && "is-warning"], dataset: { personId: p.id, state: p.standing.state, role: p.role } },
                  h("span", { class: "free-name" }, p.name),
                  h("span", { class: "free-words" }, p.words),
                ),
              ),
            ),
          )
        : null;
    el.replaceChildren(h("h3", { class: "free-title" }, "Who is free"), group("Therapists", free.therapists || []), group("Drivers", free.drivers || []));
  }
  return panel;
}

/**
 * The confirm step: the first submit with a warning shows it and relabels the button; the
 * second sends. Any edit asks again.
 */
function confirmStep(button, text, anywayText) {
  const box = h("div", { class: "form-warning", role: "alert", hidden: true });
  let armed = false;
  return {
    box,
    /** Whether to send now, given the warnings for what is chosen. */
    ready(lines) {
      if (!lines.length || armed) return true;
      armed = true;
      box.replaceChildren(...lines.map((l) => h("p", null, l)), h("p", { class: "hint" }, `Press “${anywayText}” to send it anyway; the server still checks it.`));
      box.hidden = false;
      setText(button, anywayText);
      button.dataset.confirm = "true";
      return false;
    },
    reset() {
      if (!armed && box.hidden) return;
      armed = false;
      box.hidden = true;
      box.replaceChildren();
      setText(button, text);
      delete button.dataset.confirm;
    },
  };
}

// ---------------------------------------------------------------------------------------
// The new-booking form

let formNumber = 0;

/**
 * The new-booking form. refresh(data) fills the pickers from the view (therapists,
 * drivers, the clinic's today); fill(values) puts a refused booking's values back.
 */
export function newBookingForm(ctx, tracker) {
  const formId = `new-booking-${++formNumber}`;
  const err = h("p", { class: "form-error", role: "alert" });
  const therapist = select({ name: "therapist_id", id: "nb-therapist" }, [], "");
  const driver = select({ name: "driver_id", id: "nb-driver" }, [], "");
  const date = h("input", { type: "date", name: "date", required: true });
  const submitButton = h("button", { type: "submit", class: "btn btn-primary" }, "Create booking");
  const confirm = confirmStep(submitButton, "Create booking", "Create anyway");
  let people = { therapists: [], drivers: [] };
  const input = (name, label, attrs = {}) => field(label, h("input", { name, type: "text", autocomplete: "off", ...attrs }));
  const values = () => {
    const f = el.elements;
    return { date: f.date.value, start: f.start.value, end: f.end.value };
  };
  const panel = freePanel(
    () => freeQuery(values()),
    (free) => {
      fillSelect(therapist, annotatedOptions(people.therapists, free && free.therapists, "— Unassigned —"));
      fillSelect(driver, annotatedOptions(people.drivers, free && free.drivers, "— No driver —"));
    },
  );
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
    panel.el,
    confirm.box,
    err,
    h("div", { class: "form-buttons" }, submitButton),
  );
  const changed = () => {
    confirm.reset();
    tracker.want(formId, freeQuery(values()), panel);
  };
  el.addEventListener("input", changed);
  el.addEventListener("change", changed);
  el.addEventListener("submit", (e) => {
    e.preventDefault();
    const f = el.elements;
    const v = (n) => f[n].value;
    setText(err, "");
    if (!confirm.ready(warnings(panel.free, { therapist_id: v("therapist_id"), driver_id: v("driver_id") }))) return;
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
        confirm.reset();
        f.date.value = day;
        tracker.want(formId, null, panel);
        f.client_name.focus();
      },
      (refused) => setText(err, refused.message),
    );
  });
  return {
    el,
    /** Fills the pickers from the view, and the date with the clinic's today until set. */
    refresh(d) {
      people = { therapists: d.therapists || [], drivers: d.drivers || [] };
      if (!date.value) date.value = d.today;
      panel.paint(d.free || null);
    },
    /** Puts values back (a refused booking, reopened) and asks who is free then. */
    fill(values) {
      const f = el.elements;
      for (const [name, value] of Object.entries(values)) if (f[name]) f[name].value = value;
      setText(err, "");
      changed();
      el.scrollIntoView({ block: "nearest" });
      f.client_name.focus();
    },
  };
}

// ---------------------------------------------------------------------------------------
// The assign and reschedule editors

/**
 * The editor of booking `b` in `state.mode` ("assign" | "reschedule"). `state` =
 * { mode, values, error } lives with the dashboard, so typing survives a rebuild; a refusal
 * puts the backend's sentence in state.error. `people`: the view's therapists and drivers.
 * opts: { onClose(), repaint(), people }
 */
export function bookingEditor(ctx, tracker, b, state, { onClose, repaint, people }) {
  const formId = `editor-${b.id}`;
  const v = state.values;
  const assign = state.mode === "assign";
  const query = () => freeQuery(assign ? { date: b.date, start: b.start, end: b.end } : v, b.id);
  const text = assign ? "Save assignment" : "Move booking";
  const submitButton = h("button", { type: "submit", class: "btn btn-primary" }, text);
  const confirm = confirmStep(submitButton, text, assign ? "Assign anyway" : "Move anyway");
  let therapist = null;
  let driver = null;
  const panel = freePanel(query, (free) => {
    if (!assign) return;
    fillSelect(therapist, annotatedOptions(people.therapists, free && free.therapists, "— Unassigned —"), v.therapist_id);
    fillSelect(driver, annotatedOptions(people.drivers, free && free.drivers, "— No driver —"), v.driver_id);
  });
  const onInput = (e) => {
    v[e.target.name] = e.target.value;
    confirm.reset();
    tracker.want(formId, query(), panel);
  };
  const close = () => {
    tracker.release(formId);
    onClose();
  };
  const fields = assign
    ? [
        field("Therapist", (therapist = select({ name: "therapist_id", onChange: onInput }, personOptions(people.therapists, "— Unassigned —"), v.therapist_id))),
        field("Driver", (driver = select({ name: "driver_id", onChange: onInput }, personOptions(people.drivers, "— No driver —"), v.driver_id))),
      ]
    : [
        field("Date", h("input", { type: "date", name: "date", value: v.date, required: true, onInput })),
        field("Start", h("input", { type: "time", name: "start", value: v.start, required: true, onInput })),
        field("End", h("input", { type: "time", name: "end", value: v.end, required: true, onInput })),
      ];
  const form = h(
    "form",
    {
      class: "editor",
      dataset: { editor: state.mode },
      "aria-label": assign ? "Assign therapist and driver" : "Reschedule",
      onSubmit: (e) => {
        e.preventDefault();
        const choice = assign ? v : { therapist_id: b.therapist_id, driver_id: b.driver_id };
        if (!confirm.ready(warnings(panel.free, choice))) return;
        const mutation = assign
          ? { op: "assign_booking", id: b.id, version: b.version, therapist_id: v.therapist_id || null, driver_id: v.driver_id || null }
          : { op: "reschedule_booking", id: b.id, version: b.version, date: v.date, start: wireTime(v.start), end: wireTime(v.end) };
        ctx.submit(mutation, { quiet: true }).then(close, (err) => {
          state.error = err.message;
          repaint();
        });
      },
    },
    fields,
    panel.el,
    confirm.box,
    h("div", { class: "editor-buttons" }, submitButton, h("button", { type: "button", class: "btn btn-quiet", onClick: close }, "Close")),
    h("p", { class: "form-error", role: "alert" }, state.error || ""),
    assign ? null : h("p", { class: "hint" }, "A new time goes back to the therapist to confirm."),
  );
  tracker.want(formId, query(), panel);
  return form;
}
