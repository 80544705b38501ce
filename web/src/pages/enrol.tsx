// Accepting an invitation: the link's secret is in the URL fragment, which browsers never
// send to a server, and it is removed from the address bar and history as soon as it is read.
import { useState } from 'preact/hooks';
import { api, setCsrfToken } from '../api';
import type { OpenedSession } from '../session';
import { ErrorNote, Field, Page } from '../ui';
import { TotpSetup } from './totp-setup';

/** Haven's own minimum; the server also refuses guessable passwords, with its reason. */
const PASSWORD_CHARS_MIN = 12;

function takeInvitation(): string {
  const invitation = decodeURIComponent(location.hash.replace(/^#/, ''));
  if (invitation) history.replaceState(null, '', location.pathname);
  return invitation;
}

export function Enrol(props: { onSignedIn: () => void }) {
  const [invitation] = useState(takeInvitation);
  const [login, setLogin] = useState('');
  const [password, setPassword] = useState('');
  const [repeat, setRepeat] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  /** After the account exists: staff must set up a second factor, patients are offered one. */
  const [setup, setSetup] = useState<'required' | 'offered' | null>(null);

  const submit = async (event: Event) => {
    event.preventDefault();
    if (password.length < PASSWORD_CHARS_MIN) return setError(`Choose a password of at least ${PASSWORD_CHARS_MIN} characters.`);
    if (password !== repeat) return setError('The two passwords are not the same.');
    setBusy(true);
    setError(null);
    try {
      const session = await api<OpenedSession>('POST', '/api/v1/auth/enrol', {
        invitation,
        login: login.trim(),
        password,
      });
      setCsrfToken(session.csrf_token);
      setPassword('');
      setRepeat('');
      setSetup(session.state === 'complete' ? 'offered' : 'required');
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  if (!invitation) {
    return (
      <Page title="Create your account">
        <p class="error" role="alert">
          This page needs the link from your invitation. Open the link from your clinic's message again, or ask them
          for a new one.
        </p>
      </Page>
    );
  }
  if (setup) {
    return (
      <Page title="Protect your account">
        <p class="lead">
          A code from an app on your phone, asked for when you sign in, keeps your record safe even if someone learns
          your password.
        </p>
        <TotpSetup onDone={props.onSignedIn} />
        {setup === 'offered' && (
          <button type="button" class="link" onClick={props.onSignedIn}>
            Not now
          </button>
        )}
      </Page>
    );
  }
  return (
    <Page title="Create your account" lead="Your clinic invited you to Haven. Choose how you will sign in.">
      <form class="card" onSubmit={submit}>
        <Field label="Email" type="email" value={login} onInput={setLogin} autoComplete="username" required />
        <Field
          label="Password"
          hint={`At least ${PASSWORD_CHARS_MIN} characters. A few unrelated words make a strong password you can remember.`}
          type="password"
          value={password}
          onInput={setPassword}
          autoComplete="new-password"
          required
        />
        <Field
          label="Password again"
          type="password"
          value={repeat}
          onInput={setRepeat}
          autoComplete="new-password"
          required
        />
        <ErrorNote error={error} />
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Creating your account…' : 'Create account'}
        </button>
      </form>
    </Page>
  );
}
