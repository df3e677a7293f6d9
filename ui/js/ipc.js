// The one door to the backend: command calls and event subscriptions. Every name mirrors
// src-tauri/ipc.rs (a Rust test checks that each one is here). What the commands answer:
//   session { server? } / login { server, username, password, newPassword? } -> SessionDto { user, server, serverWarning (about the server
//                      asked about, if any), lastUsername, window: { label, kind, title },
//                      dashboards: [{ kind, title, shortcut }], measure, words }
//   load { view, base, updates } -> { rev, data: ViewData { seq, kinds, status, today, ...rows } }
//                      or, when base names the read the window holds, { rev, base, patch };
//                      then every change batch on the `updates` channel (see view.js)
//   submit { mutation } -> { mutationId }; refused at once with { code, message }
//   rejections -> [RejectionPayload]: refusals this window has to tell, not yet seen (kept
//                      across restarts); seen_rejection { mutationId }: the user saw one
//   sign_in_again { password, newPassword? } -> null: the same user, after the session ended
//   change_password { current, new } -> null (this app stays signed in)
//   create_staff { staff: { username, displayName, roles } }, change_staff { id, version,
//                      roles?, disabled? }, reset_password { id } (Staff dashboard only)
//                      -> { staff, oneTimePassword } (the password only when one was made)
// SessionDto also has minPasswordChars and notice (a NOTICE held for this window, once).
// Events: STATUS StatusPayload,
//   REJECTION { origin, mutationId, code, message, detail, on, mutation, reopen, open }, NOTICE { title, body, kind, to? }
//   (`to`: the one window that shows it), CHANGE_PASSWORD label (that window opens the
//   change-password dialog), ROLES_CHANGED [role] (ask for the session again).

export const EVENTS = Object.freeze({
  STATUS: "sync://status",
  REJECTION: "sync://rejection",
  NOTICE: "app://notice",
  CHANGE_PASSWORD: "app://change-password",
  ROLES_CHANGED: "app://roles-changed",
});

export const COMMANDS = Object.freeze({
  SESSION: "session",
  LOGIN: "login",
  LOGOUT: "logout",
  LOAD: "load",
  SUBMIT: "submit",
  REJECTIONS: "rejections",
  SEEN_REJECTION: "seen_rejection",
  OPEN_WINDOW: "open_window",
  CHANGE_PASSWORD: "change_password",
  CREATE_STAFF: "create_staff",
  CHANGE_STAFF: "change_staff",
  RESET_PASSWORD: "reset_password",
  SIGN_IN_AGAIN: "sign_in_again",
});

function tauri() {
  const t = window.__TAURI__;
  if (!t) throw new Error("Clinic Desk must run inside the desktop app.");
  return t;
}

/** Calls a backend command. Rejects with `{ code, message }`. */
export function invoke(command, args = {}) {
  return tauri().core.invoke(command, args).catch((err) => {
    throw normalizeError(err);
  });
}

/** Subscribes to a broadcast; resolves to an unlisten function. */
export function listen(name, handler) {
  return tauri().event.listen(name, (event) => handler(event.payload));
}

/** A channel for a command to send this window messages on, each handed to `handler`. */
export function channel(handler) {
  const ch = new (tauri().core.Channel)();
  ch.onmessage = handler;
  return ch;
}

/** Closes this window as its title bar's close button would (the last one quits the app). */
export function closeWindow() {
  return tauri().window.getCurrentWindow().close();
}

export function windowLabel() {
  return tauri().window.getCurrentWindow().label;
}

/** Errors from commands are `{ code, message }`; anything else is wrapped to look alike. */
export function normalizeError(err) {
  if (err && typeof err === "object" && typeof err.message === "string") {
    return { code: typeof err.code === "string" ? err.code : "internal", message: err.message };
  }
  return { code: "internal", message: typeof err === "string" ? err : "Something went wrong." };
}
