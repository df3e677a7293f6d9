// Driver dashboard: my on-duty / off-duty switch (what the operators' Drivers panel shows),
// and my runs as the backend lists them (upcoming and earlier), each with the actions its
// row carries (confirm pickup, start journey, mark arrived).

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
  // The duty switch: the state the view says (pending included), and the button to change it.
  let onDuty = null;
  const dutyState = h("span", { class: "chip duty", id: "duty-state", dataset: { duty: "off" } }, ctx.words.duty(false));
  const dutyButton = h("button", { type: "button", class: "btn", id: "duty-toggle", disabled: true }, ctx.words.dutyStep(true));
  dutyButton.addEventListener("click", () => {
    if (onDuty === null || dutyButton.disabled) return;
    dutyButton.disabled = true;
    ctx.submit({ op: "set_on_duty", staff_id: ctx.user.id, on_duty: !onDuty }).catch(() => {
      dutyButton.disabled = false;
    });
  });
  const duty = h("section", { class: "panel duty-switch", "aria-label": "Duty" }, h("h2", null, "Duty"), dutyState, dutyButton);
  main.append(duty, h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", null, "My runs"), summary), next, earlierBox));

  const opts = (emptyText, today) => ({
    key: itemKey,
    sig: (item) => (item.header ? `${item.label}|${item.count}` : rowSig(item, today)),
    build: (item) => (item.header ? dayHeader(item) : bookingCard(ctx, item, { today, show: { driver: false, day: false } })),
    empty: () => h("li", { class: "empty" }, emptyText),
  });

  function render({ data: d }) {
    const today = d.today;
    if (typeof d.onDuty === "boolean" && d.onDuty !== onDuty) {
      onDuty = d.onDuty;
      dutyState.dataset.duty = onDuty ? "on" : "off";
      setText(dutyState, ctx.words.duty(onDuty));
      setText(dutyButton, ctx.words.dutyStep(!onDuty));
      dutyButton.disabled = false;
    } else if (onDuty !== null && typeof d.onDuty === "boolean") {
      dutyButton.disabled = false;
    }
    // A run still to do is one whose row offers the driver a step now.
    const n = toDoOn(d.upcoming, today);
    setText(summary, n === 1 ? "1 run to do today" : `${n} runs to do today`);
    syncList(next, withDayHeaders(d.upcoming, today), opts("No runs today or later.", today));
    syncList(earlier, withDayHeaders(d.earlier, today), opts("No earlier runs.", today));
    earlierBox.hidden = d.earlier.length === 0;
  }

  return { render };
}
