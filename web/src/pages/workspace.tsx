// The clinician workspace's front page: find a patient by family name, birth date or
// identifier. Patients outside the clinician's care show only their name and birth date;
// their chart offers break-the-glass.
import { useState } from 'preact/hooks';
import { api } from '../api';
import { ErrorNote, Field, Link, Page } from '../ui';

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
    <Page title="Find a patient">
      <form class="card search" onSubmit={search} role="search">
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
          <ul class="plain">
            {found.map((patient) => {
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
        </section>
      )}
    </Page>
  );
}
