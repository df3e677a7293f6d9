// Availability slots: the row and the inline editor shared by the therapist and scheduling
// dashboards.

import { h, field, setText } from "./dom.js";
import { dayName, hm, minutes, timeRange, wireTime } from "./format.js";
import { pendingMark } from "./bookings.js";

/** Validates { date, start, end }; returns an error sentence or "". */
export function slotError(v) {
  if (!v.date || !v.start || !v.end) return "Date, start and end are required.";
  if (minutes(v.end) <= minutes(v.start)) return "The end must be after the start.";
  return "";
}

/**
 * A slot row with Edit / Delete, or its editor when `state` is set.
 * opts: { state, onEdit(), onClose(), showStaff, showDay }
 */
export function slotRow(ctx, entry, { state, onEdit, onClose, showStaff = false, showDay = true, canManage = true }) {
  const s = entry.record;
  const staff = showStaff ? h("span", { class: "slot-staff" }, ctx.store.staffName(s.staff_id)) : null;
  const attrs = { class: ["slot", entry.pending && "is-pending"], dataset: { slotId: s.id, pending: entry.pending ? "true" : "false" } };
  if (state) return h("li", attrs, slotEditor(ctx, s, state, onClose));
  const del = h("button", { type: "button", class: "btn btn-quiet btn-danger-text", dataset: { slotAction: "delete" } }, "Delete");
  ctx.act(del, () => ({ op: "delete_slot", id: s.id, version: s.version }));
  return h(
    "li",
    attrs,
    h("span", { class: "slot-when" }, showDay ? h("span", { class: "slot-day" }, dayName(s.date)) : null, h("span", { class: "slot-time" }, timeRange(s.start, s.end))),
    staff,
    h("span", { class: "slot-note" }, s.note || ""),
    entry.pending ? pendingMark() : null,
    canManage
      ? h("span", { class: "slot-actions" }, h("button", { type: "button", class: "btn btn-quiet", dataset: { slotAction: "edit" }, onClick: onEdit }, "Edit"), del)
      : null,
  );
}

export function slotEditor(ctx, s, state, onClose) {
  const v = state.values;
  const onInput = (e) => { v[e.target.name] = e.target.value; };
  const err = h("p", { class: "form-error", role: "alert" });
  return h(
    "form",
    {
      class: "editor slot-editor",
      "aria-label": "Edit availability",
      onSubmit: (e) => {
        e.preventDefault();
        const problem = slotError(v);
        if (problem) return setText(err, problem);
        ctx.submit({ op: "update_slot", id: s.id, version: s.version, date: v.date, start: wireTime(v.start), end: wireTime(v.end), note: v.note || "" }).catch(() => {});
        onClose();
      },
    },
    field("Date", h("input", { type: "date", name: "date", value: v.date, required: true, onInput })),
    field("Start", h("input", { type: "time", name: "start", value: v.start, required: true, onInput })),
    field("End", h("input", { type: "time", name: "end", value: v.end, required: true, onInput })),
    field("Note", h("input", { type: "text", name: "note", value: v.note, maxlength: 2000, onInput })),
    h("div", { class: "editor-buttons" }, h("button", { type: "submit", class: "btn btn-primary" }, "Save"), h("button", { type: "button", class: "btn btn-quiet", onClick: onClose }, "Close")),
    err,
  );
}

export function slotValues(s) {
  return { date: s.date, start: hm(s.start), end: hm(s.end), note: s.note || "" };
}
