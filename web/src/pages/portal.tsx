// The patient portal: home (what is new), my record, and who accessed it.
import { fhir } from '../api';
import {
  type Bundle,
  type CodeableConcept,
  type Observation,
  type Resource,
  categoryOf,
  conceptText,
  matches,
  observationValue,
  outOfRange,
  rangeText,
} from '../fhir';
import { Link, Page, Show, localDate, useLoad, when } from '../ui';
import { AccessLogTable, byOthers, useAccessLog } from './access-log';
import { correctionPath } from './corrections';
import { useFormsToComplete } from './forms';
import { MessagesCard } from './messages';
import { joinable } from '../visit/schedule';

/** Visits on the home page. */
const HOME_VISITS_MAX = 3;

interface Appointment extends Resource {
  status: string;
  start?: string;
  end?: string;
  description?: string;
  serviceType?: CodeableConcept[];
}

function NextVisits(props: { patient: string }) {
  const visits = useLoad(() => {
    // From the start of today, so a visit later today is still "next".
    const today = localDate(new Date());
    return search<Appointment>('Appointment', {
      patient: props.patient,
      date: `ge${today}`,
      _sort: 'date',
      _count: String(HOME_VISITS_MAX),
    });
  }, [props.patient]);
  return (
    <section class="card" aria-labelledby="home-visits">
      <h2 id="home-visits">Your next visits</h2>
      <Show loaded={visits} what="your visits">
        {(list) => {
          const upcoming = list.filter((a) => a.status !== 'cancelled' && a.status !== 'entered-in-error');
          return upcoming.length === 0 ? (
            <p class="empty">No visits booked.</p>
          ) : (
            <ul class="plain" data-testid="next-visits">
              {upcoming.map((a) => (
                <li key={a.id}>
                  <strong>{when(a.start)}</strong>
                  <span class="detail">{a.description ?? conceptText(a.serviceType?.[0]) ?? 'Visit'}</span>
                  {joinable(a) && <Link href={`/visits/${a.id}`}>Join video visit</Link>}
                </li>
              ))}
            </ul>
          );
        }}
      </Show>
    </section>
  );
}

/** Results on the home page. */
const HOME_RESULTS_MAX = 5;
/** Accesses by others on the home page, found among the latest entries of the log. */
const HOME_ACCESSES_MAX = 5;
const HOME_ACCESS_LOG_SCAN = 50;
/** Rows of each list on the record page; the API's page size bounds it too. */
const RECORD_ROWS_MAX = 50;

function search<T extends Resource>(type: string, params: Record<string, string>): Promise<T[]> {
  const query = new URLSearchParams(params).toString();
  return fhir<Bundle<T>>('GET', `${type}?${query}`).then(matches);
}

function results(patient: string, count: number) {
  return search<Observation>('Observation', {
    patient,
    category: 'laboratory',
    _sort: '-date',
    _count: String(count),
  });
}

