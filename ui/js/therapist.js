// Therapist dashboard: my appointments (accept, decline, start session, complete) and my
// availability (add, edit, delete).

import { startDashboard } from "./shell.js";
import { h, field, setText, syncList } from "./dom.js";
import { todayISO, wireTime } from "./format.js";
import { actionsFor } from "./rules.js";
import { bookingCard, byTime, cardSig, dayHeader, withDayHeaders } from "./bookings.js";
import { slotError, slotRow, slotValues } from "./slots.js";

startDashboard({ kind: "therapist", build });

function build(ctx) {
  const { store, user, main } = ctx;
  const editing = new Map(); // slot id -> { values }

  const upcoming = h("ul", { class: "booking-list", "aria-label": "Upcoming appointments" }, h("li", { class: "placeholder" }, "Loading appointments…"));
  const earlier = h("ul", { class: "booking-list", "aria-label": "Earlier appointments" });
  const earlierBox = h("details", { class: "earlier" }, h("summary", null, "Earlier appointments"), earlier);
  const slots = h("ul", { class: "slot-list", "aria-label": "My availability" }, h("li", { class: "placeholder" }, "Loading availability…"));
  const todayCount = h("span", { class: "muted tabular" }, "");

  const addForm = mySlotForm(ctx);

  main.append(
    h(
      "div",
      { class: "layout-two" },
      h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", null, "My appointments"), todayCount), upcoming, earlierBox),
      h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", null, "My availability")), slots, addForm),
    ),
  );

  function render() {
    const today = todayISO();
    const mine = store.bookings().filter((e) => e.record.therapist_id === user.id).sort(byTime);
    const next = mine.filter((e) => e.record.date >= today);
    const past = mine.filter((e) => e.record.date < today).reverse();
    const todays = next.filter((e) => e.record.date === today && e.record.status !== "cancelled").length;
    setText(todayCount, todays === 1 ? "1 today" : `${todays} today`);
    syncList(upcoming, withDayHeaders(next, today), listOpts("No upcoming appointments."));
    syncList(earlier, withDayHeaders(past, today), listOpts("No earlier appointments."));
    earlierBox.hidden = past.length === 0;

    const mySlots = store
      .slots()
      .filter((e) => e.record.staff_id === user.id && e.record.date >= today)
      .sort(byTime);
    for (const id of editing.keys()) if (!store.get("slot", id)) editing.delete(id);
    syncList(slots, mySlots, {
      key: (e) => e.record.id,
      sig: (e) => `${JSON.stringify(e.record)}|${e.pending}|${JSON.stringify(editing.get(e.record.id) || null)}`,
      build: (e) =>
        slotRow(ctx, e, {
          state: editing.get(e.record.id),
          onEdit: () => {
            editing.set(e.record.id, { values: slotValues(e.record) });
            render();
            const first = slots.querySelector(`[data-slot-id="${e.record.id}"] input`);
            if (first) first.focus();
          },
          onClose: () => {
            editing.delete(e.record.id);
            render();
          },
        }),
      empty: () => h("li", { class: "empty" }, "No availability from today on. Add a slot below."),
    });
  }

  function listOpts(emptyText) {
    return {
      key: (item) => (item.header ? `day:${item.header}` : item.record.id),
      sig: (item) => (item.header ? `${item.label}|${item.count}` : cardSig(ctx, item)),
      build: (item) => (item.header ? dayHeader(item.label, item.count) : bookingCard(ctx, item, { actions: actionsFor("therapist", user, item.record), show: { therapist: false, day: false } })),
      empty: () => h("li", { class: "empty" }, emptyText),
    };
  }

  return { render };
}

function mySlotForm(ctx) {
  const err = h("p", { class: "form-error", role: "alert" });
  const el = h(
    "form",
    { id: "my-new-slot", class: "form inline-form", "aria-labelledby": "my-new-slot-title" },
    h("h3", { id: "my-new-slot-title" }, "Add availability"),
    h(
      "div",
      { class: "field-row" },
      field("Date", h("input", { type: "date", name: "date", required: true, value: todayISO() })),
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
    const v = { date: f.date.value, start: f.start.value, end: f.end.value, note: f.note.value };
    const problem = slotError(v);
    setText(err, problem);
    if (problem) return;
    const slot = { id: crypto.randomUUID(), staff_id: ctx.user.id, date: v.date, start: wireTime(v.start), end: wireTime(v.end), note: v.note };
    ctx.submit({ op: "create_slot", slot }).then(
      () => {
        f.start.value = "";
        f.end.value = "";
        f.note.value = "";
        f.start.focus();
      },
      () => {},
    );
  });
  return el;
}
