// Signing in: a login and password, then the second factor (a code from the authenticator
// app, or a recovery code), or a passkey alone. Staff without a second factor yet are taken
// through setting one up, which their organisation requires.
import { useState } from 'preact/hooks';
import { ApiError, api, setCsrfToken } from '../api';
import type { OpenedSession } from '../session';
import { ErrorNote, Field, Page } from '../ui';
import { TotpSetup } from './totp-setup';

type Step = 'password' | 'code' | 'setup';

/** Messages for the refusals a person can do something about. */
function signInMessage(error: unknown): unknown {
  if (!(error instanceof ApiError)) return error;
  switch (error.code) {
    case 'invalid_credentials':
      return 'That login and password do not match an account. Check them and try again.';
    case 'too_many_attempts':
      return `${error.message} If you did not make these attempts, tell your clinic.`;
    default:
      return error;
  }
}

export function SignIn(props: { notice: string | null; onSignedIn: () => void }) {
  const [step, setStep] = useState<Step>('password');
  const [login, setLogin] = useState('');
  const [password, setPassword] = useState('');
  const [code, setCode] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const opened = (session: OpenedSession) => {
    setCsrfToken(session.csrf_token);
    setPassword('');
    if (session.state === 'complete') props.onSignedIn();
    else setStep(session.state === 'mfa_required' ? 'code' : 'setup');
  };

  const attempt = (work: () => Promise<void>) => async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await work();
    } catch (e) {
      setError(signInMessage(e));
    } finally {
      setBusy(false);
    }
  };

  const submitPassword = attempt(async () => {
    opened(await api<OpenedSession>('POST', '/api/v1/auth/sign-in', { login: login.trim(), password }));
  });

  const submitCode = attempt(async () => {
    await api('POST', '/api/v1/auth/second-factor', { code: code.replace(/\s+/g, '') });
    props.onSignedIn();
  });

  const passkey = attempt(async () => {
    if (!('PublicKeyCredential' in window) || !PublicKeyCredential.parseRequestOptionsFromJSON) {
      throw 'This browser cannot use passkeys. Sign in with your password instead.';
    }
    const options = await api<{ ceremony: string; publicKey: PublicKeyCredentialRequestOptionsJSON }>(
      'POST',
      '/api/v1/auth/passkeys/sign-in/options',
      {},
    );
    let credential: Credential | null;
    try {
      credential = await navigator.credentials.get({
        publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey),
      });
    } catch {
      throw 'The passkey was not used. Try again, or sign in with your password.';
    }
    if (!credential) throw 'The passkey was not used. Try again, or sign in with your password.';
    opened(
      await api<OpenedSession>('POST', '/api/v1/auth/passkeys/sign-in', {
        ceremony: options.ceremony,
        credential: (credential as PublicKeyCredential).toJSON(),
      }),
    );
  });

  return (
    <Page title="Sign in to Haven">
      {props.notice && step === 'password' && (
        <p class="notice" role="status" data-testid="sign-in-notice">
          {props.notice}
        </p>
      )}
      {step === 'password' && (
        <>
          <form class="card" onSubmit={submitPassword}>
            <Field label="Email or login" value={login} onInput={setLogin} autoComplete="username" required />
            <Field
              label="Password"
              type="password"
              value={password}
              onInput={setPassword}
              autoComplete="current-password"
              required
            />
            <ErrorNote error={error} />
            <button type="submit" class="primary" disabled={busy}>
              {busy ? 'Signing in…' : 'Sign in'}
            </button>
          </form>
          <div class="card alt">
            <p>Have a passkey on this device or your phone?</p>
            <button type="button" onClick={passkey} disabled={busy}>
              Sign in with a passkey
            </button>
          </div>
        </>
      )}
      {step === 'code' && (
        <form class="card" onSubmit={submitCode}>
          <p>Enter the six-digit code from your authenticator app, or one of your recovery codes.</p>
          <Field
            label="Code"
            value={code}
            onInput={setCode}
            autoComplete="one-time-code"
            inputMode="text"
            maxLength={32}
            autoFocus
            required
          />
          <ErrorNote error={error} />
          <button type="submit" class="primary" disabled={busy}>
            {busy ? 'Checking…' : 'Continue'}
          </button>
        </form>
      )}
      {step === 'setup' && (
        <>
          <p class="lead">Your organisation asks you to protect your account with a second step when you sign in.</p>
          <TotpSetup onDone={props.onSignedIn} />
        </>
      )}
    </Page>
  );
}