/** Results as a table; `correctable` adds the patient's "Request a correction" link. */
export function ResultsTable(props: { results: Observation[]; caption: string; correctable?: boolean }) {
  if (props.results.length === 0) return <p class="empty">No results yet.</p>;
  return (
    <div class="table-scroll">
      <table>
        <caption>{props.caption}</caption>
        <thead>
          <tr>
            <th scope="col">Test</th>
            <th scope="col">Result</th>
            <th scope="col">Normal range</th>
            <th scope="col">Date</th>
            {props.correctable && <th scope="col"><span class="visually-hidden">Corrections</span></th>}
          </tr>
        </thead>
        <tbody>
          {props.results.map((o) => {
            const flag = outOfRange(o);
            return (
              <tr key={o.id} class={flag ? 'flagged' : undefined}>
                <th scope="row">{conceptText(o.code)}</th>
                <td>
                  {observationValue(o)}
                  {flag && <span class={`flag ${flag}`}>{flag === 'high' ? 'High' : 'Low'}</span>}
                </td>
                <td>{rangeText(o)}</td>
                <td>{when(o.effectiveDateTime ?? o.issued)}</td>
                {props.correctable && (
                  <td>
                    <Link href={correctionPath(`Observation/${o.id}`)}>Request a correction</Link>
                  </td>
                )}
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

/**
 * The portal's home. `own`: the patient's own record (forms to complete are theirs to
 * answer); otherwise a proxy's view, with what `scopes` allow.
 */
export function PortalHome(props: { patient: string; me: string; scopes: string[]; own: boolean }) {
  const record = props.scopes.includes('record');
  return (
    <Page title={props.own ? 'Your health at a glance' : 'At a glance'}>
      {props.own && <FormsToComplete patient={props.patient} />}
      <div class="grid">
        {props.own && <MessagesCard href="/portal/messages" />}
        {record && <NextVisits patient={props.patient} />}
        {record && <LatestResults patient={props.patient} />}
        {props.scopes.includes('access_log') && <RecentAccesses patient={props.patient} me={props.me} />}
      </div>
    </Page>
  );
}

function FormsToComplete(props: { patient: string }) {
  const forms = useFormsToComplete(props.patient);
  return (
      <Show loaded={forms} what="your forms">
        {(toComplete) =>
          toComplete.length > 0 && (
            <section class="card highlight" aria-labelledby="home-forms">
              <h2 id="home-forms">Forms to complete</h2>
              <ul class="plain">
                {toComplete.map((form) => (
                  <li key={form.id}>
                    <Link href={`/portal/forms/${form.id}`}>{form.title ?? form.name ?? 'Form'}</Link>
                  </li>
                ))}
              </ul>
            </section>
          )
        }
      </Show>
  );
}

function LatestResults(props: { patient: string }) {
  const latest = useLoad(() => results(props.patient, HOME_RESULTS_MAX), [props.patient]);
  return (
    <section class="card" aria-labelledby="home-results">
      <h2 id="home-results">Latest results</h2>
      <Show loaded={latest} what="the results">
        {(list) => <ResultsTable results={list} caption="The most recent test results" />}
      </Show>
      <Link href="/portal/record">See the whole record</Link>
    </section>
  );
}

function RecentAccesses(props: { patient: string; me: string }) {
  const accessLog = useAccessLog(props.patient, HOME_ACCESS_LOG_SCAN);
  return (
    <section class="card" aria-labelledby="home-access">
      <h2 id="home-access">Who looked at the record</h2>
      <Show loaded={accessLog} what="the access log">
        {(log) => <AccessLogTable items={byOthers(log.items, props.me).slice(0, HOME_ACCESSES_MAX)} me={props.me} compact />}
      </Show>
      <Link href="/portal/access">See every access</Link>
    </section>
  );
}

interface Listed extends Resource {
  code?: CodeableConcept;
  medicationCodeableConcept?: CodeableConcept;
  clinicalStatus?: CodeableConcept;
  status?: string;
  recordedDate?: string;
  authoredOn?: string;
  onsetDateTime?: string;
  date?: string;
  description?: string;
  type?: CodeableConcept;
  dosageInstruction?: { text?: string }[];
  reaction?: { manifestation?: CodeableConcept[] }[];
  criticality?: string;
}

function SimpleList(props: { items: Listed[]; empty: string; correctable: boolean; describe: (item: Listed) => [string, string] }) {
  if (props.items.length === 0) return <p class="empty">{props.empty}</p>;
  return (
    <ul class="plain">
      {props.items.map((item) => {
        const [title, detail] = props.describe(item);
        return (
          <li key={item.id}>
            <strong>{title || 'Unnamed entry'}</strong>
            {detail && <span class="detail">{detail}</span>}
            {props.correctable && (
              <Link href={correctionPath(`${item.resourceType}/${item.id}`)} class="small-link">
                Request a correction
              </Link>
            )}
          </li>
        );
      })}
    </ul>
  );
}

/** The whole record; `own` adds what only its patient does (corrections, the download). */
export function MyRecord(props: { patient: string; own: boolean }) {
  const { patient, own } = props;
  const count = String(RECORD_ROWS_MAX);
  const record = useLoad(
    () =>
      Promise.all([
        results(patient, RECORD_ROWS_MAX),
        search<Observation>('Observation', { patient, category: 'vital-signs', _sort: '-date', _count: count }),
        search<Listed>('Condition', { patient, _count: count }),
        search<Listed>('MedicationRequest', { patient, _count: count }),
        search<Listed>('AllergyIntolerance', { patient, _count: count }),
        search<Listed>('DocumentReference', { patient, _count: count }),
      ]),
    [patient],
  );
  return (
    <Page
      title={own ? 'Your record' : 'Record'}
      lead={own ? 'Everything your care team keeps about you. Only you and the people caring for you can see it.' : undefined}
    >
      {own && (
      <p class="actions">
        <a class="button" href={`/fhir/Patient/${patient}/$export`} download={`my-health-record-${patient}.ndjson`}>
          Download all my data
        </a>{' '}
        <Link href="/portal/corrections" class="button">
          My correction requests
        </Link>
      </p>
      )}
      <Show loaded={record} what="your record">
        {([labs, vitals, conditions, medications, allergies, documents]) => (
          <>
            <section class="card" aria-labelledby="record-results">
              <h2 id="record-results">Test results</h2>
              <ResultsTable results={labs} caption="Laboratory results, newest first" correctable={own} />
            </section>
            <section class="card" aria-labelledby="record-vitals">
              <h2 id="record-vitals">Vital signs</h2>
              <ResultsTable results={vitals.filter((o) => categoryOf(o) === 'vital-signs')} caption="Measurements, newest first" correctable={own} />
            </section>
            <div class="grid">
              <section class="card" aria-labelledby="record-conditions">
                <h2 id="record-conditions">Conditions</h2>
                <SimpleList
                  correctable={own}
                  items={conditions}
                  empty="No conditions recorded."
                  describe={(c) => [conceptText(c.code), [conceptText(c.clinicalStatus), when(c.onsetDateTime ?? c.recordedDate)].filter(Boolean).join(' · ')]}
                />
              </section>
              <section class="card" aria-labelledby="record-medications">
                <h2 id="record-medications">Medications</h2>
                <SimpleList
                  correctable={own}
                  items={medications}
                  empty="No medications recorded."
                  describe={(m) => [conceptText(m.medicationCodeableConcept), [m.dosageInstruction?.[0]?.text, m.status].filter(Boolean).join(' · ')]}
                />
              </section>
              <section class="card" aria-labelledby="record-allergies">
                <h2 id="record-allergies">Allergies</h2>
                <SimpleList
                  correctable={own}
                  items={allergies}
                  empty="No allergies recorded."
                  describe={(a) => [
                    conceptText(a.code),
                    [a.reaction?.[0]?.manifestation?.map(conceptText).join(', '), a.criticality && `criticality ${a.criticality}`]
                      .filter(Boolean)
                      .join(' · '),
                  ]}
                />
              </section>
              <section class="card" aria-labelledby="record-documents">
                <h2 id="record-documents">Documents and notes</h2>
                <SimpleList
                  correctable={own}
                  items={documents}
                  empty="No documents yet."
                  describe={(d) => [d.description ?? conceptText(d.type), when(d.date)]}
                />
              </section>
            </div>
          </>
        )}
      </Show>
    </Page>
  );
}
