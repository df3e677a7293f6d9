// The booking card every dashboard shows, built from a BookingRow as the backend sends it:
// the same markup and hooks everywhere, exactly the actions the row carries, the names it
// carries. Colours come from CSS by data-status. User text only through text nodes (h()).

import { h } from "./dom.js";
import { clock, dayName, timeRange, when } from "./format.js";
import { stepDialogFor } from "./stepdialogs.js";

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
  const buttons = (row.actions || []).map((action) => {
    const label = words.action(action);
    // The steps that need more than the click (a reason, the payment's details) open a
    // dialog: the backend says which.
    const dialog = stepDialogFor(ctx, action);
    if (dialog) {
      return h("button", { type: "button", class: "btn", dataset: { action }, "aria-haspopup": "dialog", onClick: () => dialog(row) }, `${label}…`);
    }
    return act(h("button", { type: "button", class: "btn", dataset: { action } }, label), () => ({ op: "booking_action", id: b.id, version: b.version, action }));
  });

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
      row.paid ? paidLine(row.paid) : null,
      row.cancelled ? cancelledLine(row.cancelled) : null,
    ),
    h("div", { class: "booking-badges" }, statusChip(words, b.status), b.payment ? paymentChip(b.payment) : null, row.pending ? pendingMark() : null),
    buttons.length || tools ? h("div", { class: "booking-actions" }, buttons, tools) : null,
    extra ? h("div", { class: "booking-extra" }, extra) : null,
  );
}

/** "Paid 120.50 · Card · ref 1234 · verified by Olivia Grant at 14:05" */
function paidLine(paid) {
  const parts = [`Paid ${paid.amount}`, paid.method];
  if (paid.reference) parts.push(`ref ${paid.reference}`);
  parts.push(`verified by ${paid.by} ${atWords(paid.at)}`);
  return h("div", { class: "booking-paid", dataset: { amount: paid.amount } }, parts.join(" · "));
}

/** "Cancelled by Olivia Grant at 09:12: The client is ill." */
function cancelledLine(c) {
  return h("div", { class: "booking-cancelled", title: c.reason }, h("span", { class: "muted" }, `Cancelled by ${c.by} ${atWords(c.at)}: `), h("span", { class: "cancel-reason" }, c.reason));
}

/** "at 14:05" today, "on Sun 22 Nov 14:05" another day. */
function atWords(ts) {
  const w = when(ts);
  return w === clock(ts) ? `at ${w}` : `on ${w}`;
}

// Shown by CSS only where payment matters (a completed booking).
function paymentChip(payment) {
  return h("span", { class: "chip payment", dataset: { payment } }, payment === "verified" ? "Paid" : "Unpaid");
}

/** A day header item for mixed lists (see rows.js withDayHeaders). */
export function dayHeader(item) {
  return h("li", { class: "day-header", role: "presentation" }, h("span", null, item.label), item.count != null ? h("span", { class: "muted" }, String(item.count)) : null);
}
