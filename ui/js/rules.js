// What the user may do to a booking in its current status: a mirror of
// crates/clinic-protocol/src/rules.rs (booking_action, reschedule, assign, may_manage_slot).
// Only used to decide which buttons to show; the server always has the last word.

export const BEFORE_SESSION = Object.freeze(["requested", "confirmed", "declined", "pickup_confirmed", "en_route", "arrived"]);
export const HOLDS_THERAPIST = Object.freeze(["confirmed", "pickup_confirmed", "en_route", "arrived", "in_session"]);

export function has(user, role) {
  return Boolean(user && Array.isArray(user.roles) && user.roles.includes(role));
}

export function isOperator(user) {
  return has(user, "operator") || has(user, "admin");
}

export function managesSchedule(user) {
  return isOperator(user) || has(user, "scheduler");
}

export function beforeSession(status) {
  return BEFORE_SESSION.includes(status);
}

/** Every life-cycle action `user` may take on `booking` now, in display order. */
export function allowedActions(user, booking) {
  if (!user || !booking) return [];
  const s = booking.status;
  const myTherapy = booking.therapist_id === user.id && has(user, "therapist");
  const myRun = booking.driver_id === user.id && has(user, "driver");
  const operator = isOperator(user);
  const out = [];
  if (myTherapy && s === "requested") out.push("accept");
  if (myTherapy && (s === "requested" || s === "confirmed")) out.push("decline");
  if (myRun && s === "confirmed") out.push("confirm_pickup");
  if (myRun && s === "pickup_confirmed") out.push("start_journey");
  if (myRun && s === "en_route") out.push("mark_arrived");
  if ((myTherapy || operator) && (s === "arrived" || (s === "confirmed" && !booking.driver_id))) out.push("start_session");
  if ((myTherapy || operator) && s === "in_session") out.push("complete");
  if (operator && s === "completed" && booking.payment === "unpaid") out.push("verify_payment");
  if (operator && beforeSession(s)) out.push("cancel");
  return out;
}

/** The actions a dashboard offers: what the rules allow, limited to that dashboard's job. */
export const DASHBOARD_ACTIONS = Object.freeze({
  operator: ["start_session", "complete", "verify_payment", "cancel"],
  therapist: ["accept", "decline", "start_session", "complete"],
  driver: ["confirm_pickup", "start_journey", "mark_arrived"],
  scheduling: [],
});

export function actionsFor(kind, user, booking) {
  const mine = DASHBOARD_ACTIONS[kind] || [];
  return allowedActions(user, booking).filter((a) => mine.includes(a));
}

/** Reschedule and reassign: schedule managers, before the session. */
export function canEdit(user, booking) {
  return managesSchedule(user) && beforeSession(booking.status);
}

export function canManageSlot(user, staffId) {
  return managesSchedule(user) || (user && user.id === staffId && has(user, "therapist"));
}

export function canCreateBooking(user) {
  return managesSchedule(user);
}
