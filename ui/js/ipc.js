// The one door to the backend: command calls and event subscriptions. Every name mirrors
// src-tauri/ipc.rs (a Rust test checks that each one is here). What the commands answer:
//   session / login -> SessionDto { user, server, lastUsername, window: { label, kind, title },
//                      dashboards: [{ kind, title, shortcut }], measure, words }
//   load { view }   -> ViewData { seq, kinds, status, today, ...the dashboard's rows }
//   submit { mutation } -> { mutationId }; refused at once with { code, message }
// Events: CHANGES { from, to, kinds, reset }, STATUS StatusPayload,
//   REJECTION { origin, mutationId, code, message, detail }, NOTICE { title, body, kind }.

export const EVENTS = Object.freeze({
  CHANGES: "cache://changes",
  STATUS: "sync://status",
  REJECTION: "sync://rejection",
  NOTICE: "app://notice",
});

export const COMMANDS = Object.freeze({
  SESSION: "session",
  LOGIN: "login",
  LOGOUT: "logout",
  LOAD: "load",
  SUBMIT: "submit",
  OPEN_WINDOW: "open_window",
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
