// The signed-in session as the app knows it: who, in which role, and the idle time-out the
// organisation set. Held in memory only; a reload asks Haven again (the cookie survives a
// reload, the app's memory does not).
import { api, setCsrfToken } from './api';

export type Role =
  | 'patient'
  | 'clinician'
  | 'nurse'
  | 'front_desk'
  | 'privacy_officer'
  | 'auditor'
  | 'administrator';

export interface Session {
  sessionId: string;
  user: string;
  role: Role;
  patient: string | null;
  idleTimeoutSecs: number;
  /** How often Haven records activity: its time-out may strike this much early. */
  activityIntervalSecs: number;
}

/** What `/api/v1/auth/sign-in` and friends answer. */
export interface OpenedSession {
  session_id: string;
  state: 'complete' | 'mfa_required' | 'mfa_setup_required';
  expires_at_ms: number;
  idle_timeout_secs: number;
  csrf_token: string;
}

interface CurrentSession {
  session_id: string;
  state: string;
  user?: string;
  role?: Role;
  patient?: string | null;
  csrf_token?: string;
  idle_timeout_secs?: number;
  activity_interval_secs?: number;
}

/** The session the browser's cookie holds, if it is complete; `null` when signed out. */
export async function currentSession(): Promise<Session | null> {
  let current: CurrentSession;
  try {
    current = await api<CurrentSession>('GET', '/api/v1/auth/session');
  } catch {
    return null;
  }
  if (current.csrf_token) setCsrfToken(current.csrf_token);
  if (current.state !== 'complete' || !current.user || !current.role) return null;
  return {
    sessionId: current.session_id,
    user: current.user,
    role: current.role,
    patient: current.patient ?? null,
    idleTimeoutSecs: current.idle_timeout_secs ?? 15 * 60,
    activityIntervalSecs: current.activity_interval_secs ?? 60,
  };
}

/** Where each role starts. */
export function homeOf(role: Role): string {
  switch (role) {
    case 'patient':
      return '/portal';
    case 'clinician':
    case 'nurse':
    case 'front_desk':
      return '/workspace';
    case 'privacy_officer':
    case 'auditor':
      return '/privacy';
    case 'administrator':
      return '/admin';
  }
}

export const roleNames: Record<Role, string> = {
  patient: 'Patient',
  clinician: 'Clinician',
  nurse: 'Nurse',
  front_desk: 'Front desk',
  privacy_officer: 'Privacy officer',
  auditor: 'Auditor',
  administrator: 'Administrator',
};
