// Pure helpers over the rows the backend sends (BookingRow, SlotRow, MessageRow, Person,
// lanes): list signatures, day headers, picker options. They arrange what the backend
// decided; they decide nothing about bookings themselves. No DOM, so node tests them.

import { dayName, isoDate } from "./format.js";

// A row's JSON, made once per row object: a view patch (patch.js) keeps the rows it did not
// touch as the same objects, so after a change only the changed rows are serialised again.
const rowJson = new WeakMap();

/**
 * A row's signature for dom.js's syncList: everything the backend sent for it (record,
 * pending, actions, names, flags) plus whatever local state the row shows (`extra`).
 * Same signature, same element: the row is not rebuilt.
 */
export function rowSig(row, ...extra) {
  let json = rowJson.get(row);
  if (json === undefined) {
    json = JSON.stringify(row);
    rowJson.set(row, json);
  }
  return extra.length ? `${json}|${JSON.stringify(extra)}` : json;
}

/** The key of a list item: a row's record id, or a day header's "day:<date>". */
export function itemKey(item) {
  return item.header ? `day:${item.header}` : item.record.id;
}

/**
 * Booking rows (already in the backend's order) with a header before each new day:
 * { header: "2026-11-22", label: "Today", count: 3 } then the rows of that day.
 */
export function withDayHeaders(rows, today) {
  const counts = new Map();
  for (const r of rows) counts.set(r.record.date, (counts.get(r.record.date) || 0) + 1);
  const out = [];
  let day = null;
  for (const r of rows) {
    if (r.record.date !== day) {
      day = r.record.date;
      out.push({ header: day, label: dayName(day, today), count: counts.get(day) });
    }
    out.push(r);
  }
  return out;
}

/** How many of `rows` are on `today` and still offer the user something to do. */
export function toDoOn(rows, today) {
  return rows.filter((r) => r.record.date === today && Array.isArray(r.actions) && r.actions.length > 0).length;
}

/** Picker options from Person-like entries ({ id, name }), optionally with a "none" first. */
export function personOptions(people, none) {
  const opts = none != null ? [{ value: "", label: none }] : [];
  return opts.concat((people || []).map((p) => ({ value: p.id, label: p.name })));
}

/** A thread's message rows (oldest first) with a header before each new local day. */
export function threadItems(rows) {
  const out = [];
  let day = null;
  for (const r of rows) {
    const d = isoDate(new Date(r.record.sent_at));
    if (d !== day) {
      day = d;
      out.push({ header: d });
    }
    out.push(r);
  }
  return out;
}

/** A lane's slots and bookings on `day`, by start time (a slot before a booking at the same time). */
export function cellItems(lane, day) {
  const items = [
    ...(lane.slots || []).filter((r) => r.record.date === day).map((row) => ({ kind: "slot", row })),
    ...(lane.bookings || []).filter((r) => r.record.date === day).map((row) => ({ kind: "booking", row })),
  ];
  return items.sort(
    (a, b) => String(a.row.record.start).localeCompare(String(b.row.record.start)) || (a.kind === b.kind ? 0 : a.kind === "slot" ? -1 : 1),
  );
}
