// Scheduling dashboard: the week the backend sends (Mon–Sun): first a lane of the bookings
// nobody is assigned to yet (the web intake's), then a lane per person with their
// availability slots and bookings; add, edit and delete availability where the lane or slot
// is manageable; create bookings, and assign and reschedule the editable ones (click a
// booking), with the shared forms of forms.js. Week navigation asks for another week.

import { startDashboard } from "./shell.js";
import { h, field, select, fillSelect, setText, syncList } from "./dom.js";
import { addDays, dayLabel, hm, timeRange, weekLabel } from "./format.js";
import { newSlot, saveSlot } from "./slots.js";
import { cellItems, personOptions, rowSig } from "./rows.js";
import { bookingEditor, editorValues, freeTracker, newBookingForm, reopenValues } from "./forms.js";

/** The key of the lane of unassigned bookings (no staff id looks like it). */
const UNASSIGNED = "unassigned";

startDashboard({ spec: { dashboard: "scheduling" }, build });

function build(ctx) {
  const { view, words, main } = ctx;
  let selected = null; // { id, values, error }: the slot being edited
  let picked = null; // { id, mode, values, error }: the booking being assigned or moved
  let last = null;
  const tracker = freeTracker(view);

  const go = (days) => last && view.show({ dashboard: "scheduling", week: addDays(last.data.week, days) });
  const weekText = h("span", { class: "week-label tabular" }, "");
  const toolbar = h(
    "div",
    { class: "toolbar" },
    h("button", { type: "button", class: "btn btn-quiet", "aria-label": "Previous week", onClick: () => go(-7) }, "‹ Previous"),
    h("button", { type: "button", class: "btn btn-quiet", onClick: () => view.show({ dashboard: "scheduling" }) }, "This week"),
    h("button", { type: "button", class: "btn btn-quiet", "aria-label": "Next week", onClick: () => go(7) }, "Next ›"),
    weekText,
  );
  const head = h("div", { class: "grid-head", role: "row" });
  const lanes = h("div", { class: "grid-body" }, h("div", { class: "placeholder" }, "Loading the week…"));
  const grid = h("div", { class: "week-grid", role: "grid", "aria-label": "Availability and bookings this week" }, head, lanes);

  const newForm = newSlotForm(ctx);
  const editBox = h("div", { class: "edit-slot-box" });
  const bookingBox = h("div", { class: "edit-booking-box" });
  const bookingForm = newBookingForm(ctx, tracker);
  const side = h("aside", { class: "col-side", hidden: true }, bookingBox, editBox, bookingForm.el, newForm.el);

  main.append(h("div", { class: "layout-scheduling" }, h("section", { class: "panel grid-panel" }, toolbar, h("div", { class: "grid-scroll" }, grid), legend(words)), side));

  const repaint = () => last && render(last);

  /** The slot row being edited, if it is still in the week and still manageable. */
  function selectedRow(d) {
    if (!selected) return null;
    for (const lane of d.lanes) for (const r of lane.slots) if (r.record.id === selected.id && r.manageable) return r;
    return null;
  }

  function render(info) {
    last = info;
    const d = info.data;
    const today = d.today;
    setText(weekText, weekLabel(d.days));

    syncList(head, ["", ...d.days], {
      key: (day) => `h:${day}`,
      sig: (day) => `${day}|${day === today}`,
      build: (day) => (day ? h("div", { class: ["grid-day", day === today && "is-today"], role: "columnheader" }, dayLabel(day)) : h("div", { class: "grid-corner" }, "Therapist")),
    });

    if (selected && !selectedRow(d)) selected = null;
    if (picked && !pickedRow(d)) picked = null;
    // The unassigned bookings lead, as a lane of their own (its key is no staff id).
    const unassigned = { id: UNASSIGNED, name: "Unassigned", manageable: false, slots: [], bookings: d.unassigned || [] };
    syncList(lanes, [unassigned, ...d.lanes], {
      key: (l) => l.id,
      sig: (l) => rowSig(l, d.days, today, selected && selected.id, picked && picked.id),
      build: (l) => lane(l, d.days, today),
    });
    renderEditor(d);
    renderBookingEditor(d);
    const options = personOptions(d.lanes.filter((l) => l.manageable));
    newForm.refresh(options, today);
    bookingForm.el.hidden = !d.mayCreate;
    bookingForm.refresh(d);
    tracker.render(d);
    side.hidden = options.length === 0 && !selected && !picked && !d.mayCreate;
  }

  /** The booking row being edited, if it is still in the week and still editable. */
  function pickedRow(d) {
    if (!picked) return null;
    const all = [...(d.unassigned || []), ...d.lanes.flatMap((l) => l.bookings)];
    return all.find((r) => r.record.id === picked.id && r.editable) || null;
  }

  function pick(r, mode = "assign", values = null) {
    picked = { id: r.record.id, mode, values: values || editorValues(mode, r.record), error: "" };
    repaint();
    bookingBox.scrollIntoView({ block: "nearest" });
    const first = bookingBox.querySelector(".editor select, .editor input");
    if (first) first.focus();
  }

  function closePicked() {
    picked = null;
    repaint();
  }

  /** The assign / reschedule editor of the picked booking, rebuilt only when it or its message changes. */
  function renderBookingEditor(d) {
    const row = pickedRow(d);
    const sig = row ? JSON.stringify([row, picked.mode, picked.error]) : "";
    if (bookingBox.__sig === sig) return;
    bookingBox.__sig = sig;
    if (!row) {
      bookingBox.replaceChildren();
      return;
    }
    const b = row.record;
    const state = picked;
    const tab = (mode, text) =>
      h(
        "button",
        {
          type: "button",
          class: ["btn", "btn-quiet", state.mode === mode && "is-on"],
          dataset: { edit: mode },
          "aria-pressed": state.mode === mode ? "true" : "false",
          onClick: () => {
            if (state.mode !== mode) pick(row, mode);
          },
        },
        text,
      );
    bookingBox.replaceChildren(
      h(
        "section",
        { id: "edit-booking", class: "panel form", "aria-labelledby": "edit-booking-title", dataset: { bookingId: b.id } },
        h("h2", { id: "edit-booking-title" }, b.client_name),
        h("p", { class: "muted" }, `${dayLabel(b.date)} · ${timeRange(b.start, b.end)} · ${b.service} · ${words.status(b.status)}`, row.pending ? " · saving…" : ""),
        h("p", { class: "muted" }, `Therapist: ${row.therapistName || "Unassigned"} · Driver: ${row.driverName || "No driver"}`),
        h("div", { class: "editor-tabs" }, tab("assign", "Assign"), tab("reschedule", "Reschedule")),
        bookingEditor(ctx, tracker, b, state, { onClose: closePicked, repaint, people: d }),
      ),
    );
  }

  // A refused change of this window's comes back filled in, one click from sending again.
  ctx.onReopen("new_booking", (mutation) => {
    if (!last || !last.data.mayCreate) return false;
    bookingForm.fill(reopenValues(mutation).values);
    return true;
  });
  // A booking or slot not in the week shown: go to its week (the refusal says which day it
  // is on now) and say so; the toast stays for a second click once that week is shown.
  const elsewhere = (r, what) => {
    if (!last) return "This window is still loading: try again in a moment.";
    if (r && r.on && !last.data.days.includes(r.on)) {
      view.show({ dashboard: "scheduling", week: r.on });
      return `The ${what} is on ${r.on}, not in the week that was shown: its week is shown now. Press Reopen again.`;
    }
    return `The ${what} is not shown here any more, or can no longer be changed.`;
  };
  for (const mode of ["assign", "reschedule"]) {
    ctx.onReopen(mode, (mutation, r) => {
      const { id, values } = reopenValues(mutation);
      if (!last) return elsewhere(r, "booking");
      picked = { id, mode, values, error: "" };
      if (!pickedRow(last.data)) {
        picked = null;
        return elsewhere(r, "booking");
      }
      repaint();
      return true;
    });
  }
  ctx.onReopen("new_slot", (mutation) => {
    const { values } = reopenValues(mutation);
    return newForm.fill(values);
  });
  ctx.onReopen("edit_slot", (mutation, r) => {
    const { id, values } = reopenValues(mutation);
    if (!last) return elsewhere(r, "availability slot");
    selected = { id, values, error: "" };
    if (!selectedRow(last.data)) {
      selected = null;
      return elsewhere(r, "availability slot");
    }
    repaint();
    return true;
  });

  function lane(l, days, today) {
    return h(
      "div",
      { class: "lane", role: "row", dataset: { staffId: l.id } },
      h("div", { class: "lane-name", role: "rowheader" }, l.name),
      days.map((day) =>
        h(
          "div",
          { class: ["cell", day === today && "is-today"], role: "gridcell" },
          cellItems(l, day).map((it) => (it.kind === "slot" ? slotBlock(it.row) : bookingBlock(it.row))),
          l.manageable
            ? h(
                "button",
                {
                  type: "button",
                  class: "cell-add",
                  title: `Add availability for ${l.name} on ${dayLabel(day)}`,
                  "aria-label": `Add availability for ${l.name} on ${dayLabel(day)}`,
                  onClick: () => newForm.prefill(l.id, day),
                },
                "+",
              )
            : null,
        ),
      ),
    );
  }

  function slotBlock(r) {
    const s = r.record;
    return h(
      "button",
      {
        type: "button",
        class: ["slot-block", r.pending && "is-pending", selected && selected.id === s.id && "is-selected"],
        dataset: { slotId: s.id, pending: r.pending ? "true" : "false" },
        disabled: !r.manageable,
        title: s.note ? `${timeRange(s.start, s.end)} · ${s.note}` : `Available ${timeRange(s.start, s.end)}`,
        onClick: () => {
          selected = { id: s.id, values: { date: s.date, start: hm(s.start), end: hm(s.end), note: s.note || "" }, error: "" };
          repaint();
          const first = editBox.querySelector("input");
          if (first) first.focus();
        },
      },
      h("span", { class: "block-time" }, timeRange(s.start, s.end)),
      s.note ? h("span", { class: "block-note" }, s.note) : null,
    );
  }

  function bookingBlock(r) {
    const b = r.record;
    // An editable booking is a button that opens its editor; the others are only shown.
    return h(
      r.editable ? "button" : "div",
      {
        type: r.editable ? "button" : null,
        class: ["grid-booking", r.pending && "is-pending", picked && picked.id === b.id && "is-selected"],
        dataset: { bookingId: b.id, status: b.status, pending: r.pending ? "true" : "false" },
        title: `${timeRange(b.start, b.end)} · ${b.client_name} · ${b.service} · ${words.status(b.status)}`,
        onClick: r.editable ? () => pick(r) : null,
      },
      h("span", { class: "block-time" }, timeRange(b.start, b.end)),
      h("span", { class: "booking-client" }, b.client_name),
    );
  }

  function close() {
    selected = null;
    repaint();
  }

  function renderEditor(d) {
    const row = selectedRow(d);
    // Rebuilt when the slot or the message changes, not while the user types.
    const sig = row ? JSON.stringify([row, selected.error]) : "";
    if (editBox.__sig === sig) return;
    editBox.__sig = sig;
    if (!row) {
      editBox.replaceChildren();
      return;
    }
    const s = row.record;
    const state = selected;
    const v = state.values;
    const onInput = (ev) => {
      v[ev.target.name] = ev.target.value;
    };
    const del = h("button", { type: "button", class: "btn btn-danger", dataset: { slotAction: "delete" } }, "Delete slot");
    ctx.act(del, () => {
      setTimeout(close, 0);
      return { op: "delete_slot", id: s.id, version: s.version };
    });
    editBox.replaceChildren(
      h(
        "form",
        {
          id: "edit-slot",
          class: "panel form",
          "aria-labelledby": "edit-slot-title",
          onSubmit: (ev) => {
            ev.preventDefault();
            saveSlot(ctx, s, v).then(close, (err) => {
              state.error = err.message;
              repaint();
            });
          },
        },
        h("h2", { id: "edit-slot-title" }, "Edit availability"),
        h("p", { class: "muted" }, row.staffName, row.pending ? " · saving…" : ""),
        field("Date", h("input", { type: "date", name: "date", value: v.date, required: true, onInput })),
        h(
          "div",
          { class: "field-row" },
          field("Start", h("input", { type: "time", name: "start", value: v.start, required: true, onInput })),
          field("End", h("input", { type: "time", name: "end", value: v.end, required: true, onInput })),
        ),
        field("Note", h("input", { type: "text", name: "note", value: v.note, maxlength: 2000, onInput })),
        h("p", { class: "form-error", role: "alert" }, state.error || ""),
        h("div", { class: "form-buttons" }, h("button", { type: "submit", class: "btn btn-primary" }, "Save"), del, h("button", { type: "button", class: "btn btn-quiet", onClick: close }, "Close")),
      ),
    );
  }

  return { render };
}

