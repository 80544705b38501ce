// The patient's privacy and sharing page: how Haven protects their information (the
// privacy notice), the consents on their record, and the people they let act for them
// (proxies: a parent, guardian or caregiver), with what each may see and until when.
// Giving someone access makes a one-time code the patient hands over; the person enters it
// in their own account. Revoking takes effect at once.
import { useState } from 'preact/hooks';
import { api, fhir } from '../api';
import { type Bundle, type CodeableConcept, type Resource, conceptText, matches } from '../fhir';
import { ErrorNote, Page, Show, useLoad, when } from '../ui';

interface Delegation {
  id: string;
  relationship: string;
  scopes: string[];
  state: string;
  created_at: string;
  expires_at: string;
}

interface Consent extends Resource {
  status: string;
  scope?: CodeableConcept;
  category?: CodeableConcept[];
  dateTime?: string;
  provision?: { type?: string };
}

const SCOPE_NAMES: Record<string, string> = {
  record: 'my record',
  access_log: 'who accessed my record',
};

/** Consents listed. */
const CONSENTS_MAX = 50;
/** How long a proxy's access lasts, in days, unless revoked. */
const PROXY_DAYS_DEFAULT = 365;

function Proxies(props: { patient: string }) {
  const [version, setVersion] = useState(0);
  const [relationship, setRelationship] = useState('parent');
  const [scopes, setScopes] = useState<string[]>(['record']);
  const [days, setDays] = useState(String(PROXY_DAYS_DEFAULT));
  const [offer, setOffer] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const delegations = useLoad(
    () => api<{ items: Delegation[] }>('GET', `/api/v1/patients/${props.patient}/delegations`),
    [props.patient, version],
  );
  const give = async (event: Event) => {
    event.preventDefault();
    setError(null);
    setOffer(null);
    if (scopes.length === 0) return setError('Choose what they may see.');
    try {
      const offered = await api<{ offer: string }>('POST', `/api/v1/patients/${props.patient}/delegations`, {
        relationship,
        scopes,
        days: Number(days),
      });
      setOffer(offered.offer);
      setVersion(version + 1);
    } catch (e) {
      setError(e);
    }
  };
  const revoke = async (id: string) => {
    setError(null);
    try {
      await api('DELETE', `/api/v1/patients/${props.patient}/delegations/${id}`);
      setVersion(version + 1);
    } catch (e) {
      setError(e);
    }
  };
  const toggle = (scope: string) =>
    setScopes(scopes.includes(scope) ? scopes.filter((s) => s !== scope) : [...scopes, scope]);
  return (
    <section class="card" aria-labelledby="privacy-proxies">
      <h2 id="privacy-proxies">People who can act for you</h2>
      <Show loaded={delegations} what="the people who can act for you">
        {({ items }) =>
          items.length === 0 ? (
            <p class="empty">Nobody can act for you.</p>
          ) : (
            <ul class="plain" data-testid="proxies">
              {items.map((d) => (
                <li key={d.id}>
                  <strong>
                    Your {d.relationship} ({d.state})
                  </strong>
                  <span class="detail">
                    may see {d.scopes.map((s) => SCOPE_NAMES[s] ?? s).join(' and ')} · until {when(d.expires_at)}
                  </span>
                  {d.state !== 'revoked' && (
                    <button type="button" class="small" onClick={() => revoke(d.id)}>
                      Revoke
                    </button>
                  )}
                </li>
              ))}
            </ul>
          )
        }
      </Show>
      <form onSubmit={give}>
        <h3>Let someone act for you</h3>
        <div class="field">
          <label for="proxy-relationship">They are your</label>
          <select id="proxy-relationship" value={relationship} onChange={(e) => setRelationship(e.currentTarget.value)}>
            <option value="parent">Parent</option>
            <option value="guardian">Guardian</option>
            <option value="caregiver">Caregiver</option>
          </select>
        </div>
        <fieldset class="form-question">
          <legend>They may see</legend>
          {Object.entries(SCOPE_NAMES).map(([scope, name]) => (
            <label class="check" key={scope}>
              <input type="checkbox" checked={scopes.includes(scope)} onChange={() => toggle(scope)} /> {name}
            </label>
          ))}
        </fieldset>
        <div class="field">
          <label for="proxy-days">For how many days</label>
          <input id="proxy-days" type="number" min={1} max={3650} value={days} onInput={(e) => setDays(e.currentTarget.value)} />
        </div>
        <ErrorNote error={error} />
        <button type="submit" class="primary">
          Create a code for them
        </button>
        {offer && (
          <div class="notice" role="status">
            <p>Give them this code. They enter it in their own Haven account, under Account. It works once:</p>
            <code class="invitation" data-testid="proxy-offer">
              {offer}
            </code>
          </div>
        )}
      </form>
    </section>
  );
}

function Consents(props: { patient: string }) {
  const consents = useLoad(
    () => fhir<Bundle<Consent>>('GET', `Consent?patient=${props.patient}&_count=${CONSENTS_MAX}`).then(matches),
    [props.patient],
  );
  return (
    <section class="card" aria-labelledby="privacy-consents">
      <h2 id="privacy-consents">Your consents</h2>
      <Show loaded={consents} what="your consents">
        {(list) =>
          list.length === 0 ? (
            <p class="empty">No consents are recorded.</p>
          ) : (
            <ul class="plain">
              {list.map((c) => (
                <li key={c.id}>
                  <strong>{conceptText(c.category?.[0]) || conceptText(c.scope) || 'Consent'}</strong>
                  <span class="detail">
                    {c.provision?.type === 'deny' ? 'Refused' : 'Given'} {when(c.dateTime)} · {c.status}
                  </span>
                </li>
              ))}
            </ul>
          )
        }
      </Show>
    </section>
  );
}

export function PrivacySettings(props: { patient: string }) {
  return (
    <Page title="Privacy and sharing">
      <section class="card" aria-labelledby="privacy-notice">
        <h2 id="privacy-notice">How Haven protects your information</h2>
        <ul>
          <li>Everything in your record is encrypted before it is stored; the database holds only ciphertext.</li>
          <li>Only you, the people caring for you and those you let act for you can open it.</li>
          <li>
            In an emergency a clinician may open it without being in your care; that is recorded, reviewed by the privacy
            officer and shown to you.
          </li>
          <li>Every access is written to a log nobody can change without it showing. You see it under “Who accessed my record”.</li>
          <li>You can download everything we hold about you, and ask for corrections, at any time.</li>
        </ul>
      </section>
      <Consents patient={props.patient} />
      <Proxies patient={props.patient} />
    </Page>
  );
}
