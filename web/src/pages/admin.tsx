// Administration: the organisation's policies (time-outs, a second factor for patients,
// break-the-glass duration, when results reach patients), its users (disable, enable),
// invitations (a single-use link shown once) and where key rotation stands. Changing a policy or a person's access needs
// a fresh proof of identity (step-up): the page asks for the password and a code, then
// retries.
import { useState } from 'preact/hooks';
import { ApiError, api } from '../api';
import { type Role, roleNames } from '../session';
import { ErrorNote, Field, Modal, Page, Show, useLoad } from '../ui';

interface Organisation {
  id: string;
  name: string;
  idle_timeout_secs: number;
  absolute_timeout_secs: number;
  patient_mfa_required: boolean;
  break_glass_secs: number;
  result_release: 'immediate' | 'after_review';
  /** Days secure messages are kept; 0 keeps them until a period is set. */
  message_retention_days: number;
}

interface User {
  id: string;
  login: string;
  role: Role;
  second_factor: boolean;
  locked: boolean;
  disabled: boolean;
  created_at_ms: number;
}

/** Roles an administrator invites from here; patients are invited for their record. */
const INVITED_ROLES: Role[] = ['clinician', 'nurse', 'front_desk', 'privacy_officer', 'auditor', 'administrator', 'patient'];

/**
 * Runs `work`; when Haven asks for a step-up, shows the step-up dialog and retries after
 * it. Errors of the retry go to `onError`, since the dialog is gone by then. The dialog is
 * rendered outside the caller's form (`form`), so its submit does not submit that form.
 */
function useStepUp(onError: (error: unknown) => void) {
  const [pending, setPending] = useState<(() => Promise<void>) | null>(null);
  const run = async (work: () => Promise<void>) => {
    try {
      await work();
    } catch (e) {
      if (e instanceof ApiError && e.code === 'step_up_required') setPending(() => work);
      else throw e;
    }
  };
  const form = pending && (
    <StepUpForm
      onDone={async () => {
        const retry = pending;
        setPending(null);
        try {
          await retry();
        } catch (e) {
          onError(e);
        }
      }}
      onCancel={() => setPending(null)}
    />
  );
  return { run, form };
}

function StepUpForm(props: { onDone: () => Promise<void>; onCancel: () => void }) {
  const [password, setPassword] = useState('');
  const [code, setCode] = useState('');
  const [error, setError] = useState<unknown>(null);
  const submit = async (event: Event) => {
    event.preventDefault();
    setError(null);
    try {
      await api('POST', '/api/v1/auth/step-up', { password, code: code.replace(/\s+/g, '') || undefined });
      setPassword('');
      await props.onDone();
    } catch (e) {
      setError(e);
    }
  };
  return (
    <Modal labelledBy="step-up-title" onEscape={props.onCancel}>
      <form onSubmit={submit}>
        <h2 id="step-up-title">Confirm it is you</h2>
        <p>This change needs your password and a code from your authenticator app.</p>
        <Field
          label="Your password"
          type="password"
          value={password}
          onInput={setPassword}
          autoComplete="current-password"
          autoFocus
          required
        />
        <Field label="Code from your app" value={code} onInput={setCode} autoComplete="one-time-code" inputMode="numeric" maxLength={8} />
        <ErrorNote error={error} />
        <button type="submit" class="primary">
          Confirm
        </button>{' '}
        <button type="button" onClick={props.onCancel}>
          Cancel
        </button>
      </form>
    </Modal>
  );
}

/** The policy form; after a save it shows what was saved (the values it holds). */
function Policies(props: { organisation: Organisation }) {
  const { organisation } = props;
  const [idle, setIdle] = useState(String(organisation.idle_timeout_secs / 60));
  const [absolute, setAbsolute] = useState(String(organisation.absolute_timeout_secs / 3600));
  const [breakGlass, setBreakGlass] = useState(String(organisation.break_glass_secs / 60));
  const [patientMfa, setPatientMfa] = useState(organisation.patient_mfa_required);
  const [release, setRelease] = useState(organisation.result_release);
  const [retention, setRetention] = useState(organisation.message_retention_days === 0 ? '' : String(organisation.message_retention_days));
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState(false);
  const stepUp = useStepUp(setError);
  const save = async (event: Event) => {
    event.preventDefault();
    setError(null);
    setSaved(false);
    try {
      await stepUp.run(async () => {
        await api('PUT', '/api/v1/organisation', {
          idle_timeout_secs: Math.round(Number(idle) * 60),
          absolute_timeout_secs: Math.round(Number(absolute) * 3600),
          patient_mfa_required: patientMfa,
          break_glass_secs: Math.round(Number(breakGlass) * 60),
          result_release: release,
          message_retention_days: retention.trim() === '' ? 0 : Math.round(Number(retention)),
        });
        setSaved(true);
      });
    } catch (e) {
      setError(e);
    }
  };
  return (
    <>
    <form class="card" onSubmit={save} aria-labelledby="admin-policies">
      <h2 id="admin-policies">Policies of {organisation.name}</h2>
      <div class="filters">
        <Field label="Idle time-out (minutes)" type="number" min={1} max={60} value={idle} onInput={setIdle} required />
        <Field label="Longest session (hours)" type="number" min={0.25} max={24} step={0.25} value={absolute} onInput={setAbsolute} required />
        <Field label="Break-the-glass lasts (minutes)" type="number" min={1} value={breakGlass} onInput={setBreakGlass} required />
        <Field
          label="Keep secure messages (days)"
          hint="Empty keeps them until you set a period. Older messages and their files are deleted for good."
          type="number"
          min={30}
          max={36500}
          value={retention}
          onInput={setRetention}
        />
      </div>
      <label class="check">
        <input type="checkbox" checked={patientMfa} onChange={(e) => setPatientMfa(e.currentTarget.checked)} /> Patients must use a
        second factor
      </label>
      <div class="field">
        <label for="admin-release">Laboratory results reach patients</label>
        <select id="admin-release" value={release} onChange={(e) => setRelease(e.currentTarget.value as Organisation['result_release'])}>
          <option value="immediate">At once</option>
          <option value="after_review">After a clinician has reviewed them</option>
        </select>
      </div>
      <ErrorNote error={error} />
      {saved && (
        <p class="ok" role="status">
          Saved. Stricter time-outs apply to open sessions at once.
        </p>
      )}
      <button type="submit" class="primary">
        Save policies
      </button>
    </form>
    {stepUp.form}
    </>
  );
}

