// The privacy console's audit search (ONC (d)(3) reports): filter the whole log by time,
// person, patient, action and outcome, sort by any column, page through, export the same
// selection as CSV. Beside it, the log's latest signed checkpoint, whose Ed25519 signature
// this browser checks itself against the log's published key: the page does not take the
// server's word that the log is signed.
import { useState } from 'preact/hooks';
import { api, apiText } from '../api';
import { verifyCheckpoint } from '../e2e/transparency';
import { ErrorNote, Page, Show, useLoad, when } from '../ui';

interface AuditEntry {
  seq: number;
  at: string;
  actor: string | null;
  role: string | null;
  action: string;
  patient: string | null;
  resource_type: string | null;
  resource_id: string | null;
  outcome: string;
  reason: string;
  purpose_of_use: string | null;
  source_ip: string | null;
}

/** Rows per page of the report. */
const REPORT_PAGE = 50;

const ACTIONS = [
  'read', 'search', 'create', 'update', 'delete', 'export', 'print', 'login', 'logout', 'failed_login',
  'mfa_change', 'privilege_change', 'consent_change', 'break_glass', 'key_rotation', 'crypto_shred',
  'configuration_change', 'audit_query',
];

/** The columns shown, each sortable by the name Haven sorts it by. */
const COLUMNS: [keyof AuditEntry, string][] = [
  ['seq', '#'],
  ['at', 'When'],
  ['actor', 'Who'],
  ['role', 'Role'],
  ['action', 'Action'],
  ['patient', 'Patient'],
  ['resource_type', 'Resource'],
  ['outcome', 'Outcome'],
  ['reason', 'Reason'],
  ['purpose_of_use', 'Purpose'],
  ['source_ip', 'Address'],
];

interface Filters {
  from: string;
  to: string;
  actor: string;
  patient: string;
  action: string;
  outcome: string;
}

const NO_FILTERS: Filters = { from: '', to: '', actor: '', patient: '', action: '', outcome: '' };

