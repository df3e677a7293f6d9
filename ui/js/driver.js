// Driver dashboard: my runs (confirm pickup, start journey, mark arrived).

import { startDashboard } from "./shell.js";
import { h, setText, syncList } from "./dom.js";
import { todayISO } from "./format.js";
import { actionsFor } from "./rules.js";
import { bookingCard, byTime, cardSig, dayHeader, withDayHeaders } from "./bookings.js";

startDashboard({ kind: "driver", build });

const ACTIVE = ["confirmed", "pickup_confirmed", "en_route", "arrived"];

function build(ctx) {
  const { store, user, main } = ctx;
  const next = h("ul", { class: "booking-list", "aria-label": "My runs" }, h("li", { class: "placeholder" }, "Loading runs…"));
  const earlier = h("ul", { class: "booking-list", "aria-label": "Earlier runs" });
  const earlierBox = h("details", { class: "earlier" }, h("summary", null, "Earlier runs"), earlier);
  const summary = h("span", { class: "muted tabular" }, "");
  main.append(h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", null, "My runs"), summary), next, earlierBox));

  const opts = (emptyText) => ({
    key: (item) => (item.header ? `day:${item.header}` : item.record.id),
    sig: (item) => (item.header ? `${item.label}|${item.count}` : cardSig(ctx, item)),
    build: (item) =>
      item.header
        ? dayHeader(item.label, item.count)
        : bookingCard(ctx, item, { actions: actionsFor("driver", user, item.record), show: { driver: false, day: false } }),
    empty: () => h("li", { class: "empty" }, emptyText),
  });

  function render() {
    const today = todayISO();
    const mine = store.bookings().filter((e) => e.record.driver_id === user.id).sort(byTime);
    const upcoming = mine.filter((e) => e.record.date >= today);
    const past = mine.filter((e) => e.record.date < today).reverse();
    const active = upcoming.filter((e) => e.record.date === today && ACTIVE.includes(e.record.status)).length;
    setText(summary, active === 1 ? "1 run to do today" : `${active} runs to do today`);
    syncList(next, withDayHeaders(upcoming, today), opts("No runs today or later."));
    syncList(earlier, withDayHeaders(past, today), opts("No earlier runs."));
    earlierBox.hidden = past.length === 0;
  }

  return { render };
}
