// Scheduling dashboard: a week grid (Mon–Sun) with a lane per therapist showing their
// availability slots and bookings; add, edit and delete anyone's availability.

import { startDashboard } from "./shell.js";
import { h, field, select, fillSelect, setText, syncList } from "./dom.js";
import { addDays, dayLabel, hm, parseDate, timeRange, todayISO, weekStart, wireTime } from "./format.js";
import { canManageSlot, managesSchedule } from "./rules.js";
import { staffOptionsFor } from "./staff.js";
import { slotError } from "./slots.js";
import { STATUS } from "./format.js";

startDashboard({ kind: "scheduling", build });

function build(ctx) {
  const { store, user, main } = ctx;
  let week = weekStart(todayISO());
  let selected = null; // slot id being edited
  let editValues = null;

  const weekLabel = h("span", { class: "week-label tabular" }, "");
  const toolbar = h(
    "div",
    { class: "toolbar" },
    h("button", { type: "button", class: "btn btn-quiet", "aria-label": "Previous week", onClick: () => go(-7) }, "‹ Previous"),
    h("button", { type: "button", class: "btn btn-quiet", onClick: () => { week = weekStart(todayISO()); render(); } }, "This week"),
    h("button", { type: "button", class: "btn btn-quiet", "aria-label": "Next week", onClick: () => go(7) }, "Next ›"),
    weekLabel,
  );
  const head = h("div", { class: "grid-head", role: "row" });
  const lanes = h("div", { class: "grid-body" }, h("div", { class: "placeholder" }, "Loading the week…"));
  const grid = h("div", { class: "week-grid", role: "grid", "aria-label": "Availability and bookings this week" }, head, lanes);

  const newForm = newSlotForm(ctx);
  const editBox = h("div", { class: "edit-slot-box" });

  main.append(
    h(
      "div",
      { class: "layout-scheduling" },
      h("section", { class: "panel grid-panel" }, toolbar, h("div", { class: "grid-scroll" }, grid), legend()),
      managesSchedule(user) ? h("aside", { class: "col-side" }, editBox, newForm.el) : null,
    ),
  );

  function go(days) {
    week = addDays(week, days);
    render();
  }

  function render() {
    const today = todayISO();
    const days = Array.from({ length: 7 }, (_, i) => addDays(week, i));
    const last = days[6];
    const start = parseDate(week);
    const end = parseDate(last);
    setText(weekLabel, `${start.getDate()} ${dayLabel(week).split(" ")[2]} – ${end.getDate()} ${dayLabel(last).split(" ")[2]} ${end.getFullYear()}`);

    syncList(head, ["", ...days], {
      key: (d) => `h:${d}`,
      sig: (d) => `${d}|${d === today}`,
      build: (d) => (d ? h("div", { class: ["grid-day", d === today && "is-today"], role: "columnheader" }, dayLabel(d)) : h("div", { class: "grid-corner" }, "Therapist")),
    });

    const inWeek = (e) => e.record.date >= week && e.record.date <= last;
    const slots = store.slots().filter(inWeek);
    const bookings = store.bookings().filter((e) => inWeek(e) && e.record.status !== "cancelled" && e.record.therapist_id);
    const staffIds = new Set(store.withRole("therapist").map((s) => s.id));
    for (const e of slots) staffIds.add(e.record.staff_id);
    for (const e of bookings) staffIds.add(e.record.therapist_id);
    const people = Array.from(staffIds)
      .map((id) => ({ id, name: store.staffName(id) }))
      .sort((a, b) => a.name.localeCompare(b.name));

    if (selected && !store.get("slot", selected)) {
      selected = null;
      editValues = null;
    }

    const laneItems = people.map((p) => ({
      ...p,
      slots: slots.filter((e) => e.record.staff_id === p.id),
      bookings: bookings.filter((e) => e.record.therapist_id === p.id),
    }));
    syncList(lanes, laneItems, {
      key: (l) => l.id,
      sig: (l) => JSON.stringify([week, today, l.name, l.slots, l.bookings, selected]),
      build: (l) => lane(l, days, today),
      empty: () => h("div", { class: "empty" }, "No therapists yet."),
    });
    renderEditor();
    newForm.refresh();
  }

  function lane(l, days, today) {
    const mayManage = canManageSlot(user, l.id);
    return h(
      "div",
      { class: "lane", role: "row", dataset: { staffId: l.id } },
      h("div", { class: "lane-name", role: "rowheader" }, l.name),
      days.map((d) => {
        const items = [
          ...l.slots.filter((e) => e.record.date === d).map((e) => ({ kind: "slot", e })),
          ...l.bookings.filter((e) => e.record.date === d).map((e) => ({ kind: "booking", e })),
        ].sort((a, b) => a.e.record.start.localeCompare(b.e.record.start) || (a.kind === "slot" ? -1 : 1));
        return h(
          "div",
          { class: ["cell", d === today && "is-today"], role: "gridcell" },
          items.map((it) => (it.kind === "slot" ? slotBlock(it.e, mayManage) : bookingBlock(it.e))),
          mayManage
            ? h(
                "button",
                {
                  type: "button",
                  class: "cell-add",
                  title: `Add availability for ${l.name} on ${dayLabel(d)}`,
                  "aria-label": `Add availability for ${l.name} on ${dayLabel(d)}`,
                  onClick: () => newForm.prefill(l.id, d),
                },
                "+",
              )
            : null,
        );
      }),
    );
  }

  function slotBlock(e, mayManage) {
    const s = e.record;
    return h(
      "button",
      {
        type: "button",
        class: ["slot-block", e.pending && "is-pending", selected === s.id && "is-selected"],
        dataset: { slotId: s.id, pending: e.pending ? "true" : "false" },
        disabled: !mayManage,
        title: s.note ? `${timeRange(s.start, s.end)} · ${s.note}` : `Available ${timeRange(s.start, s.end)}`,
        onClick: () => {
          selected = s.id;
          editValues = { date: s.date, start: hm(s.start), end: hm(s.end), note: s.note || "" };
          render();
          const first = editBox.querySelector("input");
          if (first) first.focus();
        },
      },
      h("span", { class: "block-time" }, timeRange(s.start, s.end)),
      s.note ? h("span", { class: "block-note" }, s.note) : null,
    );
  }

  function bookingBlock(e) {
    const b = e.record;
    const tone = STATUS[b.status]?.tone || "grey";
    return h(
      "div",
      {
        class: ["grid-booking", `tone-${tone}`, e.pending && "is-pending"],
        dataset: { bookingId: b.id, status: b.status, pending: e.pending ? "true" : "false" },
        title: `${timeRange(b.start, b.end)} · ${b.client_name} · ${b.service} · ${STATUS[b.status]?.label || b.status}`,
      },
      h("span", { class: "block-time" }, timeRange(b.start, b.end)),
      h("span", { class: "booking-client" }, b.client_name),
    );
  }

  function renderEditor() {
    const entry = selected ? store.get("slot", selected) : null;
    const sig = entry ? JSON.stringify([entry.record, entry.pending, store.staffRev]) : "";
    if (editBox.__sig === sig) return;
    editBox.__sig = sig;
    if (!entry) {
      editBox.replaceChildren();
      return;
    }
    const s = entry.record;
    const v = editValues;
    const onInput = (ev) => { v[ev.target.name] = ev.target.value; };
    const err = h("p", { class: "form-error", role: "alert" });
    const close = () => {
      selected = null;
      editValues = null;
      render();
    };
    const del = h("button", { type: "button", class: "btn btn-danger" }, "Delete slot");
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
            const problem = slotError(v);
            if (problem) return setText(err, problem);
            ctx.submit({ op: "update_slot", id: s.id, version: s.version, date: v.date, start: wireTime(v.start), end: wireTime(v.end), note: v.note || "" }).catch(() => {});
            close();
          },
        },
        h("h2", { id: "edit-slot-title" }, "Edit availability"),
        h("p", { class: "muted" }, store.staffName(s.staff_id), entry.pending ? " · saving…" : ""),
        field("Date", h("input", { type: "date", name: "date", value: v.date, required: true, onInput })),
        h(
          "div",
          { class: "field-row" },
          field("Start", h("input", { type: "time", name: "start", value: v.start, required: true, onInput })),
          field("End", h("input", { type: "time", name: "end", value: v.end, required: true, onInput })),
        ),
        field("Note", h("input", { type: "text", name: "note", value: v.note, maxlength: 2000, onInput })),
        err,
        h("div", { class: "form-buttons" }, h("button", { type: "submit", class: "btn btn-primary" }, "Save"), del, h("button", { type: "button", class: "btn btn-quiet", onClick: close }, "Close")),
      ),
    );
  }

  return { render };
}