function Users() {
  const [version, setVersion] = useState(0);
  const [error, setError] = useState<unknown>(null);
  const users = useLoad(() => api<{ items: User[] }>('GET', '/api/v1/users'), [version]);
  const stepUp = useStepUp(setError);
  const toggle = (user: User) => async () => {
    setError(null);
    try {
      await stepUp.run(async () => {
        await api('POST', `/api/v1/users/${user.id}/${user.disabled ? 'enable' : 'disable'}`, {});
        setVersion((v) => v + 1);
      });
    } catch (e) {
      setError(e);
    }
  };
  return (
    <section class="card" aria-labelledby="admin-users">
      <h2 id="admin-users">People</h2>
      <ErrorNote error={error} />
      <Show loaded={users} what="the users">
        {({ items }) => (
          <div class="table-scroll">
            <table data-testid="users">
              <caption>Everyone with an account in this organisation</caption>
              <thead>
                <tr>
                  <th scope="col">Login</th>
                  <th scope="col">Role</th>
                  <th scope="col">Second factor</th>
                  <th scope="col">State</th>
                  <th scope="col">
                    <span class="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {items.map((user) => (
                  <tr key={user.id}>
                    <th scope="row">{user.login}</th>
                    <td>{roleNames[user.role] ?? user.role}</td>
                    <td>{user.second_factor ? 'Yes' : 'No'}</td>
                    <td>{user.disabled ? 'Disabled' : user.locked ? 'Locked' : 'Active'}</td>
                    <td>
                      <button type="button" class="small" onClick={toggle(user)}>
                        {user.disabled ? 'Enable' : 'Disable'}
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Show>
      {stepUp.form}
    </section>
  );
}

function Invitations() {
  const [role, setRole] = useState<Role>('clinician');
  const [patient, setPatient] = useState('');
  const [link, setLink] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const stepUp = useStepUp(setError);
  const invite = async (event: Event) => {
    event.preventDefault();
    setError(null);
    setLink(null);
    try {
      await stepUp.run(async () => {
        const issued = await api<{ invitation: string }>('POST', '/api/v1/invitations', {
          role,
          patient: role === 'patient' ? patient.trim() : undefined,
        });
        setLink(`${location.origin}/enrol#${encodeURIComponent(issued.invitation)}`);
      });
    } catch (e) {
      setError(e);
    }
  };
  return (
    <>
    <form class="card" onSubmit={invite} aria-labelledby="admin-invite">
      <h2 id="admin-invite">Invite someone</h2>
      <div class="field">
        <label for="invite-role">Role</label>
        <select id="invite-role" value={role} onChange={(e) => setRole(e.currentTarget.value as Role)}>
          {INVITED_ROLES.map((r) => (
            <option key={r} value={r}>
              {roleNames[r]}
            </option>
          ))}
        </select>
      </div>
      {role === 'patient' && <Field label="The patient's record id" value={patient} onInput={setPatient} maxLength={36} required />}
      <ErrorNote error={error} />
      <button type="submit" class="primary">
        Create the invitation link
      </button>
      {link && (
        <div class="notice" role="status">
          <p>Send this link to the person. It works once, and is shown only now:</p>
          <code class="invitation" data-testid="invitation-link">
            {link}
          </code>
        </div>
      )}
    </form>
    {stepUp.form}
    </>
  );
}

interface KeyStatus {
  active_root_key_id: string;
  keys_under_older_roots: number;
  last_rotation_at_ms: number | null;
}

function Keys() {
  const status = useLoad(() => api<KeyStatus>('GET', '/api/v1/keys/status'), []);
  return (
    <section class="card" aria-labelledby="admin-keys">
      <h2 id="admin-keys">Encryption keys</h2>
      <Show loaded={status} what="the key status">
        {(keys) => (
          <dl data-testid="key-status">
            <dt>Root key in use</dt>
            <dd>
              <code>{keys.active_root_key_id}</code>
            </dd>
            <dt>Last rotated</dt>
            <dd>
              {keys.last_rotation_at_ms === null
                ? 'Never: the root key is the one created on first start'
                : new Date(keys.last_rotation_at_ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' })}
            </dd>
            <dt>Keys still under an older root</dt>
            <dd>{keys.keys_under_older_roots === 0 ? 'None' : keys.keys_under_older_roots.toLocaleString()}</dd>
          </dl>
        )}
      </Show>
      <p class="hint">
        Rotate the root key with <code>haven keys rotate</code> while Haven is stopped: every stored key is re-wrapped under a
        new root and the old one is destroyed.
      </p>
    </section>
  );
}

export function Administration() {
  const organisation = useLoad(() => api<Organisation>('GET', '/api/v1/organisation'), []);
  return (
    <Page title="Administration">
      <Show loaded={organisation} what="the organisation">
        {(value) => <Policies organisation={value} />}
      </Show>
      <Invitations />
      <Users />
      <Keys />
    </Page>
  );
}
