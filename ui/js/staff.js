// Staff pickers shared by the dashboards.

import { canManageSlot } from "./rules.js";

/** Options of staff holding `role`, optionally with a "none" first entry. */
export function staffOptions(store, role, none) {
  const opts = none != null ? [{ value: "", label: none }] : [];
  return opts.concat(store.withRole(role).map((s) => ({ value: s.id, label: s.display_name })));
}

/** Therapists whose availability `user` may manage. */
export function staffOptionsFor(store, user) {
  return store
    .withRole("therapist")
    .filter((s) => canManageSlot(user, s.id))
    .map((s) => ({ value: s.id, label: s.display_name }));
}
