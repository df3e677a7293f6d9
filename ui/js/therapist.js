// Therapist dashboard: my appointments as the backend lists them (upcoming and earlier),
// each with the actions its row carries, and my availability (add; edit and delete where
// the row is manageable).

import { startDashboard } from "./shell.js";
import { h, field, setText, syncList } from "./dom.js";
import { bookingCard, dayHeader } from "./bookings.js";
import { newSlot, slotRow, slotValues } from "./slots.js";
import { itemKey, rowSig, toDoOn, withDayHeaders } from "./rows.js";
import { reopenValues } from "./forms.js";
import { dayLabel } from "./format.js";

startDashboard({ spec: { dashboard: "therapist" }, build });

function build(ctx) {
  const { main } = ctx;
  const editing = new Map(); // slot id -> { values, error }
  let last = null;

  const upcoming = h("ul", { class: "booking-list", "aria-label": "Upcoming appointments" }, h("li", { class: "placeholder" }, "Loading appointments…"));
  const earlier = h("ul", { class: "booking-list", "aria-label": "Earlier appointments" });
  const earlierBox = h("details", { class: "earlier" }, h("summary", null, "Earlier appointments"), earlier);
  const slots = h("ul", { class: "slot-list", "aria-label": "My availability" }, h("li", { class: "placeholder" }, "Loading availability…"));
  const todo = h("span", { class: "muted tabular" }, "");
  const through = h("span", { class: "muted" }, "");
  const addForm = mySlotForm(ctx);

  main.append(
    h(
      "div",
      { class: "layout-two" },
      h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", null, "My appointments"), todo), upcoming, earlierBox),
      h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", null, "My availability"), through), slots, addForm.el),
    ),
  );

  const repaint = () => last && render(last);

  function render(info) {
    last = info;
    const d = info.data;
    const today = d.today;
    const n = toDoOn(d.upcoming, today);
    setText(todo, n === 1 ? "1 to do today" : `${n} to do today`);
    syncList(upcoming, withDayHeaders(d.upcoming, today), listOpts("No upcoming appointments.", today));
    syncList(earlier, withDayHeaders(d.earlier, today), listOpts("No earlier appointments.", today));
    earlierBox.hidden = d.earlier.length === 0;

    const mine = d.slots || [];
    setText(through, d.slotsThrough ? `through ${dayLabel(d.slotsThrough)}` : "");
    const open = new Set(mine.filter((r) => r.manageable).map((r) => r.record.id));
    for (const id of editing.keys()) if (!open.has(id)) editing.delete(id);
    syncList(slots, mine, {
      key: (r) => r.record.id,
      sig: (r) => {
        const state = editing.get(r.record.id);
        return rowSig(r, state ? ["open", state.error] : null, today);
      },
      build: (r) =>
        slotRow(ctx, r, {
          state: editing.get(r.record.id),
          today,
          repaint,
          onEdit: () => {
            editing.set(r.record.id, { values: slotValues(r.record), error: "" });
            repaint();
            const first = slots.querySelector(`[data-slot-id="${r.record.id}"] input`);
            if (first) first.focus();
          },
          onClose: () => {
            editing.delete(r.record.id);
            repaint();
          },
        }),
      empty: () => h("li", { class: "empty" }, "No availability from today on. Add a slot below."),
    });
    addForm.refresh(d);
  }

  function listOpts(emptyText, today) {
    return {
      key: itemKey,
      sig: (item) => (item.header ? `${item.label}|${item.count}` : rowSig(item, today)),
      build: (item) => (item.header ? dayHeader(item) : bookingCard(ctx, item, { today, show: { therapist: false, day: false } })),
      empty: () => h("li", { class: "empty" }, emptyText),
    };
  }

  // A refused change to my availability comes back filled in, one click from sending again.
  ctx.onReopen("new_slot", (mutation) => addForm.fill(reopenValues(mutation).values));
  ctx.onReopen("edit_slot", (mutation) => {
    const { id, values } = reopenValues(mutation);
    const row = last && (last.data.slots || []).find((r) => r.record.id === id && r.manageable);
    if (!row) return false;
    editing.set(id, { values, error: "" });
    repaint();
    return true;
  });

  return { render };
}

function mySlotForm(ctx) {
  const err = h("p", { class: "form-error", role: "alert" });
  const date = h("input", { type: "date", name: "date", required: true });
  const el = h(
    "form",
    { id: "my-new-slot", class: "form inline-form", "aria-labelledby": "my-new-slot-title" },
    h("h3", { id: "my-new-slot-title" }, "Add availability"),
    h(
      "div",
      { class: "field-row" },
      field("Date", date),
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
    ctx.submit(newSlot(ctx.user.id, v), { quiet: true }).then(
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
    /** The date starts at the clinic's today (the backend's), until the user picks one. */
    refresh(d) {
      if (!date.value) date.value = d.today;
    },
    /** Puts a refused slot's values back. */
    fill(v) {
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
