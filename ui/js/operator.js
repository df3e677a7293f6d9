// Operator dashboard: today's figures, the bookings the backend selects for the chosen
// filter (newest first, a page at a time), each with the actions its row carries, the
// assign and reschedule editors where the row is editable, and the new-booking form when the
// view says the user may create bookings (the forms are forms.js's, shared with scheduling).

import { startDashboard } from "./shell.js";
import { h, select, setText, syncList } from "./dom.js";
import { bookingCard } from "./bookings.js";
import { rowSig } from "./rows.js";
import { driversPanel } from "./driverboard.js";
import { reopenSteps } from "./stepdialogs.js";
import { bookingEditor, editorValues, freeTracker, newBookingForm, reopenValues } from "./forms.js";

// The filters the operator view offers (src-tauri/ipc.rs OperatorFilter): the backend
// selects the rows; these are only the menu's words.
const FILTERS = [
  { value: "all", label: "All bookings" },
  { value: "attention", label: "Needs attention" },
  { value: "today", label: "Today" },
  { value: "open", label: "Open (not finished)" },
];
/** How many more rows "Show more" asks for. */
const PAGE = 200;

startDashboard({ spec: { dashboard: "operator", filter: "all" }, build });

function build(ctx) {
  const { view, main } = ctx;
  // Per-booking editor state: id -> { mode: "assign" | "reschedule", values, error }
  const editing = new Map();
  let last = null; // the last info rendered, for repaints after local changes

  const figure = (id, label) =>
    h("div", { class: "figure" }, h("span", { class: "figure-value", id }, "–"), h("span", { class: "figure-label" }, label));
  const figures = h(
    "section",
    { class: "figures", "aria-label": "Today" },
    figure("count-pending", "Pending requests"),
    figure("count-confirmed-today", "Confirmed today"),
    figure("count-upcoming", "Upcoming"),
    figure("paid-today", "Paid today"),
  );
  const drivers = driversPanel(ctx);

  const list = h("ul", { class: "booking-list", id: "bookings", "aria-label": "Bookings" }, h("li", { class: "placeholder" }, "Loading bookings…"));
  const filterSelect = select(
    { "aria-label": "Show", class: "compact", onChange: (e) => view.show({ dashboard: "operator", filter: e.target.value }) },
    FILTERS,
    "all",
  );
  const shownCount = h("span", { class: "muted tabular" }, "");
  const more = h("button", { type: "button", class: "btn btn-quiet more", hidden: true, onClick: showMore }, "Show more");
  const tracker = freeTracker(view);
  const form = newBookingForm(ctx, tracker);
  const side = h("aside", { class: "col-side", hidden: true }, form.el);

  main.append(
    h(
      "div",
      { class: "layout-operator" },
      h(
        "div",
        { class: "col-main" },
        figures,
        drivers.el,
        h(
          "section",
          { class: "panel" },
          h("div", { class: "panel-head" }, h("h2", null, "Bookings"), h("div", { class: "panel-tools" }, shownCount, filterSelect)),
          list,
          more,
        ),
      ),
      side,
    ),
  );

  function showMore() {
    const spec = view.spec;
    const shown = last ? last.data.bookings.length : 0;
    view.show({ dashboard: "operator", filter: spec.filter, limit: shown + PAGE });
  }

  function render(info) {
    last = info;
    const d = info.data;
    const today = d.today;
    setText(document.getElementById("count-pending"), d.counts.pendingRequests);
    setText(document.getElementById("count-confirmed-today"), d.counts.confirmedToday);
    setText(document.getElementById("count-upcoming"), d.counts.upcoming);
    const paid = document.getElementById("paid-today");
    setText(paid, d.paidToday.amount);
    paid.dataset.cents = String(d.paidToday.amountCents);
    paid.title = d.paidToday.about;
    drivers.render(d);
    const unsynced = d.counts.unsynced ? ` · ${d.counts.unsynced} unsynced` : "";
    setText(shownCount, `${d.bookings.length}${d.more ? "+" : ""} shown${unsynced}`);
    more.hidden = !d.more;

    // An editor stays open only while its row is here and still editable.
    const editable = new Set(d.bookings.filter((r) => r.editable).map((r) => r.record.id));
    for (const id of editing.keys()) if (!editable.has(id)) editing.delete(id);

    const filter = view.spec.filter || "all";
    syncList(list, d.bookings, {
      key: (r) => r.record.id,
      // The editor's mode and message, not its values: typing must not rebuild the row.
      sig: (r) => rowSig(r, editorSig(editing.get(r.record.id)), today),
      build: (r) => card(r, today),
      empty: () => h("li", { class: "empty" }, filter === "all" ? "No bookings yet." : "No bookings match this filter."),
    });
    side.hidden = !d.mayCreate;
    form.refresh(d);
    tracker.render(d);
  }

  // A refused change of this window's comes back filled in, one click from sending again.
  // A refused cancellation or payment comes back in its dialog, on the booking as it is now.
  reopenSteps(ctx, (id) => (last ? last.data.bookings.find((r) => r.record.id === id) : null));
  ctx.onReopen("new_booking", (mutation) => {
    if (!last || !last.data.mayCreate) return false;
    form.fill(reopenValues(mutation).values);
    return true;
  });
  // A booking not in the list shown (another filter, or further down than the page):
  // show all bookings, or say to show more; the toast stays for a second click.
  const notListed = () => {
    if (!last) return "This window is still loading: try again in a moment.";
    if ((view.spec.filter || "all") !== "all") {
      filterSelect.value = "all";
      view.show({ dashboard: "operator", filter: "all" });
      return "The booking was not in the list shown: all bookings are shown now. Press Reopen again.";
    }
    if (last.data.more) return "The booking is further down than the list shows: press “Show more”, then Reopen again.";
    return "The booking is not shown here any more, or can no longer be changed.";
  };
  for (const mode of ["assign", "reschedule"]) {
    ctx.onReopen(mode, (mutation) => {
      const { id, values } = reopenValues(mutation);
      const row = last && last.data.bookings.find((r) => r.record.id === id && r.editable);
      if (!row) return notListed();
      editing.set(id, { mode, values, error: "" });
      repaint();
      const el = list.querySelector(`[data-booking-id="${id}"]`);
      if (el) el.scrollIntoView({ block: "nearest" });
      return true;
    });
  }

  const repaint = () => last && render(last);
  const editorSig = (state) => (state ? [state.mode, state.error] : null);

  function card(row, today) {
    const b = row.record;
    const state = editing.get(b.id);
    const toggle = (mode, text) =>
      h(
        "button",
        {
          type: "button",
          class: ["btn", "btn-quiet", state?.mode === mode && "is-on"],
          dataset: { edit: mode },
          "aria-expanded": state?.mode === mode ? "true" : "false",
          onClick: () => {
            if (editing.get(b.id)?.mode === mode) editing.delete(b.id);
            else editing.set(b.id, { mode, values: editorValues(mode, b), error: "" });
            repaint();
            const el = list.querySelector(`[data-booking-id="${b.id}"]`);
            const first = el && el.querySelector(".editor select, .editor input");
            if (first) first.focus();
          },
        },
        text,
      );
    const tools = row.editable ? [toggle("assign", "Assign"), toggle("reschedule", "Reschedule")] : null;
    let extra = null;
    if (row.editable && state) extra = bookingEditor(ctx, tracker, b, state, { onClose: () => close(b.id), repaint, people: last.data });
    return bookingCard(ctx, row, { today, tools, extra });
  }

  function close(id) {
    editing.delete(id);
    repaint();
  }

  return { render };
}
