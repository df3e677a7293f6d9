// Availability slots: the row and the inline editor shared by the therapist and scheduling
// dashboards, built from SlotRows as the backend sends them (Edit / Delete only when the
// row is `manageable`). The backend judges every change; a refusal shows in the editor.

import { h, field } from "./dom.js";
import { dayName, hm, timeRange, wireTime } from "./format.js";
import { pendingMark } from "./bookings.js";

/**
 * A slot row with Edit / Delete, or its editor while `state` is set.
 * opts: { state, onEdit(), onClose(), repaint(), showStaff, showDay, today }
 */
export function slotRow(ctx, row, { state, onEdit, onClose, repaint, showStaff = false, showDay = true, today }) {
  const s = row.record;
  const attrs = { class: ["slot", row.pending && "is-pending"], dataset: { slotId: s.id, pending: row.pending ? "true" : "false" } };
  if (state && row.manageable) return h("li", attrs, slotEditor(ctx, s, state, { onClose, repaint }));
  let tools = null;
  if (row.manageable) {
    const del = h("button", { type: "button", class: "btn btn-quiet btn-danger-text", dataset: { slotAction: "delete" } }, "Delete");
    ctx.act(del, () => ({ op: "delete_slot", id: s.id, version: s.version }));
    tools = h("span", { class: "slot-actions" }, h("button", { type: "button", class: "btn btn-quiet", dataset: { slotAction: "edit" }, onClick: onEdit }, "Edit"), del);
  }
  return h(
    "li",
    attrs,
    h("span", { class: "slot-when" }, showDay ? h("span", { class: "slot-day" }, dayName(s.date, today)) : null, h("span", { class: "slot-time" }, timeRange(s.start, s.end))),
    showStaff ? h("span", { class: "slot-staff" }, row.staffName) : null,
    h("span", { class: "slot-note" }, s.note || ""),
    row.pending ? pendingMark() : null,
    tools,
  );
}

/**
 * The inline editor of slot `s`. `state` = { values, error } lives with the dashboard, so
 * that typing survives a rebuild of the row; on a refusal the backend's sentence goes into
 * state.error and the editor stays open.
 */
function slotEditor(ctx, s, state, { onClose, repaint }) {
  const v = state.values;
  const onInput = (e) => {
    v[e.target.name] = e.target.value;
  };
  return h(
    "form",
    {
      class: "editor slot-editor",
      "aria-label": "Edit availability",
      onSubmit: (e) => {
        e.preventDefault();
        saveSlot(ctx, s, v).then(onClose, (err) => {
          state.error = err.message;
          repaint();
        });
      },
    },
    field("Date", h("input", { type: "date", name: "date", value: v.date, required: true, onInput })),
    field("Start", h("input", { type: "time", name: "start", value: v.start, required: true, onInput })),
    field("End", h("input", { type: "time", name: "end", value: v.end, required: true, onInput })),
    field("Note", h("input", { type: "text", name: "note", value: v.note, maxlength: 2000, onInput })),
    h("div", { class: "editor-buttons" }, h("button", { type: "submit", class: "btn btn-primary" }, "Save"), h("button", { type: "button", class: "btn btn-quiet", onClick: onClose }, "Close")),
    h("p", { class: "form-error", role: "alert" }, state.error || ""),
  );
}

/** Submits the edited values of slot `s`; rejects with the backend's { code, message }. */
export function saveSlot(ctx, s, v) {
  return ctx.submit(
    { op: "update_slot", id: s.id, version: s.version, date: v.date, start: wireTime(v.start), end: wireTime(v.end), note: v.note || "" },
    { quiet: true },
  );
}

/** The editor's starting values for slot `s`. */
export function slotValues(s) {
  return { date: s.date, start: hm(s.start), end: hm(s.end), note: s.note || "" };
}

/** The mutation creating a slot from a form's values (the id is made here, once). */
export function newSlot(staffId, v) {
  return { op: "create_slot", slot: { id: crypto.randomUUID(), staff_id: staffId, date: v.date, start: wireTime(v.start), end: wireTime(v.end), note: v.note || "" } };
}