/** Now, as a `datetime-local` value (the reader's local time, to the second). */
function localNow(): string {
  const now = new Date();
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}T${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}`;
}

/** Rows in one CSV export (the server's page limit). */
const CSV_ROWS_MAX = 1000;

function reportQuery(filters: Filters, sort: string, offset: number): URLSearchParams {
  const query = new URLSearchParams({ sort, limit: String(REPORT_PAGE), offset: String(offset) });
  // datetime-local has no zone: it is the reader's local time, sent as an instant.
  if (filters.from) query.set('from', new Date(filters.from).toISOString());
  if (filters.to) query.set('to', new Date(filters.to).toISOString());
  for (const name of ['actor', 'patient', 'action', 'outcome'] as const) {
    if (filters[name].trim()) query.set(name, filters[name].trim());
  }
  return query;
}

interface CheckpointStatus {
  size: number;
  signedBy: string;
  signatureValid: boolean;
  /** The verifier key checked against, for comparing with the copy a reviewer keeps. */
  vkey: string;
}

/** Checks the log's checkpoint note against the log's verifier key, in this browser. */
async function checkCheckpoint(note: string, vkey: string): Promise<CheckpointStatus> {
  const { size, signedBy, signatureValid } = await verifyCheckpoint(note, vkey);
  return { size, signedBy, signatureValid, vkey };
}

interface Verification {
  at: string;
  verified: boolean;
  detail: string;
}

/** The last full verification run inside Haven, and a button to run one now. */
function FullVerification() {
  const [version, setVersion] = useState(0);
  const [running, setRunning] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const last = useLoad(() => api<{ last: Verification | null }>('GET', '/api/v1/audit/verification'), [version]);
  const run = async () => {
    setRunning(true);
    setError(null);
    try {
      await api('POST', '/api/v1/audit/verification', {});
      setVersion(version + 1);
    } catch (e) {
      setError(e);
    } finally {
      setRunning(false);
    }
  };
  return (
    <div>
      <Show loaded={last} what="the last verification">
        {({ last: verification }) => (
          <p data-testid="last-verification" class={verification === null ? undefined : verification.verified ? 'ok' : 'error'}>
            {verification === null
              ? 'The whole log has not been verified inside Haven yet.'
              : verification.verified
                ? `Last full verification ${when(verification.at)}: the log is intact (${verification.detail}).`
                : `Last full verification ${when(verification.at)} FAILED: ${verification.detail}. Report this at once.`}
          </p>
        )}
      </Show>
      <ErrorNote error={error} />
      <button type="button" onClick={run} disabled={running}>
        {running ? 'Verifying every entry…' : 'Verify the whole log now'}
      </button>
    </div>
  );
}

function LogStatus() {
  const status = useLoad(async () => {
    const [note, vkey] = await Promise.all([apiText('/api/v1/audit/checkpoints/latest'), apiText('/api/v1/audit/vkey')]);
    return checkCheckpoint(note, vkey);
  }, []);
  return (
    <section class="card" aria-labelledby="log-status">
      <h2 id="log-status">Is the log intact?</h2>
      <Show loaded={status} what="the checkpoint">
        {(checkpoint) => (
          <p data-testid="checkpoint-status" class={checkpoint.signatureValid ? 'ok' : 'error'}>
            {checkpoint.size.toLocaleString()} entries, signed by <code>{checkpoint.signedBy}</code>:{' '}
            {checkpoint.signatureValid
              ? 'the signature is valid (checked in this browser with the log’s public key).'
              : 'the signature does NOT verify with the log’s public key. Report this at once.'}
          </p>
        )}
      </Show>
      <Show loaded={status} what="the key">
        {(checkpoint) => (
          <p class="hint">
            The key was fetched from this server, so compare it with the copy you keep outside Haven (
            <code>haven audit vkey</code>): <code class="invitation">{checkpoint.vkey.trim()}</code>
          </p>
        )}
      </Show>
      <FullVerification />
      <p class="hint">
        Every entry of the log is a leaf of a Merkle tree; each signed checkpoint commits to all entries before it, so a
        changed, removed or reordered entry shows. A full verification recomputes the whole tree and checks every checkpoint, as <code>haven audit verify</code> does.
      </p>
    </section>
  );
}

export function AuditSearch() {
  const [draft, setDraft] = useState<Filters>(NO_FILTERS);
  const [filters, setFilters] = useState<Filters>(() => ({ ...NO_FILTERS, to: localNow() }));
  const [sort, setSort] = useState('-seq');
  const [offset, setOffset] = useState(0);
  const query = reportQuery(filters, sort, offset);
  const report = useLoad(() => api<{ items: AuditEntry[]; next: string | null }>('GET', `/api/v1/audit/events?${query}`), [
    query.toString(),
  ]);
  const csv = new URLSearchParams(query);
  csv.set('format', 'csv');
  csv.delete('offset');
  csv.set('limit', String(CSV_ROWS_MAX));

  const set = (name: keyof Filters) => (e: Event) => setDraft({ ...draft, [name]: (e.currentTarget as HTMLInputElement).value });
  const sortBy = (column: string) => {
    setSort(sort === column ? `-${column}` : column);
    setOffset(0);
  };
  const direction = (column: string) =>
    sort === column ? 'ascending' : sort === `-${column}` ? 'descending' : undefined;

  return (
    <Page title="Audit log" lead="Every access to health data and every sign-in, change of rights and configuration. Searching the log is itself recorded.">
      <LogStatus />
      <form
        class="card"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          // Every search is itself logged, newest first: without an end the pages would
          // shift by one entry per page. An open-ended search ends when it is made.
          setFilters(draft.to ? draft : { ...draft, to: localNow() });
          setOffset(0);
        }}
      >
        <div class="filters">
          <div class="field">
            <label for="audit-from">From</label>
            <input id="audit-from" type="datetime-local" step={1} value={draft.from} onInput={set('from')} />
          </div>
          <div class="field">
            <label for="audit-to">To</label>
            <input id="audit-to" type="datetime-local" step={1} value={draft.to} onInput={set('to')} />
          </div>
          <div class="field">
            <label for="audit-actor">Who (user id)</label>
            <input id="audit-actor" value={draft.actor} maxLength={200} onInput={set('actor')} />
          </div>
          <div class="field">
            <label for="audit-patient">Patient id</label>
            <input id="audit-patient" value={draft.patient} maxLength={36} onInput={set('patient')} />
          </div>
          <div class="field">
            <label for="audit-action">Action</label>
            <select id="audit-action" value={draft.action} onChange={set('action')}>
              <option value="">Any</option>
              {ACTIONS.map((a) => (
                <option key={a} value={a}>
                  {a.replace(/_/g, ' ')}
                </option>
              ))}
            </select>
          </div>
          <div class="field">
            <label for="audit-outcome">Outcome</label>
            <select id="audit-outcome" value={draft.outcome} onChange={set('outcome')}>
              <option value="">Any</option>
              <option value="allowed">Allowed</option>
              <option value="denied">Denied</option>
            </select>
          </div>
        </div>
        <button type="submit" class="primary">
          Search
        </button>{' '}
        <a class="button" href={`/api/v1/audit/events?${csv}`} download="haven-audit.csv">
          Export as CSV
        </a>
        <span class="hint"> The export holds the first {CSV_ROWS_MAX.toLocaleString()} entries of the selection; narrow it for more.</span>
      </form>
      <Show loaded={report} what="the audit log">
        {({ items, next }) => (
          <section class="card" aria-labelledby="audit-results">
            <h2 id="audit-results">{items.length === 0 ? 'No entries match' : `Entries ${offset + 1}–${offset + items.length}`}</h2>
            <div class="table-scroll">
              <table class="audit" data-testid="audit-table">
                <thead>
                  <tr>
                    {COLUMNS.map(([column, label]) => (
                      <th key={column} scope="col" aria-sort={direction(column)}>
                        <button type="button" class="sort" onClick={() => sortBy(column)}>
                          {label}
                          <span aria-hidden="true">{direction(column) === 'ascending' ? ' ▲' : direction(column) === 'descending' ? ' ▼' : ''}</span>
                        </button>
                      </th>
                    ))}
                  </tr>
                </thead>
                <tbody>
                  {items.map((entry) => (
                    <tr key={entry.seq} class={entry.action === 'break_glass' ? 'break-glass' : entry.outcome === 'denied' ? 'denied' : undefined}>
                      {COLUMNS.map(([column]) => (
                        <td key={column}>{column === 'at' ? when(entry.at) : String(entry[column] ?? '')}</td>
                      ))}
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            <div class="pager">
              <button type="button" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - REPORT_PAGE))}>
                Previous page
              </button>{' '}
              <button type="button" disabled={!next} onClick={() => setOffset(offset + REPORT_PAGE)}>
                Next page
              </button>
            </div>
          </section>
        )}
      </Show>
    </Page>
  );
}
