// The clinician workspace's front page: my patients (those whose care team I am on), and
// finding any patient by family name or birth date. Patients outside the clinician's care show only their name and birth date;
// their chart offers break-the-glass.
import { useState } from 'preact/hooks';
import { api } from '../api';
import { ErrorNote, Field, Link, Page, Show, useLoad } from '../ui';

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

function MyPatients() {
  const mine = useLoad(
    () => api<{ items: PatientSummary[] }>('GET', `/api/v1/patients?care_team=me&limit=${MY_PATIENTS_MAX}`),
    [],
  );
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
