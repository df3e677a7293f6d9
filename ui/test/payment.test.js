// The payment dialog's reading of an amount as typed, and the payment methods' words as the
// backend sends them (session.words.paymentMethods).
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseCents, wordsFrom } from "../js/format.js";

test("an amount as typed becomes cents, or null when it is not one", () => {
  assert.equal(parseCents("80"), 8000);
  assert.equal(parseCents("80.5"), 8050);
  assert.equal(parseCents(" 1,234.50 "), 123450);
  assert.equal(parseCents("0.05"), 5);
  assert.equal(parseCents("12."), 1200);
  assert.equal(parseCents("1,234,567"), 123456700);
  assert.equal(parseCents("999,999,999,999.99"), 99999999999999);
  // A comma only as a thousands separator: a decimal comma or a stray one is not an amount.
  const commas = ["12,50", "12,5", "1,2345", ",123", "123,", "1,,234", "1,234,56", "1 234"];
  for (const bad of ["", "  ", "-5", "1.234", "abc", "1e3", "12,5.0.1", null, undefined, ...commas]) {
    assert.equal(parseCents(bad), null, String(bad));
  }
});

test("payment methods come from the backend, in its order", () => {
  const w = wordsFrom({ paymentMethods: { cash: "Cash", card: "Card", insurance: "Insurance", other: "Other" } });
  assert.deepEqual(
    w.paymentMethods.map((m) => m.value),
    ["cash", "card", "insurance", "other"],
  );
  assert.equal(w.paymentMethods[1].label, "Card");
  assert.deepEqual(wordsFrom({}).paymentMethods, []);
});
