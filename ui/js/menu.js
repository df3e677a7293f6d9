// The Window menu in a dashboard's header: a new window of each dashboard the user may open
// (titles and shortcuts as the backend sends them in `session.dashboards`), the shell's own
// items (Change password…), Close window (also Ctrl+W), and Sign out.

import { COMMANDS, closeWindow, invoke } from "./ipc.js";
import { h } from "./dom.js";

/**
 * Fills `nav` with the menu. `dashboards`: [{ kind, title, shortcut }] in menu order;
 * `current`: this window's kind (shown as such); `more`: [{ text, className, onClick }],
 * items after the dashboards.
 */
export function windowMenu(nav, dashboards, current, more = []) {
  const list = h("div", { class: "menu-list", id: "window-menu-list", role: "menu", hidden: true });
  const toggle = h(
    "button",
    { type: "button", class: "menu-toggle", "aria-haspopup": "menu", "aria-expanded": "false", "aria-controls": "window-menu-list" },
    "Window",
    h("span", { class: "caret", "aria-hidden": "true" }, "▾"),
  );
  const setOpen = (open) => {
    list.hidden = !open;
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) list.querySelector("button")?.focus();
  };
  toggle.addEventListener("click", () => setOpen(list.hidden));
  const item = (text, hint, onClick, extra = {}) =>
    h(
      "button",
      {
        type: "button",
        role: "menuitem",
        class: "menu-item",
        ...extra,
        onClick: () => {
          setOpen(false);
          toggle.focus();
          onClick();
        },
      },
      h("span", null, text),
      hint ? h("span", { class: "menu-hint" }, hint) : null,
    );
  const warn = (err) => console.warn(err);
  list.append(
    ...dashboards
      .filter((d) => d && d.kind)
      .map((d) =>
        item(`New ${d.title} window`, d.shortcut, () => invoke(COMMANDS.OPEN_WINDOW, { kind: d.kind }).catch(warn), {
          dataset: { open: d.kind },
          class: ["menu-item", d.kind === current && "is-current"],
        }),
      ),
    h("div", { class: "menu-sep", role: "separator" }),
    ...more.map((m) => item(m.text, null, m.onClick, { class: ["menu-item", m.className] })),
    item("Close window", "Ctrl+W", () => closeWindow().catch(warn), { class: "menu-item close-window" }),
    item("Sign out", null, () => invoke(COMMANDS.LOGOUT).catch(warn), { class: "menu-item sign-out" }),
  );
  list.addEventListener("keydown", (e) => {
    const buttons = Array.from(list.querySelectorAll("button"));
    const i = buttons.indexOf(document.activeElement);
    if (e.key === "Escape") {
      setOpen(false);
      toggle.focus();
    } else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      const next = (i + (e.key === "ArrowDown" ? 1 : buttons.length - 1)) % buttons.length;
      buttons[next].focus();
    }
  });
  shown = { nav, list, setOpen };
  if (!listening) {
    // Once per page: the menu is filled again when the user's roles change.
    listening = true;
    document.addEventListener("click", (e) => {
      if (shown && !shown.list.hidden && !shown.nav.contains(e.target)) shown.setOpen(false);
    });
    document.addEventListener("keydown", (e) => {
      if ((e.ctrlKey || e.metaKey) && !e.altKey && !e.shiftKey && e.key.toLowerCase() === "w") {
        e.preventDefault();
        closeWindow().catch(warn);
      }
    });
  }
  nav.replaceChildren(toggle, list);
}

/** The menu shown now (the page's listeners act on it), and whether they are set up. */
let shown = null;
let listening = false;
