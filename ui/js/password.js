// The change-password dialog every dashboard has (Window menu, "Change password…"): the
// current password, the new one twice. The fewest characters comes from the backend
// (`session.minPasswordChars`, the server's own limit); the server judges the rest and its
// refusal is shown in the dialog, with nothing typed cleared. On success this app stays
// signed in (the server ends the user's other sessions only).

import { COMMANDS, invoke } from "./ipc.js";
import { h, field, setText } from "./dom.js";

/**
 * What is wrong with a new password before the server is asked, or null:
 * { code, message } with the codes the server would give (or passwords_differ).
 */
export function checkNewPassword(fresh, repeat, minChars) {
  if (fresh !== repeat) return { code: "passwords_differ", message: "The two new passwords differ." };
  if ([...fresh].length < minChars) {
    return { code: "password_too_short", message: `A new password has at least ${minChars} characters.` };
  }
  return null;
}

/** passwordDialog({ minChars }) -> { open() }: the dialog, added to the page once. */
export function passwordDialog({ minChars }) {
  const input = (name, autocomplete) => h("input", { name, type: "password", autocomplete, required: true });
  const current = input("current", "current-password");
  const fresh = input("new", "new-password");
  const repeat = input("repeat", "new-password");
  fresh.minLength = minChars;
  const error = h("p", { class: "form-error", role: "alert", id: "password-error" });
  const done = h("p", { class: "form-ok", role: "status", id: "password-done" });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Change password");
  const close = h("button", { type: "button", class: "btn btn-quiet", onClick: () => dialog.close() }, "Cancel");
  const form = h(
    "form",
    { id: "change-password", class: "form dialog-form", "aria-labelledby": "change-password-title" },
    h("h2", { id: "change-password-title" }, "Change password"),
    field("Current password", current),
    field("New password", fresh),
    field("New password again", repeat),
    h("p", { class: "hint" }, `At least ${minChars} characters. Your other sessions will be signed out; this one goes on.`),
    error,
    done,
    h("div", { class: "form-buttons" }, submit, close),
  );
  const dialog = h("dialog", { class: "dialog", id: "password-dialog", dataset: { state: "closed" } }, form);
  dialog.addEventListener("close", () => {
    dialog.dataset.state = "closed";
    // Closed by Cancel or Esc too: what was typed does not stay in the page.
    form.reset();
  });
  document.body.appendChild(dialog);

  let busy = false;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (busy) return;
    setText(error, "");
    setText(done, "");
    const wrong = checkNewPassword(fresh.value, repeat.value, minChars);
    if (wrong) {
      setText(error, wrong.message);
      error.dataset.code = wrong.code;
      (wrong.code === "passwords_differ" ? repeat : fresh).focus();
      return;
    }
    busy = true;
    submit.disabled = true;
    dialog.dataset.state = "busy";
    try {
      await invoke(COMMANDS.CHANGE_PASSWORD, { current: current.value, new: fresh.value });
      // Passwords are not kept in the page any longer than needed.
      form.reset();
      delete error.dataset.code;
      setText(done, "Your password was changed. Your other sessions were signed out.");
      setText(close, "Close");
      dialog.dataset.state = "done";
      close.focus();
    } catch (err) {
      setText(error, err.message || "The password could not be changed.");
      error.dataset.code = err.code || "internal";
      dialog.dataset.state = "error";
      (err.code === "wrong_password" ? current : fresh).focus();
    } finally {
      busy = false;
      submit.disabled = false;
    }
  });

  return {
    open() {
      if (dialog.open) return;
      setText(error, "");
      setText(done, "");
      delete error.dataset.code;
      setText(close, "Cancel");
      dialog.dataset.state = "open";
      dialog.showModal();
      current.focus();
    },
  };
}
