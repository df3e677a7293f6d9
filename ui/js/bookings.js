// The booking card every dashboard shows, built from a BookingRow as the backend sends it:
// the same markup and hooks everywhere, exactly the actions the row carries, the names it
// carries. Colours come from CSS by data-status. User text only through text nodes (h()).

import { h } from "./dom.js";
import { dayName, timeRange } from "./format.js";

/** A status chip: the backend's label; its colour is CSS's (by data-status). */
function statusChip(words, status) {
  return h("span", { class: "chip", dataset: { status } }, words.status(status));
}

export function pendingMark() {
  // The words come from CSS: "saving…", or "waiting for server" while offline.
  return h("span", { class: "pending-label", title: "Not confirmed by the server yet" });
}

/**
 * bookingCard(ctx, row, { show: { therapist, driver, day }, today, tools, extra })
 * `row`: a BookingRow ({ record, pending, actions, editable, therapistName, driverName }).
 * `tools`: buttons placed after the actions (the operator's Assign / Reschedule).
 * `extra`: nodes below the card (an open editor).
 */
export function bookingCard(ctx, row, { show = {}, today, tools = null, extra = null } = {}) {
  const b = row.record;
  const { words, act } = ctx;
  const people = [];
  if (show.therapist !== false) people.push(h("span", { class: "person" }, h("span", { class: "muted" }, "Therapist "), row.therapistName || "Unassigned"));
  if (show.driver !== false) people.push(h("span", { class: "person" }, h("span", { class: "muted" }, "Driver "), row.driverName || "No driver"));
  const contact = [b.address, b.client_phone].filter((s) => s && s.trim());

  // In the order the backend gives; CSS moves the destructive ones to the end of the line.
  const buttons = (row.actions || []).map((action) =>
    act(
      h("button", { type: "button", class: "btn", dataset: { action } }, words.action(action)),
      () => ({ op: "booking_action", id: b.id, version: b.version, action }),
    ),
  );

  return h(
    "li",
    {
      class: ["booking", row.pending && "is-pending"],
      dataset: { bookingId: b.id, status: b.status, pending: row.pending ? "true" : "false" },
    },
    h(
      "div",
      { class: "booking-when" },
      h("span", { class: "booking-time" }, timeRange(b.start, b.end)),
      show.day !== false ? h("span", { class: "booking-day" }, dayName(b.date, today)) : null,
    ),
    h(
      "div",
      { class: "booking-body" },
      h("div", { class: "booking-title" }, h("span", { class: "booking-client" }, b.client_name), h("span", { class: "booking-service" }, b.service)),
      contact.length ? h("div", { class: "booking-contact" }, contact.join(" · ")) : null,
      people.length ? h("div", { class: "booking-people" }, people) : null,
      b.notes ? h("div", { class: "booking-notes", title: b.notes }, b.notes) : null,
    ),
    h("div", { class: "booking-badges" }, statusChip(words, b.status), b.payment ? paymentChip(b.payment) : null, row.pending ? pendingMark() : null),
    buttons.length || tools ? h("div", { class: "booking-actions" }, buttons, tools) : null,
    extra ? h("div", { class: "booking-extra" }, extra) : null,
  );
}

// Shown by CSS only where payment matters (a completed booking).
function paymentChip(payment) {
  return h("span", { class: "chip payment", dataset: { payment } }, payment === "verified" ? "Paid" : "Unpaid");
}

/** A day header item for mixed lists (see rows.js withDayHeaders). */
export function dayHeader(item) {
  return h("li", { class: "day-header", role: "presentation" }, h("span", null, item.label), item.count != null ? h("span", { class: "muted" }, String(item.count)) : null);
}
