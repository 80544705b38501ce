// A patient's chart for their care team: problems, medications, allergies, vital signs,
// results and notes, and writing a note. A clinician outside the patient's care sees why
// the chart is closed and may open it with break-the-glass: a stated reason, for a limited
// time, reviewed by the privacy officer.
import { useState } from 'preact/hooks';
import { ApiError, api, fhir } from '../api';
import { type Bundle, type CodeableConcept, type Observation, type Resource, categoryOf, conceptText, matches, utf8ToBase64 } from '../fhir';
import { ErrorNote, Link, Page, Show, useLoad, when } from '../ui';
import { PendingCorrections } from './corrections';
import { ResultsTable } from './portal';
import { VitalsCharts } from '../vitals-chart';
import { type PatientSummary, fullName } from './workspace';

/** Rows of each list in the chart. */
const CHART_ROWS_MAX = 50;
/** A note's text, in characters. */
const NOTE_CHARS_MAX = 20_000;
/** A break-the-glass reason, in characters (Haven asks for a real sentence). */
const REASON_CHARS_MIN = 10;

interface Entry extends Resource {
  code?: CodeableConcept;
  medicationCodeableConcept?: CodeableConcept;
  clinicalStatus?: CodeableConcept;
  dosageInstruction?: { text?: string }[];
  criticality?: string;
  description?: string;
  date?: string;
  content?: { attachment: { contentType?: string; data?: string; title?: string } }[];
}

function search<T extends Resource>(type: string, params: Record<string, string>): Promise<T[]> {
  return fhir<Bundle<T>>('GET', `${type}?${new URLSearchParams(params)}`).then(matches);
}

