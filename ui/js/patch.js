// Applies a view patch from the backend (src-tauri/patch.rs has the format) to the view a
// window holds. Whatever the patch does not touch keeps its identity (the same object), so
// a dashboard can tell an unchanged row by `===` and leave its element alone. Pure: node
// tests it (ui/test/patch.test.js).

/**
 * applyPatch(old, patch) -> the new value. `old` is never modified.
 * Throws on a patch that does not fit `old` (the caller then loads the whole view).
 */
export function applyPatch(old, patch) {
  if (patch === null || patch === undefined) return old;
  if (Object.prototype.hasOwnProperty.call(patch, "=")) return patch["="];
  if (patch.o) {
    if (old === null || typeof old !== "object" || Array.isArray(old)) throw new Error("view patch: not an object");
    const out = { ...old };
    for (const [field, p] of Object.entries(patch.o)) out[field] = applyPatch(old[field], p);
    return out;
  }
  if (Array.isArray(patch.l)) {
    if (!Array.isArray(old)) throw new Error("view patch: not a list");
    const at = (i) => {
      if (!Number.isInteger(i) || i < 0 || i >= old.length) throw new Error("view patch: no such row");
      return old[i];
    };
    return patch.l.map((e) => {
      if (typeof e === "number") return at(e);
      if (Object.prototype.hasOwnProperty.call(e, "=")) return e["="];
      return applyPatch(at(e.i), e.p);
    });
  }
  throw new Error("view patch: unknown form");
}
