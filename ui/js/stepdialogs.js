// The two life-cycle steps that need more than a click: cancelling a booking asks for
// confirmation and a reason (shown to everyone who sees the booking), verifying a payment
// asks for the amount, the method and an optional reference. Each is a modal dialog made
// once per window; the backend judges the values (a refusal is shown in the dialog, with
// nothing typed cleared). The methods and their words come from the backend (session.words).

import { h, field, select, setText } from "./dom.js";
import { parseCents, timeRange } from "./format.js";

const dialogs = new WeakMap();

/**
 * The window's step dialogs, made on first use, by the form name the backend gives the
 * step (session.words.dialogs, which also says which steps need one):
 * { cancel_booking(row, values?), verify_payment(row, values?) }.
 */
export function stepDialogs(ctx) {
  let made = dialogs.get(ctx);
  if (!made) {
    made = { cancel_booking: cancelDialog(ctx), verify_payment: paymentDialog(ctx) };
    dialogs.set(ctx, made);
  }
  return made;
}

/** The steps the backend says are taken in a dialog: { action: form name }. */
function dialogSteps(ctx) {
  return (ctx.session && ctx.session.words && ctx.session.words.dialogs) || {};
}

/**
 * The dialog life-cycle step `action` opens, as open(row), or null when the step is a
 * plain click (or this window has no dialog for it).
 */
export function stepDialogFor(ctx, action) {
  const steps = dialogSteps(ctx);
  const form = Object.prototype.hasOwnProperty.call(steps, action) ? steps[action] : null;
  if (!form) return null;
  const open = stepDialogs(ctx)[form];
  return open ? (row) => open(row) : null;
}

/** What the dialog is about: "Ana Lopez · Massage · 2026-11-22 10:00–11:00". */
function about(b) {
  return `${b.client_name} · ${b.service} · ${b.date} ${timeRange(b.start, b.end)}`;
}

/**
 * A modal dialog around `fields` (#<name>-dialog, confirmed with #<name>-confirm):
 * `makeMutation(booking)` gives the change to submit (or throws { message } when what was
 * typed cannot be sent), `fill(values)` puts values back in the fields.
 * Returns open(row, values?).
 */
function stepDialog(ctx, { name, title, confirm, keep, danger, fields, hint, makeMutation, first, fill }) {
  const summary = h("p", { class: "dialog-about", id: `${name}-about` });
  const error = h("p", { class: "form-error", role: "alert", id: `${name}-error` });
  const submit = h("button", { type: "submit", class: ["btn", danger ? "btn-danger" : "btn-primary"], id: `${name}-confirm` }, confirm);
  const close = h("button", { type: "button", class: "btn btn-quiet", id: `${name}-close`, onClick: () => dialog.close() }, keep);
  const form = h(
    "form",
    { class: "form dialog-form", "aria-labelledby": `${name}-title` },
    h("h2", { id: `${name}-title` }, title),
    summary,
    fields,
    hint ? h("p", { class: "hint" }, hint) : null,
    error,
    h("div", { class: "form-buttons" }, submit, close),
  );
  const dialog = h("dialog", { class: "dialog", id: `${name}-dialog`, dataset: { state: "closed" } }, form);
  dialog.addEventListener("close", () => {
    dialog.dataset.state = "closed";
  });
  document.body.appendChild(dialog);

  let booking = null;
  let busy = false;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (busy || !booking) return;
    setText(error, "");
    let mutation;
    try {
      mutation = makeMutation(booking);
    } catch (wrong) {
      setText(error, wrong.message);
      error.dataset.code = wrong.code || "invalid_value";
      return;
    }
    busy = true;
    submit.disabled = true;
    dialog.dataset.state = "busy";
    try {
      await ctx.submit(mutation, { quiet: true });
      dialog.close();
      form.reset();
    } catch (err) {
      // Refused before it was queued: said here, with everything typed still in place.
      setText(error, err.message || "This change could not be made.");
      error.dataset.code = err.code || "internal";
      dialog.dataset.state = "error";
    } finally {
      busy = false;
      submit.disabled = false;
    }
  });

  return function open(row, values = null) {
    // Another booking than the one typed for: start from empty fields.
    if (booking && booking.id !== row.record.id) form.reset();
    booking = row.record;
    if (values) fill(values);
    setText(summary, about(booking));
    setText(error, "");
    delete error.dataset.code;
    dialog.dataset.state = "open";
    dialog.dataset.forBooking = booking.id;
    if (!dialog.open) dialog.showModal();
    first.focus();
  };
}

function cancelDialog(ctx) {
  const reason = h("input", { type: "text", name: "reason", id: "cancel-reason", required: true, maxlength: ctx.session.maxShortText, autocomplete: "off" });
  return stepDialog(ctx, {
    name: "cancel",
    title: "Cancel this booking?",
    confirm: "Cancel booking",
    keep: "Keep booking",
    danger: true,
    fields: field("Reason", reason),
    hint: "The reason is shown to everyone who sees the booking. Cancelling cannot be undone.",
    first: reason,
    fill: (v) => {
      reason.value = v.reason ?? "";
    },
    makeMutation: (b) => ({ op: "cancel_booking", id: b.id, version: b.version, reason: reason.value }),
  });
}

function paymentDialog(ctx) {
  const amount = h("input", { type: "text", name: "amount", id: "payment-amount", required: true, inputmode: "decimal", autocomplete: "off", placeholder: "e.g. 80.00" });
  const method = select({ name: "method", id: "payment-method" }, ctx.words.paymentMethods, (ctx.words.paymentMethods[0] || {}).value);
  const reference = h("input", { type: "text", name: "reference", id: "payment-reference", maxlength: ctx.session.maxShortText, autocomplete: "off", placeholder: "Receipt, slip or claim number" });
  return stepDialog(ctx, {
    name: "payment",
    title: "Verify payment",
    confirm: "Record payment",
    keep: "Close",
    danger: false,
    fields: [field("Amount", amount), field("Method", method), field("Reference (optional)", reference)],
    hint: null,
    first: amount,
    fill: (v) => {
      amount.value = Number.isInteger(v.amount_cents) ? (v.amount_cents / 100).toFixed(2) : "";
      if (v.method) method.value = v.method;
      reference.value = v.reference ?? "";
    },
    makeMutation: (b) => {
      const cents = parseCents(amount.value);
      if (cents === null) throw { code: "invalid_value", message: "Type the amount paid, for example 80 or 80.50." };
      return { op: "verify_payment", id: b.id, version: b.version, amount_cents: cents, method: method.value, reference: reference.value };
    },
  });
}

/**
 * Lets the window reopen a refused cancellation or payment in its dialog, filled with what
 * was typed, on the booking as `rowOf(id)` finds it now (null: not shown here any more, or
 * the step is no longer offered on it).
 */
export function reopenSteps(ctx, rowOf) {
  const made = stepDialogs(ctx);
  for (const [action, form] of Object.entries(dialogSteps(ctx))) {
    if (!made[form]) continue;
    ctx.onReopen(form, (mutation) => {
      const row = rowOf(mutation.id);
      if (!row) return "The booking is not shown here any more.";
      if (!(row.actions || []).includes(action)) return `${ctx.words.action(action)} is no longer offered on this booking.`;
      made[form](row, mutation);
      return true;
    });
  }
}
