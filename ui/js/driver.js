// Driver dashboard: my runs as the backend lists them (upcoming and earlier), each with the
// actions its row carries (confirm pickup, start journey, mark arrived).

import { startDashboard } from "./shell.js";
import { h, setText, syncList } from "./dom.js";
import { bookingCard, dayHeader } from "./bookings.js";
import { itemKey, rowSig, toDoOn, withDayHeaders } from "./rows.js";

startDashboard({ spec: { dashboard: "driver" }, build });

function build(ctx) {
  const { main } = ctx;
  const next = h("ul", { class: "booking-list", "aria-label": "My runs" }, h("li", { class: "placeholder" }, "Loading runs…"));
  const earlier = h("ul", { class: "booking-list", "aria-label": "Earlier runs" });
  const earlierBox = h("details", { class: "earlier" }, h("summary", null, "Earlier runs"), earlier);
  const summary = h("span", { class: "muted tabular" }, "");
  main.append(h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", null, "My runs"), summary), next, earlierBox));

  const opts = (emptyText, today) => ({
    key: itemKey,
    sig: (item) => (item.header ? `${item.label}|${item.count}` : rowSig(item, today)),
    build: (item) => (item.header ? dayHeader(item) : bookingCard(ctx, item, { today, show: { driver: false, day: false } })),
    empty: () => h("li", { class: "empty" }, emptyText),
  });

  function render({ data: d }) {
    const today = d.today;
    // A run still to do is one whose row offers the driver a step now.
    const n = toDoOn(d.upcoming, today);
    setText(summary, n === 1 ? "1 run to do today" : `${n} runs to do today`);
    syncList(next, withDayHeaders(d.upcoming, today), opts("No runs today or later.", today));
    syncList(earlier, withDayHeaders(d.earlier, today), opts("No earlier runs.", today));
    earlierBox.hidden = d.earlier.length === 0;
  }

  return { render };
}
