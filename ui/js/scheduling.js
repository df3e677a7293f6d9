// Scheduling dashboard: the week the backend sends (Mon–Sun), a lane per person with their
// availability slots and bookings; add, edit and delete availability where the lane or slot
// is manageable. Week navigation asks the backend for another week.

import { startDashboard } from "./shell.js";
import { h, field, select, fillSelect, setText, syncList } from "./dom.js";
import { addDays, dayLabel, hm, timeRange, weekLabel } from "./format.js";
import { newSlot, saveSlot } from "./slots.js";
import { cellItems, personOptions, rowSig } from "./rows.js";

startDashboard({ spec: { dashboard: "scheduling" }, build });

function build(ctx) {
  const { view, words, main } = ctx;
  let selected = null; // { id, values, error }: the slot being edited
  let last = null;

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
  const side = h("aside", { class: "col-side", hidden: true }, editBox, newForm.el);

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
    syncList(lanes, d.lanes, {
      key: (l) => l.id,
      sig: (l) => rowSig(l, d.days, today, selected && selected.id),
      build: (l) => lane(l, d.days, today),
      empty: () => h("div", { class: "empty" }, "No therapists yet."),
    });
    renderEditor(d);
    const options = personOptions(d.lanes.filter((l) => l.manageable));
    newForm.refresh(options, today);
    side.hidden = options.length === 0 && !selected;
  }

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
    return h(
      "div",
      {
        class: ["grid-booking", r.pending && "is-pending"],
        dataset: { bookingId: b.id, status: b.status, pending: r.pending ? "true" : "false" },
        title: `${timeRange(b.start, b.end)} · ${b.client_name} · ${b.service} · ${words.status(b.status)}`,
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
  };
}
