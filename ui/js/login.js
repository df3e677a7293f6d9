// The login window: server address, username, password. The form is prefilled from what
// the backend remembers (`session.server`, `session.lastUsername`); the page itself stores
// nothing, and the password is never stored anywhere. On success the backend closes this
// window and opens the dashboards. A one-time password (a new account's, or one an
// administrator reset) is refused with `password_change_required`: the form then asks for
// a password of the user's own, which the next sign-in sets.

import { COMMANDS, invoke, windowLabel } from "./ipc.js";
import { h, field, setText } from "./dom.js";
import { checkNewPassword } from "./password.js";

async function main() {
  const body = document.body;
  try {
    body.dataset.window = windowLabel();
  } catch {
    body.dataset.window = "login";
  }

  // Text, not type="url": a clinic server with several instances is several addresses,
  // separated by commas (the backend reads the list; the first is preferred).
  const server = h("input", { name: "server", id: "server", type: "text", inputmode: "url", required: true, autocomplete: "url", placeholder: "https://clinic.example.org", spellcheck: "false", autocapitalize: "off", title: "The clinic server's address; several, separated by commas, if it has more than one" });
  const username = h("input", { name: "username", id: "username", type: "text", required: true, autocomplete: "username", spellcheck: "false", autocapitalize: "off" });
  const password = h("input", { name: "password", id: "password", type: "password", required: true, autocomplete: "current-password" });
  const newPassword = h("input", { name: "new-password", id: "new-password", type: "password", autocomplete: "new-password" });
  const repeat = h("input", { name: "repeat-password", id: "repeat-password", type: "password", autocomplete: "new-password" });
  const choose = h("div", { class: "choose-password", hidden: true }, field("New password", newPassword), field("New password again", repeat));
  const error = h("p", { class: "form-error", role: "alert", id: "login-error" });
  // The backend's words when the address is http:// off this computer (clear text).
  const warning = h("p", { class: "form-warning", role: "status", id: "server-warning" });
  const submit = h("button", { type: "submit", class: "btn btn-primary btn-wide" }, "Sign in");
  const form = h(
    "form",
    { id: "login", class: "login-form", "aria-labelledby": "login-title" },
    h("div", { class: "login-brand" }, h("span", { class: "app-name" }, "Clinic Desk"), h("h1", { id: "login-title" }, "Sign in")),
    field("Server address", server),
    warning,
    field("Username", username),
    field("Password", password),
    choose,
    error,
    submit,
    h("p", { class: "hint" }, "Your password is never stored on this computer."),
  );
  body.replaceChildren(h("main", { class: "login-page" }, form));

  // The fewest characters of a new password: the backend's (the server's own limit).
  let minChars = 0;
  // Prefilled before the page says it is ready, so nothing typed meanwhile is overwritten.
  try {
    const s = await invoke(COMMANDS.SESSION);
    if (s && s.minPasswordChars) minChars = s.minPasswordChars;
    if (s && s.window && s.window.title) document.title = s.window.title;
    if (s && s.server) server.value = s.server;
    if (s && s.lastUsername) username.value = s.lastUsername;
    setText(warning, (s && s.serverWarning) || "");
  } catch {
    /* the form works without a prefill */
  }
  // Asked again for each address typed: whether it is safe is the backend's to say.
  server.addEventListener("change", async () => {
    const asked = server.value.trim();
    try {
      const s = await invoke(COMMANDS.SESSION, { server: asked });
      if (server.value.trim() === asked) setText(warning, (s && s.serverWarning) || "");
    } catch {
      setText(warning, "");
    }
  });
  (server.value ? (username.value ? password : username) : server).focus();

  let busy = false;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (busy) return;
    setText(error, "");
    busy = true;
    submit.disabled = true;
    setText(submit, "Signing in…");
    const changing = !choose.hidden;
    const wrong = changing ? checkNewPassword(newPassword.value, repeat.value, minChars) : null;
    if (wrong) {
      setText(error, wrong.message);
      error.dataset.code = wrong.code;
      busy = false;
      submit.disabled = false;
      setText(submit, "Set password and sign in");
      (wrong.code === "passwords_differ" ? repeat : newPassword).focus();
      return;
    }
    try {
      const args = { server: server.value.trim(), username: username.value.trim(), password: password.value };
      if (changing) args.newPassword = newPassword.value;
      await invoke(COMMANDS.LOGIN, args);
      for (const input of [password, newPassword, repeat]) input.value = "";
      setText(submit, "Opening dashboards…");
    } catch (err) {
      setText(error, err.message || "Could not sign in.");
      error.dataset.code = err.code || "internal";
      submit.disabled = false;
      busy = false;
      if (err.code === "password_change_required") {
        choose.hidden = false;
        newPassword.required = repeat.required = true;
      }
      setText(submit, choose.hidden ? "Sign in" : "Set password and sign in");
      if (!choose.hidden && err.code !== "unauthorized") {
        newPassword.focus();
        return;
      }
      (err.code === "unauthorized" ? password : server).focus();
      if (err.code === "unauthorized") password.select();
    }
  });
  body.dataset.ready = "true";
}

main();
