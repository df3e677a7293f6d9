// The change-password dialog's own check, before the server is asked: the same codes the
// server gives, and the length the backend sends (never a number of its own).

import { test } from "node:test";
import assert from "node:assert/strict";
import { checkNewPassword } from "../js/password.js";

test("two different new passwords are caught first", () => {
  assert.equal(checkNewPassword("a long password", "a long passw0rd", 10).code, "passwords_differ");
  assert.equal(checkNewPassword("short", "other", 10).code, "passwords_differ");
});

test("the length is the one given, counted in characters", () => {
  assert.equal(checkNewPassword("123456789", "123456789", 10).code, "password_too_short");
  assert.match(checkNewPassword("123456789", "123456789", 10).message, /10 characters/);
  assert.equal(checkNewPassword("1234567890", "1234567890", 10), null);
  assert.equal(checkNewPassword("12345", "12345", 5), null);
  // Four characters, eight UTF-16 units: still too short for 5.
  assert.equal(checkNewPassword("😀😀😀😀", "😀😀😀😀", 5).code, "password_too_short");
});
