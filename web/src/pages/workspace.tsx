// The clinician workspace's front page: correction requests waiting for an answer, my
// schedule (the coming visits of my patients), my patients (those whose care team I am on), and finding any patient by family name or
// birth date. Patients outside the clinician's care show only their name and birth date;
// their chart offers break-the-glass.
import { useState } from 'preact/hooks';
import { api, fhir } from '../api';
import { type Bundle, type Resource, matches } from '../fhir';
import { ErrorNote, Field, Link, type Loaded, Page, Show, localDate, useLoad, when } from '../ui';
import { joinable } from '../visit/schedule';

export interface PatientSummary {
  id: string;
  name: { family: string; given: string[] };
  birth_date: string;
  masked?: string[];
}

/** Patients per page of a search. */
const SEARCH_LIMIT = 20;

export function fullName(patient: PatientSummary): string {
  return [...patient.name.given, patient.name.family].join(' ');
}

/** My patients shown at once; the search finds the rest. */
const MY_PATIENTS_MAX = 100;

function PatientList(props: { patients: PatientSummary[] }) {
  return (
    <ul class="plain">
      {props.patients.map((patient) => {
        const inCare = !patient.masked?.length;
        return (
          <li key={patient.id}>
            <Link href={`/workspace/patients/${patient.id}`}>
              <strong>{fullName(patient)}</strong>
            </Link>
            <span class="detail">
              born {patient.birth_date} · {inCare ? 'in your care' : 'not in your care'}
            </span>
          </li>
        );
      })}
    </ul>
  );
}

/** Visits on the schedule. */
const SCHEDULE_MAX = 20;

interface Appointment extends Resource {
  status: string;
  start?: string;
  end?: string;
  description?: string;
  participant?: { actor?: { reference?: string } }[];
}

/**
 * The coming visits of the clinician's patients: a search across patients covers only
 * those the clinician is related to, so this is their schedule.
 */
function Schedule(props: { patients: PatientSummary[] }) {
  const visits = useLoad(() => {
    const today = localDate(new Date());
    const query = new URLSearchParams({
      date: `ge${today}`,
      _sort: 'date',
      _count: String(SCHEDULE_MAX),
    });
    return fhir<Bundle<Appointment>>('GET', `Appointment?${query}`).then(matches);
  }, []);
  const nameOf = (appointment: Appointment) => {
    const reference = appointment.participant?.find((p) => p.actor?.reference?.startsWith('Patient/'))?.actor?.reference;
    const patient = props.patients.find((p) => `Patient/${p.id}` === reference);
    return patient ? fullName(patient) : 'A patient';
  };
  return (
    <section class="card" aria-labelledby="schedule">
      <h2 id="schedule">My schedule</h2>
      <Show loaded={visits} what="your schedule">
        {(list) => {
          const coming = list.filter((a) => a.status !== 'cancelled' && a.status !== 'entered-in-error');
          return coming.length === 0 ? (
            <p class="empty">No visits booked with your patients.</p>
          ) : (
            <ul class="plain" data-testid="schedule">
              {coming.map((a) => (
                <li key={a.id}>
                  <strong>{when(a.start)}</strong> · {nameOf(a)}
                  {a.description && <span class="detail">{a.description}</span>}
                  {joinable(a) && <Link href={`/visits/${a.id}`}>Start video visit</Link>}
                </li>
              ))}
            </ul>
          );
        }}
      </Show>
    </section>
  );
}

interface CorrectionRequest extends Resource {
  description?: string;
  authoredOn?: string;
  for?: { reference?: string };
}

/** Correction requests waiting for an answer, from any of the clinician's patients. */
function PendingRequests(props: { patients: PatientSummary[] }) {
  const pending = useLoad(
    () => fhir<Bundle<CorrectionRequest>>('GET', `Task?status=requested&_count=${SCHEDULE_MAX}`).then(matches),
    [],
  );
  return (
    <Show loaded={pending} what="correction requests">
      {(list) =>
        list.length > 0 && (
          <section class="card highlight" aria-labelledby="pending-requests">
            <h2 id="pending-requests">Correction requests waiting for an answer</h2>
            <ul class="plain" data-testid="pending-requests">
              {list.map((task) => {
                const patient = props.patients.find((p) => `Patient/${p.id}` === task.for?.reference);
                return (
                  <li key={task.id}>
                    {patient ? (
                      <Link href={`/workspace/patients/${patient.id}`}>
                        <strong>{fullName(patient)}</strong>
                      </Link>
                    ) : (
                      <strong>A patient</strong>
                    )}
                    <span class="detail">
                      {task.description} · asked {when(task.authoredOn)}
                    </span>
                  </li>
                );
              })}
            </ul>
          </section>
        )
      }
    </Show>
  );
}

function MyPatients() {
  const mine = useLoad(
    () => api<{ items: PatientSummary[] }>('GET', `/api/v1/patients?care_team=me&limit=${MY_PATIENTS_MAX}`),
    [],
  );
  return (
    <>
      <Show loaded={mine} what="your patients">
        {({ items }) => <PendingRequests patients={items} />}
      </Show>
      <div class="grid">
        <Show loaded={mine} what="your patients">
          {({ items }) => <Schedule patients={items} />}
        </Show>
        <MyPatientList loaded={mine} />
      </div>
    </>
  );
}

function MyPatientList(props: { loaded: Loaded<{ items: PatientSummary[] }> }) {
  const mine = props.loaded;
  return (
    <section class="card" aria-labelledby="my-patients">
      <h2 id="my-patients">My patients</h2>
      <Show loaded={mine} what="your patients">
        {({ items }) =>
          items.length === 0 ? <p class="empty">You are on no patient's care team yet.</p> : <PatientList patients={items} />
        }
      </Show>
    </section>
  );
}

export function Workspace() {
  const [family, setFamily] = useState('');
  const [birthDate, setBirthDate] = useState('');
  const [found, setFound] = useState<PatientSummary[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const search = async (event: Event) => {
    event.preventDefault();
    if (!family.trim() && !birthDate) return setError('Enter a family name, a birth date, or both.');
    setBusy(true);
    setError(null);
    const query = new URLSearchParams({ limit: String(SEARCH_LIMIT) });
    if (family.trim()) query.set('family', family.trim());
    if (birthDate) query.set('birth_date', birthDate);
    try {
      const page = await api<{ items: PatientSummary[] }>('GET', `/api/v1/patients?${query}`);
      setFound(page.items);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Page title="Patients">
      <MyPatients />
      <form class="card search" onSubmit={search} role="search" aria-labelledby="find-patient">
        <h2 id="find-patient">Find a patient</h2>
        <div class="grid">
          <Field label="Family name" value={family} onInput={setFamily} autoComplete="off" />
          <Field label="Birth date" type="date" value={birthDate} onInput={setBirthDate} />
        </div>
        <ErrorNote error={error} />
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Searching…' : 'Search'}
        </button>
      </form>
      {found && (
        <section class="card" aria-labelledby="search-results" aria-live="polite">
          <h2 id="search-results">
            {found.length === 0 ? 'No patient matches' : `${found.length} patient${found.length === 1 ? '' : 's'} found`}
          </h2>
          <PatientList patients={found} />
        </section>
      )}
    </Page>
  );
}
