// Amendments (ONC (d)(4)): a patient asks for a specific record to be corrected, and sees
// every request with its answer; the care team accepts (the correction is added to the
// record as a note, which becomes the record's next version, linked from the request) or
// declines with a reason the patient reads.
//
// A request is a FHIR Task (`task-code|change`) focused on the record. Haven keeps it as
// asked and answered: it changes only through `$accept` and `$deny`.
import { useState } from 'preact/hooks';
import { fhir } from '../api';
import { type Bundle, type CodeableConcept, type Resource, conceptText, matches, observationValue, type Observation } from '../fhir';
import { navigate } from '../router';
import { ErrorNote, Link, Page, Show, useLoad, when } from '../ui';

interface Task extends Resource {
  status: string;
  description?: string;
  focus?: { reference?: string };
  authoredOn?: string;
  lastModified?: string;
  statusReason?: CodeableConcept;
  input?: { valueString?: string }[];
}

/** Requests listed per page. */
const REQUESTS_MAX = 50;
/** What a patient may write, in characters (a FHIR string holds far more; a request is a note). */
const REQUEST_CHARS_MAX = 2000;

/** The record types whose corrections are added as a note (they have `note`). */
const NOTED_TYPES = ['Observation', 'Condition', 'AllergyIntolerance', 'MedicationRequest', 'ImagingStudy'];

/** The path of the page that asks to correct `reference` (`Type/id`). */
export function correctionPath(reference: string): string {
  return `/portal/corrections/new/${reference}`;
}

/** A record, said in a few words: what it is and, for a measurement, its value. */
function recordSummary(record: Resource): string {
  const code = record.code as CodeableConcept | undefined;
  const medication = record.medicationCodeableConcept as CodeableConcept | undefined;
  const name = conceptText(code) || conceptText(medication) || (record.description as string | undefined) || record.resourceType;
  const value = record.resourceType === 'Observation' ? observationValue(record as Observation) : '';
  return value ? `${name}: ${value}` : name;
}

function statusText(task: Task): string {
  switch (task.status) {
    case 'requested':
      return 'Waiting for your care team';
    case 'completed':
      return 'Accepted: the record was corrected';
    case 'rejected':
      return `Declined: ${conceptText(task.statusReason) || 'no reason given'}`;
    default:
      return task.status;
  }
}

export function NewCorrection(props: { patient: string; reference: string }) {
  const record = useLoad(() => fhir<Resource>('GET', props.reference), [props.reference]);
  const [wrong, setWrong] = useState('');
  const [wanted, setWanted] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    if (!wrong.trim() || !wanted.trim()) return setError('Say what is wrong and what it should say.');
    setBusy(true);
    setError(null);
    try {
      await fhir('POST', 'Task', {
        resourceType: 'Task',
        status: 'requested',
        intent: 'proposal',
        code: { coding: [{ system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'change' }] },
        description: wrong.trim(),
        focus: { reference: props.reference },
        for: { reference: `Patient/${props.patient}` },
        input: [{ type: { text: 'Requested correction' }, valueString: wanted.trim() }],
      });
      navigate('/portal/corrections');
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };
  return (
    <Page title="Request a correction" lead="If something in your record is wrong, tell your care team. They will correct it or tell you why not.">
      <Show loaded={record} what="the record">
        {(value) => (
          <form class="card" onSubmit={submit}>
            <p>
              About: <strong data-testid="correction-focus">{recordSummary(value)}</strong>
            </p>
            <div class="field">
              <label for="correction-wrong">What is wrong?</label>
              <textarea id="correction-wrong" rows={3} maxLength={REQUEST_CHARS_MAX} value={wrong} onInput={(e) => setWrong(e.currentTarget.value)} required />
            </div>
            <div class="field">
              <label for="correction-wanted">What should it say?</label>
              <textarea id="correction-wanted" rows={3} maxLength={REQUEST_CHARS_MAX} value={wanted} onInput={(e) => setWanted(e.currentTarget.value)} required />
            </div>
            <ErrorNote error={error} />
            <button type="submit" class="primary" disabled={busy}>
              {busy ? 'Sending…' : 'Send the request'}
            </button>
          </form>
        )}
      </Show>
    </Page>
  );
}

