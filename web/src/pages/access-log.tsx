// "Who accessed my record": every access to the patient's data, from the tamper-evident
// audit log, newest first. Emergency (break-the-glass) access is set apart so it is seen.
import { useState } from 'preact/hooks';
import { api } from '../api';
import { type Role, roleNames } from '../session';
import { ErrorNote, Page, Show, useLoad, when } from '../ui';

export interface AccessEntry {
  seq: number;
  at: string;
  actor: string | null;
  role: string | null;
  action: string;
  resource_type: string | null;
  resource_id: string | null;
  outcome: 'allowed' | 'denied';
  reason: string;
  purpose_of_use: string | null;
}

interface AccessLog {
  items: AccessEntry[];
  next: string | null;
}

/** Entries per page of the full log. */
const ACCESS_LOG_PAGE = 50;

export function useAccessLog(patient: string, limit: number) {
  return useLoad(() => api<AccessLog>('GET', `/api/v1/patients/${patient}/access-log?limit=${limit}`), [patient, limit]);
}

const actions: Record<string, string> = {
  read: 'Viewed',
  search: 'Searched',
  create: 'Added',
  update: 'Changed',
  delete: 'Removed',
  export: 'Downloaded',
  print: 'Printed',
  break_glass: 'Emergency access',
  consent_change: 'Changed a consent',
  audit_query: 'Looked at the access log',
  login: 'Signed in',
  logout: 'Signed out',
  failed_login: 'A failed sign-in',
  mfa_change: 'Changed how they sign in',
  privilege_change: 'Changed access rights',
};

const resourceNames: Record<string, string> = {
  Patient: 'your details',
  Observation: 'results and measurements',
  Condition: 'conditions',
  MedicationRequest: 'medications',
  AllergyIntolerance: 'allergies',
  DocumentReference: 'documents',
  DiagnosticReport: 'reports',
  Encounter: 'visits',
  Appointment: 'appointments',
  QuestionnaireResponse: 'forms',
  Binary: 'a file',
  CareTeam: 'your care team',
  Invitation: 'an invitation to your record',
  Delegation: 'who may act for you',
};

export function isBreakGlass(entry: AccessEntry): boolean {
  return entry.action === 'break_glass' || entry.reason === 'break_glass' || entry.purpose_of_use === 'ETREAT';
}

function who(entry: AccessEntry, me: string): string {
  if (entry.actor === me) return 'You';
  // Haven's own actions (an invitation issued from its command line, say).
  if (entry.actor?.startsWith('system')) return 'Haven';
  const role = entry.role && entry.role in roleNames ? roleNames[entry.role as Role] : entry.role ?? 'Someone';
  return entry.actor ? `${role} ${entry.actor.slice(0, 8)}` : role;
}

function what(entry: AccessEntry): string {
  const action = actions[entry.action] ?? entry.action.replace(/_/g, ' ');
  const resource =
    entry.resource_type && entry.action !== 'audit_query' && entry.resource_type !== 'User'
      ? resourceNames[entry.resource_type] ?? entry.resource_type
      : '';
  return resource ? `${action}: ${resource}` : action;
}

/** Accesses by anyone but the patient: what "who accessed my record" is asked for. */
export function byOthers(items: AccessEntry[], me: string): AccessEntry[] {
  return items.filter((entry) => entry.actor !== me);
}

export function AccessLogTable(props: { items: AccessEntry[]; me: string; compact?: boolean }) {
  if (props.items.length === 0) return <p class="empty">Nobody else has accessed your record yet.</p>;
  return (
    <div class="table-scroll">
      <table class="access-log">
        <caption>{props.compact ? 'The latest accesses to your record' : 'Every access to your record, newest first'}</caption>
        <thead>
          <tr>
            <th scope="col">When</th>
            <th scope="col">Who</th>
            <th scope="col">What</th>
            {!props.compact && <th scope="col">Outcome</th>}
          </tr>
        </thead>
        <tbody>
          {props.items.map((entry) => {
            const emergency = isBreakGlass(entry);
            return (
              <tr key={entry.seq} class={emergency ? 'break-glass' : undefined} data-role={entry.role ?? ''}>
                <td>{when(entry.at)}</td>
                <td>{who(entry, props.me)}</td>
                <td>
                  {what(entry)}
                  {emergency && <span class="badge warn">Emergency access</span>}
                </td>
                {!props.compact && <td>{entry.outcome === 'allowed' ? 'Allowed' : `Refused (${entry.reason.replace(/_/g, ' ')})`}</td>}
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

export function AccessLogPage(props: { patient: string; me: string }) {
  const first = useAccessLog(props.patient, ACCESS_LOG_PAGE);
  const [includeMine, setIncludeMine] = useState(false);
  const [more, setMore] = useState<AccessEntry[]>([]);
  const [next, setNext] = useState<string | null | undefined>(undefined);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<unknown>(null);
  /** `cursor` is the server's own link to the next (older) page. */
  const loadMore = async (cursor: string) => {
    setLoading(true);
    try {
      const page = await api<AccessLog>('GET', cursor);
      setMore((shown) => [...shown, ...page.items]);
      setNext(page.next);
    } catch (e) {
      setError(e);
    } finally {
      setLoading(false);
    }
  };
  return (
    <Page
      title="Who accessed your record"
      lead="Every time someone opens, changes or downloads your information, Haven writes it to a log that cannot be changed without detection. Emergency access is marked."
    >
      <Show loaded={first} what="your access log">
        {(log) => {
          const cursor = next === undefined ? log.next : next;
          const items = [...log.items, ...more];
          return (
            <>
              <label class="check">
                <input type="checkbox" checked={includeMine} onChange={(e) => setIncludeMine(e.currentTarget.checked)} /> Show
                my own activity too
              </label>
              <AccessLogTable items={includeMine ? items : byOthers(items, props.me)} me={props.me} />
              <ErrorNote error={error} />
              {cursor && (
                <button type="button" disabled={loading} onClick={() => loadMore(cursor)}>
                  {loading ? 'Loading…' : 'Show older entries'}
                </button>
              )}
            </>
          );
        }}
      </Show>
    </Page>
  );
}
