// The one door to the backend: command calls and event subscriptions.
// Event names mirror src-tauri/events.rs (a Rust test checks that they agree).

export const EVENTS = Object.freeze({
  PING: "app://ping",
});

const tauri = window.__TAURI__;

export function invoke(command, args = {}) {
  return tauri.core.invoke(command, args);
}

export function listen(name, handler) {
  return tauri.event.listen(name, (event) => handler(event.payload));
}

export function windowLabel() {
  return tauri.window.getCurrentWindow().label;
}
