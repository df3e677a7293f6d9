// The operator's Drivers panel: every driver as the backend lists them (view
// `driverBoard`), on or off duty, and the step their run of today is at (the booking they are
// on, its status in the backend's words). It arrives live like everything else: the drivers'
// staff records and bookings come through the feed, and the view is patched with each batch.

import { h, syncList } from "./dom.js";
import { rowSig } from "./rows.js";
import { timeRange } from "./format.js";

/** driversPanel(ctx) -> { el, render(data) } */
export function driversPanel(ctx) {
  const list = h("ul", { class: "driver-board", id: "driver-board", "aria-label": "Drivers" });
  const el = h("section", { class: "panel drivers-panel", "aria-labelledby": "drivers-title" }, h("div", { class: "panel-head" }, h("h2", { id: "drivers-title" }, "Drivers")), list);

  function item(d) {
    const run = d.current;
    const duty = h("span", { class: "chip duty", dataset: { duty: d.onDuty ? "on" : "off" } }, ctx.words.duty(d.onDuty));
    const step = run
      ? h(
          "div",
          { class: "driver-run", dataset: { runBooking: run.bookingId, status: run.status, pending: run.pending ? "true" : "false" } },
          h("span", { class: "chip", dataset: { status: run.status } }, ctx.words.status(run.status)),
          h("span", { class: "driver-run-time tabular" }, timeRange(run.start, run.end)),
          h("span", { class: "driver-run-client" }, run.clientName),
          run.address ? h("span", { class: "muted driver-run-address" }, run.address) : null,
        )
      : h("div", { class: "driver-run muted", dataset: { status: "none" } }, d.runsToday ? "All of today's runs done" : "No runs today");
    const tally = h("span", { class: "muted tabular driver-tally" }, `${d.doneToday}/${d.runsToday} today`);
    return h("li", { class: "driver", dataset: { driverId: d.id, duty: d.onDuty ? "on" : "off" } }, h("div", { class: "driver-head" }, h("span", { class: "driver-name" }, d.name), duty, tally), step);
  }

  return {
    el,
    render(data) {
      const board = data.driverBoard || [];
      el.hidden = board.length === 0;
      syncList(list, board, {
        key: (d) => d.id,
        sig: (d) => rowSig(d),
        build: item,
        empty: () => h("li", { class: "empty" }, "No drivers."),
      });
    },
  };
}