function base64ToUtf8(data: string): string {
  const binary = atob(data);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

function noteText(note: Entry): string | null {
  const attachment = note.content?.[0]?.attachment;
  if (!attachment?.data || !attachment.contentType?.startsWith('text/plain')) return null;
  try {
    return base64ToUtf8(attachment.data);
  } catch {
    return null;
  }
}

function BreakGlass(props: { patient: string; onOpened: (until: string) => void }) {
  const [reason, setReason] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    if (reason.trim().length < REASON_CHARS_MIN) return setError('Say why you need this chart now, in a sentence.');
    setBusy(true);
    setError(null);
    try {
      const grant = await api<{ expires_at: string }>('POST', `/api/v1/patients/${props.patient}/break-glass`, {
        reason: reason.trim(),
      });
      props.onOpened(grant.expires_at);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card warn" onSubmit={submit}>
      <h2>This patient is not in your care</h2>
      <p>
        In an emergency you may open the chart anyway ("break the glass"). Access lasts a limited time, the patient can
        see it in their access log, and the privacy officer reviews every use.
      </p>
      <div class="field">
        <label for="break-glass-reason">Why do you need this chart now?</label>
        <textarea id="break-glass-reason" rows={3} value={reason} onInput={(e) => setReason(e.currentTarget.value)} required />
      </div>
      <ErrorNote error={error} />
      <button type="submit" class="danger" disabled={busy}>
        {busy ? 'Opening…' : 'Break the glass and open the chart'}
      </button>
    </form>
  );
}

function Notes(props: { patient: string; notes: Entry[]; onWritten: () => void }) {
  const [title, setTitle] = useState('');
  const [text, setText] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const write = async (event: Event) => {
    event.preventDefault();
    if (!text.trim()) return setError('Write the note first.');
    setBusy(true);
    setError(null);
    try {
      await fhir('POST', 'DocumentReference', {
        resourceType: 'DocumentReference',
        status: 'current',
        docStatus: 'final',
        type: { coding: [{ system: 'http://loinc.org', code: '11506-3', display: 'Progress note' }] },
        category: [
          {
            coding: [
              { system: 'http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category', code: 'clinical-note' },
            ],
          },
        ],
        subject: { reference: `Patient/${props.patient}` },
        date: new Date().toISOString(),
        description: title.trim() || 'Progress note',
        content: [{ attachment: { contentType: 'text/plain', data: utf8ToBase64(text), title: title.trim() || 'Progress note' } }],
      });
      setTitle('');
      setText('');
      props.onWritten();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="card" aria-labelledby="chart-notes">
      <h2 id="chart-notes">Notes</h2>
      {props.notes.length === 0 ? (
        <p class="empty">No notes yet.</p>
      ) : (
        <ul class="plain notes">
          {props.notes.map((note) => {
            const body = noteText(note);
            return (
              <li key={note.id}>
                <strong>{note.description || conceptText(note.code) || 'Note'}</strong>
                <span class="detail">{when(note.date)}</span>
                {body && <p class="note-text">{body}</p>}
              </li>
            );
          })}
        </ul>
      )}
      <form onSubmit={write} aria-labelledby="write-note">
        <h3 id="write-note">Write a note</h3>
        <div class="field">
          <label for="note-title">Title</label>
          <input id="note-title" value={title} maxLength={200} onInput={(e) => setTitle(e.currentTarget.value)} placeholder="Progress note" />
        </div>
        <div class="field">
          <label for="note-text">Note</label>
          <textarea id="note-text" rows={6} maxLength={NOTE_CHARS_MAX} value={text} onInput={(e) => setText(e.currentTarget.value)} />
        </div>
        <ErrorNote error={error} />
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Saving…' : 'Save note'}
        </button>
      </form>
    </section>
  );
}

function ChartBody(props: { patient: PatientSummary; emergencyUntil: string | null; messaging: boolean }) {
  const { patient } = props;
  const [version, setVersion] = useState(0);
  const count = String(CHART_ROWS_MAX);
  const id = patient.id;
  const chart = useLoad(
    () =>
      Promise.all([
        search<Entry>('Condition', { patient: id, _count: count }),
        search<Entry>('MedicationRequest', { patient: id, _count: count }),
        search<Entry>('AllergyIntolerance', { patient: id, _count: count }),
        search<Observation>('Observation', { patient: id, category: 'vital-signs', _sort: '-date', _count: count }),
        search<Observation>('Observation', { patient: id, category: 'laboratory', _sort: '-date', _count: count }),
        search<Entry>('DocumentReference', { patient: id, _count: count }),
      ]),
    [id, version],
  );
  return (
    <Page title={fullName(patient)} windowTitle="Chart" lead={`Born ${patient.birth_date}`}>
      {props.emergencyUntil && (
        <p class="notice" role="status" data-testid="break-glass-banner">
          Emergency access until {when(props.emergencyUntil)}. The privacy officer will review it.
        </p>
      )}
      {props.messaging && !props.emergencyUntil && (
        <p class="actions">
          <Link href={`/workspace/patients/${id}/message`} class="button">
            Message the care team
          </Link>
        </p>
      )}
      <PendingCorrections patient={id} onAnswered={() => setVersion(version + 1)} />
      <Show loaded={chart} what="the chart">
        {([conditions, medications, allergies, vitals, labs, notes]) => (
          <>
            <div class="grid">
              <section class="card" aria-labelledby="chart-problems">
                <h2 id="chart-problems">Problems</h2>
                {conditions.length === 0 ? (
                  <p class="empty">None recorded.</p>
                ) : (
                  <ul class="plain">
                    {conditions.map((c) => (
                      <li key={c.id}>
                        <strong>{conceptText(c.code)}</strong>
                        <span class="detail">{c.clinicalStatus?.coding?.[0]?.code}</span>
                      </li>
                    ))}
                  </ul>
                )}
              </section>
              <section class="card" aria-labelledby="chart-medications">
                <h2 id="chart-medications">Medications</h2>
                {medications.length === 0 ? (
                  <p class="empty">None recorded.</p>
                ) : (
                  <ul class="plain">
                    {medications.map((m) => (
                      <li key={m.id}>
                        <strong>{conceptText(m.medicationCodeableConcept)}</strong>
                        <span class="detail">{m.dosageInstruction?.[0]?.text}</span>
                      </li>
                    ))}
                  </ul>
                )}
              </section>
              <section class="card" aria-labelledby="chart-allergies">
                <h2 id="chart-allergies">Allergies</h2>
                {allergies.length === 0 ? (
                  <p class="empty">None recorded.</p>
                ) : (
                  <ul class="plain">
                    {allergies.map((a) => (
                      <li key={a.id}>
                        <strong>{conceptText(a.code)}</strong>
                        {a.criticality && <span class="detail">criticality {a.criticality}</span>}
                      </li>
                    ))}
                  </ul>
                )}
              </section>
            </div>
            <section class="card" aria-labelledby="chart-vitals">
              <h2 id="chart-vitals">Vital signs</h2>
              <VitalsCharts observations={vitals.filter((o) => categoryOf(o) === 'vital-signs')} />
              <ResultsTable results={vitals.filter((o) => categoryOf(o) === 'vital-signs')} caption="Newest first" />
            </section>
            <section class="card" aria-labelledby="chart-results">
              <h2 id="chart-results">Results</h2>
              <ResultsTable results={labs} caption="Laboratory results, newest first" />
            </section>
            <Notes patient={id} notes={notes} onWritten={() => setVersion(version + 1)} />
          </>
        )}
      </Show>
    </Page>
  );
}

/** `messaging`: the reader writes secure messages (clinicians and nurses). */
export function Chart(props: { patient: string; messaging?: boolean }) {
  const [attempt, setAttempt] = useState(0);
  const [emergencyUntil, setEmergencyUntil] = useState<string | null>(null);
  const patient = useLoad(() => api<PatientSummary>('GET', `/api/v1/patients/${props.patient}`), [props.patient, attempt]);
  if (patient.state === 'failed' && patient.error instanceof ApiError && patient.error.reason === 'no_care_relationship') {
    return (
      <Page title="Chart closed">
        <BreakGlass
          patient={props.patient}
          onOpened={(until) => {
            setEmergencyUntil(until);
            setAttempt(attempt + 1);
          }}
        />
      </Page>
    );
  }
  if (patient.state === 'failed') {
    return (
      <Page title="Chart">
        <ErrorNote error={patient.error} />
      </Page>
    );
  }
  return (
    <Show loaded={patient} what="the chart">
      {(value) => <ChartBody patient={value} emergencyUntil={emergencyUntil} messaging={props.messaging ?? false} />}
    </Show>
  );
}
