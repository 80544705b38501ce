// When the app offers to join a video visit from a list of appointments. Haven decides
// whether the call may be entered (time, status, who); this only avoids offering a link that
// would be refused.

/** A visit's call opens half an hour before its start (as Haven's `VISIT_OPENS_BEFORE_MS`). */
const VISIT_OPENS_BEFORE_MS = 30 * 60 * 1000;
/** And is not offered from the list once its booked end is this far behind. */
const VISIT_OFFERED_AFTER_END_MS = 2 * 60 * 60 * 1000;

/** Booked (or arrived), and its call is open or opens within the half hour. */
export function joinable(appointment: { status: string; start?: string; end?: string }): boolean {
  if (!['booked', 'arrived', 'checked-in'].includes(appointment.status) || !appointment.start) return false;
  const now = Date.now();
  const start = Date.parse(appointment.start);
  const end = appointment.end ? Date.parse(appointment.end) : start;
  return start - VISIT_OPENS_BEFORE_MS <= now && now <= end + VISIT_OFFERED_AFTER_END_MS;
}