export function MyCorrections(props: { patient: string }) {
  const requests = useLoad(
    () => fhir<Bundle<Task>>('GET', `Task?patient=${props.patient}&_count=${REQUESTS_MAX}`).then(matches),
    [props.patient],
  );
  return (
    <Page title="Correction requests" lead="What you asked your care team to correct, and their answers.">
      <p>
        To ask for a correction, open <Link href="/portal/record">your record</Link> and choose “Request a correction” beside
        the entry.
      </p>
      <Show loaded={requests} what="your requests">
        {(list) =>
          list.length === 0 ? (
            <p class="empty card">You have not asked for any correction.</p>
          ) : (
            <ul class="plain card" data-testid="corrections">
              {list.map((task) => (
                <li key={task.id}>
                  <strong>{task.description}</strong>
                  <span class="detail">
                    Asked {when(task.authoredOn)} · you asked for: {task.input?.[0]?.valueString}
                  </span>
                  <span class={`detail status-${task.status}`}>{statusText(task)}</span>
                </li>
              ))}
            </ul>
          )
        }
      </Show>
    </Page>
  );
}

function Answer(props: { task: Task; onAnswered: () => void }) {
  const { task } = props;
  const [reason, setReason] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const focus = task.focus?.reference ?? '';
  const noted = NOTED_TYPES.includes(focus.split('/')[0] ?? '');
  const act = (work: () => Promise<unknown>) => async () => {
    setBusy(true);
    setError(null);
    try {
      await work();
      props.onAnswered();
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };
  const accept = act(async () => {
    const record = await fhir<Resource & { note?: { text: string; time?: string }[] }>('GET', focus);
    const correction = task.input?.[0]?.valueString ?? task.description ?? '';
    const corrected = {
      ...record,
      note: [...(record.note ?? []), { text: `Corrected at the patient's request: ${correction}`, time: new Date().toISOString() }],
    };
    delete (corrected as { meta?: unknown }).meta;
    await fhir('POST', `Task/${task.id}/$accept`, corrected);
  });
  const decline = act(async () => {
    if (!reason.trim()) throw 'Give the patient a reason.';
    await fhir('POST', `Task/${task.id}/$deny`, {
      resourceType: 'Parameters',
      parameter: [{ name: 'reason', valueString: reason.trim() }],
    });
  });
  const reasonId = `decline-${task.id}`;
  return (
    <div class="review">
      {noted && (
        <button type="button" class="primary" disabled={busy} onClick={accept}>
          Accept: add the correction to the record
        </button>
      )}
      <div class="field">
        <label for={reasonId}>Reason to decline</label>
        <input id={reasonId} value={reason} maxLength={REQUEST_CHARS_MAX} onInput={(e) => setReason(e.currentTarget.value)} />
      </div>
      <button type="button" disabled={busy} onClick={decline}>
        Decline
      </button>
      <ErrorNote error={error} />
    </div>
  );
}

/** The record a request is about, said in a few words once it is loaded. */
function FocusSummary(props: { reference: string }) {
  const record = useLoad(() => fhir<Resource>('GET', props.reference), [props.reference]);
  return <>{record.state === 'ready' ? recordSummary(record.value) : props.reference}</>;
}

/** The patient's correction requests waiting for an answer, in their chart. */
export function PendingCorrections(props: { patient: string; onAnswered: () => void }) {
  const [version, setVersion] = useState(0);
  const pending = useLoad(
    () => fhir<Bundle<Task>>('GET', `Task?patient=${props.patient}&status=requested&_count=${REQUESTS_MAX}`).then(matches),
    [props.patient, version],
  );
  return (
    <Show loaded={pending} what="correction requests">
      {(list) =>
        list.length > 0 && (
          <section class="card highlight" aria-labelledby="chart-corrections">
            <h2 id="chart-corrections">Correction requests from the patient</h2>
            <ul class="plain" data-testid="pending-corrections">
              {list.map((task) => (
                <li key={task.id}>
                  <strong>{task.description}</strong>
                  <span class="detail">
                    About {task.focus?.reference ? <FocusSummary reference={task.focus.reference} /> : 'a record'} · asked{' '}
                    {when(task.authoredOn)} · wants: {task.input?.[0]?.valueString}
                  </span>
                  <Answer
                    task={task}
                    onAnswered={() => {
                      setVersion(version + 1);
                      props.onAnswered();
                    }}
                  />
                </li>
              ))}
            </ul>
          </section>
        )
      }
    </Show>
  );
}
