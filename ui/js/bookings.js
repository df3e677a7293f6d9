// The booking card every dashboard shows: the same markup, hooks and status colours
// everywhere. User text only through text nodes (h()).

import { h } from "./dom.js";
import { ACTION_LABELS, STATUS, dayName, statusLabel, timeRange } from "./format.js";

export function statusChip(status) {
  const tone = STATUS[status]?.tone || "grey";
  return h("span", { class: ["chip", `tone-${tone}`] }, statusLabel(status));
}

export function pendingMark() {
  // The words come from CSS: "saving…", or "waiting for server" while offline.
  return h("span", { class: "pending-label", title: "Not confirmed by the server yet" });
}

/**
 * bookingCard(ctx, entry, { actions, show: { therapist, driver, day }, extra })
 * `actions`: action names to offer (already filtered by the rules).
 * `extra`: nodes appended below (operator editors).
 */
export function bookingCard(ctx, entry, { actions = [], show = {}, tools = null, extra = null } = {}) {
  const b = entry.record;
  const { store, act } = ctx;
  const people = [];
  if (show.therapist !== false) people.push(h("span", { class: "person" }, h("span", { class: "muted" }, "Therapist "), store.staffName(b.therapist_id)));
  if (show.driver !== false) people.push(h("span", { class: "person" }, h("span", { class: "muted" }, "Driver "), store.staffName(b.driver_id, "No driver")));
  const contact = [b.address, b.client_phone].filter((s) => s && s.trim());

  const buttons = actions.map((action) =>
    act(
      h(
        "button",
        { type: "button", class: ["btn", `btn-${action === "cancel" || action === "decline" ? "danger" : "primary"}`], dataset: { action } },
        ACTION_LABELS[action] || action,
      ),
      () => ({ op: "booking_action", id: b.id, version: b.version, action }),
    ),
  );

  return h(
    "li",
    {
      class: ["booking", entry.pending && "is-pending", `status-${b.status}`],
      dataset: { bookingId: b.id, status: b.status, pending: entry.pending ? "true" : "false" },
    },
    h(
      "div",
      { class: "booking-when" },
      h("span", { class: "booking-time" }, timeRange(b.start, b.end)),
      show.day !== false ? h("span", { class: "booking-day" }, dayName(b.date)) : null,
    ),
    h(
      "div",
      { class: "booking-body" },
      h("div", { class: "booking-title" }, h("span", { class: "booking-client" }, b.client_name), h("span", { class: "booking-service" }, b.service)),
      contact.length ? h("div", { class: "booking-contact" }, contact.join(" · ")) : null,
      people.length ? h("div", { class: "booking-people" }, people) : null,
      b.notes ? h("div", { class: "booking-notes", title: b.notes }, b.notes) : null,
    ),
    h("div", { class: "booking-badges" }, statusChip(b.status), b.status === "completed" ? paymentChip(b.payment) : null, entry.pending ? pendingMark() : null),
    buttons.length || tools
      ? h("div", { class: "booking-actions" }, buttons.filter((x) => x.dataset.action !== "cancel"), tools, buttons.filter((x) => x.dataset.action === "cancel"))
      : null,
    extra ? h("div", { class: "booking-extra" }, extra) : null,
  );
}

function paymentChip(payment) {
  return payment === "verified" ? h("span", { class: "chip tone-green-outline" }, "Paid") : h("span", { class: "chip tone-amber-outline" }, "Unpaid");
}

/** Sorts bookings by day and start time. */
export function byTime(a, b) {
  const x = a.record;
  const y = b.record;
  return x.date.localeCompare(y.date) || x.start.localeCompare(y.start) || x.id.localeCompare(y.id);
}

/** A day header item for mixed lists. */
export function dayHeader(text, count) {
  return h("li", { class: "day-header", role: "presentation" }, h("span", null, text), count != null ? h("span", { class: "muted" }, String(count)) : null);
}

/** A stable signature for a card: the record, its pending flag and the names it shows. */
export function cardSig(ctx, entry, extra = "") {
  return `${JSON.stringify(entry.record)}|${entry.pending}|${ctx.store.staffRev}|${extra}`;
}

/** Booking entries interleaved with a header per day. */
export function withDayHeaders(entries, today) {
  const out = [];
  let day = null;
  for (const e of entries) {
    if (e.record.date !== day) {
      day = e.record.date;
      const count = entries.filter((x) => x.record.date === day).length;
      out.push({ header: day, label: dayName(day, today), count });
    }
    out.push(e);
  }
  return out;
}
