// Checks over the front end's source that need no browser: every import names an export
// that exists, user text never goes in as HTML, probes and storage stay where they belong,
// and no page keeps a copy of the backend's rules.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const UI = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const JS = join(UI, "js");
const modules = readdirSync(JS).filter((f) => f.endsWith(".js"));
const source = (file) => readFileSync(join(JS, file), "utf8");
const pages = readdirSync(UI).filter((f) => f.endsWith(".html"));

function exportsOf(text) {
  const names = new Set();
  for (const m of text.matchAll(/export\s+(?:async\s+)?(?:function\*?|const|let|class)\s+([A-Za-z_$][\w$]*)/g)) names.add(m[1]);
  return names;
}

test("every import names a module and exports that exist", () => {
  for (const file of modules) {
    for (const m of source(file).matchAll(/import\s*\{([^}]*)\}\s*from\s*"(\.\/[^"]+)"/g)) {
      const target = join(JS, m[2]);
      assert.ok(existsSync(target), `${file} imports ${m[2]}, which does not exist`);
      const have = exportsOf(readFileSync(target, "utf8"));
      for (const raw of m[1].split(",")) {
        const name = raw.trim().split(/\s+as\s+/)[0];
        if (name) assert.ok(have.has(name), `${file} imports ${name} from ${m[2]}, which does not export it`);
      }
    }
  }
});

test("the hand-kept copies of the backend are gone", () => {
  for (const gone of ["rules.js", "store.js", "staff.js"]) assert.equal(existsSync(join(JS, gone)), false, `${gone} is back`);
  for (const file of modules) {
    const text = source(file);
    assert.doesNotMatch(text, /load_view|KIND_TITLES|KIND_SHORTCUTS|ACTION_LABELS|tone-/, `${file} keeps a copy`);
  }
});

test("user text never goes in as HTML", () => {
  for (const file of modules) {
    assert.doesNotMatch(source(file), /innerHTML|outerHTML|insertAdjacentHTML|document\.write/, file);
  }
  for (const page of pages) {
    const html = readFileSync(join(UI, page), "utf8");
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, `${page} has an inline script`);
    assert.doesNotMatch(html, /\son[a-z]+=|\sstyle=/i, `${page} has an inline handler or style`);
  }
});

test("no page stores anything, and only probes.js makes probes", () => {
  for (const file of modules) {
    const text = source(file);
    assert.doesNotMatch(text, /localStorage|sessionStorage/, `${file} uses web storage`);
    if (file !== "probes.js") assert.doesNotMatch(text, /__clinic/, `${file} touches window.__clinic`);
  }
});

test("ipc.js names the load command and every event", () => {
  const ipc = source("ipc.js");
  for (const name of ["session", "login", "logout", "load", "submit", "open_window", "sync://status", "sync://rejection", "app://notice"]) {
    assert.ok(ipc.includes(`"${name}"`), `ipc.js lacks ${name}`);
  }
});