/** The colours of the grid, with the backend's status labels; the swatches are CSS's. */
function legend(words) {
  return h(
    "div",
    { class: "legend", "aria-hidden": "true" },
    h("span", { class: "legend-item" }, h("span", { class: "swatch swatch-slot" }), "Available"),
    words.statuses.map((s) => h("span", { class: "legend-item", dataset: { status: s } }, h("span", { class: "swatch", dataset: { status: s } }), words.status(s))),
  );
}

function newSlotForm(ctx) {
  const err = h("p", { class: "form-error", role: "alert" });
  const staff = select({ name: "staff_id", required: true }, [], "");
  const date = h("input", { type: "date", name: "date", required: true });
  let options = [];
  const el = h(
    "form",
    { id: "new-slot", class: "panel form", "aria-labelledby": "new-slot-title" },
    h("h2", { id: "new-slot-title" }, "Add availability"),
    field("Therapist", staff),
    field("Date", date),
    h(
      "div",
      { class: "field-row" },
      field("Start", h("input", { type: "time", name: "start", required: true })),
      field("End", h("input", { type: "time", name: "end", required: true })),
    ),
    field("Note", h("input", { type: "text", name: "note", maxlength: 2000, placeholder: "optional" })),
    err,
    h("div", { class: "form-buttons" }, h("button", { type: "submit", class: "btn btn-primary" }, "Add slot")),
  );
  el.addEventListener("submit", (e) => {
    e.preventDefault();
    const f = el.elements;
    setText(err, "");
    const v = { date: f.date.value, start: f.start.value, end: f.end.value, note: f.note.value };
    ctx.submit(newSlot(f.staff_id.value, v), { quiet: true }).then(
      () => {
        f.start.value = "";
        f.end.value = "";
        f.note.value = "";
        f.start.focus();
      },
      (refused) => setText(err, refused.message),
    );
  });
  return {
    el,
    /** Whom the user may add availability for (the manageable lanes), and the clinic's today. */
    refresh(opts, today) {
      options = opts;
      fillSelect(staff, options);
      el.hidden = options.length === 0;
      if (!date.value) date.value = today;
    },
    prefill(staffId, day) {
      fillSelect(staff, options, staffId);
      date.value = day;
      el.elements.start.focus();
    },
    /** Puts a refused slot's values back; false if the user may not add for that person here. */
    fill(v) {
      if (!options.some((o) => o.value === v.staff_id)) return false;
      fillSelect(staff, options, v.staff_id);
      const f = el.elements;
      f.date.value = v.date;
      f.start.value = v.start;
      f.end.value = v.end;
      f.note.value = v.note || "";
      setText(err, "");
      el.scrollIntoView({ block: "nearest" });
      f.start.focus();
      return true;
    },
  };
}