function legend() {
  return h(
    "div",
    { class: "legend", "aria-hidden": "true" },
    h("span", { class: "legend-item" }, h("span", { class: "swatch swatch-slot" }), "Available"),
    ...["requested", "confirmed", "in_session", "completed"].map((s) =>
      h("span", { class: "legend-item" }, h("span", { class: ["swatch", `tone-${STATUS[s].tone}`] }), STATUS[s].label),
    ),
  );
}

function newSlotForm(ctx) {
  const { store } = ctx;
  const err = h("p", { class: "form-error", role: "alert" });
  const staff = select({ name: "staff_id", required: true }, [], "");
  const el = h(
    "form",
    { id: "new-slot", class: "panel form", "aria-labelledby": "new-slot-title" },
    h("h2", { id: "new-slot-title" }, "Add availability"),
    field("Therapist", staff),
    field("Date", h("input", { type: "date", name: "date", required: true, value: todayISO() })),
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
    const v = { staff_id: f.staff_id.value, date: f.date.value, start: f.start.value, end: f.end.value, note: f.note.value };
    const problem = v.staff_id ? slotError(v) : "Choose a therapist.";
    setText(err, problem);
    if (problem) return;
    const slot = { id: crypto.randomUUID(), staff_id: v.staff_id, date: v.date, start: wireTime(v.start), end: wireTime(v.end), note: v.note };
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
  return {
    el,
    refresh() {
      fillSelect(staff, staffOptionsFor(store, ctx.user));
    },
    prefill(staffId, date) {
      fillSelect(staff, staffOptionsFor(store, ctx.user), staffId);
      el.elements.date.value = date;
      el.elements.start.focus();
    },
  };
}
