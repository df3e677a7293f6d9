// Building DOM without HTML strings: text only ever goes in through text nodes.

const BOOLEAN_PROPS = new Set(["disabled", "checked", "selected", "required", "hidden", "readOnly", "multiple", "autofocus"]);
const FORBIDDEN_ATTRS = new Set(["style", "srcdoc", "innerhtml", "outerhtml"]);

/**
 * h("button", { class: "btn", type: "button", dataset: { action: "accept" }, onClick: fn }, "Accept")
 * Children: strings and numbers become text nodes, arrays are flattened, null/false skipped.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false && !BOOLEAN_PROPS.has(name)) continue;
      if (name === "class" || name === "className") {
        el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : String(value);
      } else if (name === "dataset") {
        for (const [k, v] of Object.entries(value)) if (v !== undefined && v !== null) el.dataset[k] = String(v);
      } else if (name === "style") {
        // Only property-wise (allowed by the CSP), never a style attribute.
        for (const [k, v] of Object.entries(value)) el.style[k] = v;
      } else if (name.startsWith("on") && typeof value === "function") {
        el.addEventListener(name.slice(2).toLowerCase(), value);
      } else if (name === "for") {
        el.htmlFor = String(value);
      } else if (name === "value") {
        el.value = String(value);
      } else if (BOOLEAN_PROPS.has(name)) {
        el[name] = Boolean(value);
      } else if (name.startsWith("on") || FORBIDDEN_ATTRS.has(name.toLowerCase())) {
        throw new Error(`h(): refusing attribute ${name}`);
      } else {
        el.setAttribute(name, value === true ? "" : String(value));
      }
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false || child === true) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replaces all children of `el` with `children` (same rules as h). */
export function replaceChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Sets text only when it differs (keeps the DOM quiet). */
export function setText(el, text) {
  const s = String(text);
  if (el.textContent !== s) el.textContent = s;
}

/**
 * Keyed list reconciliation: one element per item, reused while its signature is unchanged,
 * rebuilt when it changes, in the order of `items`. Focus inside a rebuilt element moves to
 * the matching control of its replacement (same data-action / name / data-focus-key).
 *   syncList(ul, bookings, { key: b => b.id, sig: b => ..., build: b => h(...), empty: () => h(...) })
 */
export function syncList(container, items, { key, sig, build, empty }) {
  const old = new Map();
  for (const child of Array.from(container.children)) {
    if (child.__key !== undefined) old.set(child.__key, child);
    else child.remove();
  }
  let prev = null;
  const seen = new Set();
  for (const item of items) {
    const k = key(item);
    if (seen.has(k)) continue;
    seen.add(k);
    const s = sig(item);
    let el = old.get(k);
    if (!el || el.__sig !== s) {
      const fresh = build(item);
      fresh.__key = k;
      fresh.__sig = s;
      if (el) {
        const focus = focusKey(el);
        el.replaceWith(fresh);
        if (focus) refocus(fresh, focus);
      }
      el = fresh;
    }
    old.delete(k);
    const want = prev ? prev.nextSibling : container.firstChild;
    if (want !== el) container.insertBefore(el, want);
    prev = el;
  }
  for (const el of old.values()) el.remove();
  if (items.length === 0 && empty) {
    const e = empty();
    container.appendChild(e);
  }
}

function focusKey(el) {
  const a = document.activeElement;
  if (!a || !el.contains(a) || a === el) return null;
  if (a.dataset && a.dataset.action) return `[data-action="${a.dataset.action}"]`;
  if (a.dataset && a.dataset.focusKey) return `[data-focus-key="${a.dataset.focusKey}"]`;
  if (a.name) return `[name="${a.name}"]`;
  return null;
}

function refocus(el, selector) {
  const target = el.querySelector(selector);
  if (target) target.focus({ preventScroll: true });
}

/** A labelled form field: <label><span>Label</span><input ...></label> */
export function field(label, control, extraClass) {
  return h("label", { class: ["field", extraClass] }, h("span", { class: "field-label" }, label), control);
}

/** <select> with options [{ value, label }], keeping `selected`. */
export function select(attrs, options, selected) {
  const el = h("select", attrs);
  fillSelect(el, options, selected);
  return el;
}

/** Refills a select's options, keeping the current choice if it still exists. */
export function fillSelect(el, options, selected = el.value) {
  const sig = JSON.stringify(options);
  if (el.__opts !== sig) {
    el.replaceChildren(...options.map((o) => h("option", { value: o.value }, o.label)));
    el.__opts = sig;
  }
  const want = selected ?? "";
  el.value = options.some((o) => o.value === want) ? want : options.length ? options[0].value : "";
}
