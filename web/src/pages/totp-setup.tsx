// Setting up an authenticator app: a QR code of the otpauth URI (drawn as SVG shapes, since
// the CSP allows no data: images), the secret in text for those who type it, a first code to
// prove it works, then the one-time recovery codes, shown once.
import { useEffect, useState } from 'preact/hooks';
import { encode } from 'uqr';
import { api } from '../api';
import { ErrorNote, Field, Loading } from '../ui';

interface Setup {
  secret: string;
  otpauth_uri: string;
}

function QrCode(props: { text: string }) {
  const { data, size } = encode(props.text, { ecc: 'M', border: 2 });
  const cells: string[] = [];
  data.forEach((row, y) => row.forEach((dark, x) => dark && cells.push(`M${x} ${y}h1v1h-1z`)));
  return (
    <svg class="qr" viewBox={`0 0 ${size} ${size}`} role="img" aria-label="QR code for your authenticator app">
      <rect width={size} height={size} fill="#fff" />
      <path d={cells.join('')} fill="#000" />
    </svg>
  );
}

export function TotpSetup(props: { onDone: () => void }) {
  const [setup, setSetup] = useState<Setup | null>(null);
  const [code, setCode] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [recoveryCodes, setRecoveryCodes] = useState<string[] | null>(null);
  const [saved, setSaved] = useState(false);

  useEffect(() => {
    api<Setup>('POST', '/api/v1/auth/totp/setup', {}).then(setSetup, setError);
  }, []);

  const confirm = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const confirmed = await api<{ recovery_codes: string[] }>('POST', '/api/v1/auth/totp/confirm', { code: code.replace(/\s+/g, '') });
      setRecoveryCodes(confirmed.recovery_codes);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  if (recoveryCodes) {
    return (
      <div class="card">
        <h2>Your recovery codes</h2>
        <p>
          If you lose your phone, each of these codes signs you in once instead of a code from your app. Write them
          down or print them and keep them somewhere safe. They will not be shown again.
        </p>
        <ol class="recovery-codes" data-testid="recovery-codes">
          {recoveryCodes.map((c) => (
            <li key={c}>
              <code>{c}</code>
            </li>
          ))}
        </ol>
        <label class="check">
          <input type="checkbox" checked={saved} onChange={(e) => setSaved(e.currentTarget.checked)} /> I have kept my
          recovery codes somewhere safe
        </label>
        <button type="button" class="primary" disabled={!saved} onClick={props.onDone}>
          Continue
        </button>
      </div>
    );
  }

  if (!setup) return error ? <ErrorNote error={error} /> : <Loading what="your authenticator set-up" />;
  return (
    <form class="card" onSubmit={confirm}>
      <h2>Set up your authenticator app</h2>
      <ol class="steps">
        <li>Open an authenticator app on your phone (for example FreeOTP, Aegis or Google Authenticator).</li>
        <li>
          Scan this code, or enter the key below by hand.
          <QrCode text={setup.otpauth_uri} />
          <p>
            Key: <code data-testid="totp-secret">{setup.secret.replace(/(.{4})/g, '$1 ').trim()}</code>
          </p>
        </li>
        <li>Type the six-digit code the app shows now.</li>
      </ol>
      <Field
        label="Six-digit code"
        value={code}
        onInput={setCode}
        inputMode="numeric"
        autoComplete="one-time-code"
        pattern="[0-9 ]*"
        maxLength={8}
        required
      />
      <ErrorNote error={error} />
      <button type="submit" class="primary" disabled={busy}>
        {busy ? 'Checking…' : 'Confirm'}
      </button>
    </form>
  );
}
