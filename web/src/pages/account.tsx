// My account: passkeys (add one on this device, remove any) and the sessions open in my
// name (end any of them, or all at once).
import { useState } from 'preact/hooks';
import { api } from '../api';
import { safetyNumber } from '../e2e';
import { useEvents, useMessaging } from '../messaging/context';
import type { DeviceList } from '../messaging/device';
import { checkDevices, logKey } from '../messaging/trust';
import { ErrorNote, Field, Page, Show, useLoad, when } from '../ui';
import { DeviceNotice } from './messages';

interface Passkey {
  id: string;
  name: string;
  created_at_ms: number;
  last_used_ms: number | null;
}

/** A name for a new passkey, so a person can tell their devices apart later. */
const PASSKEY_NAME_CHARS_MAX = 64;

function Passkeys() {
  const [version, setVersion] = useState(0);
  const [name, setName] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const passkeys = useLoad(() => api<{ items: Passkey[] }>('GET', '/api/v1/auth/passkeys'), [version]);
  const add = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      if (!('PublicKeyCredential' in window) || !PublicKeyCredential.parseCreationOptionsFromJSON) {
        throw 'This browser cannot create passkeys.';
      }
      const options = await api<{ ceremony: string; publicKey: PublicKeyCredentialCreationOptionsJSON }>(
        'POST',
        '/api/v1/auth/passkeys/registration/options',
        {},
      );
      let created: Credential | null;
      try {
        created = await navigator.credentials.create({
          publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options.publicKey),
        });
      } catch {
        throw 'No passkey was created. Try again when your device asks.';
      }
      if (!created) throw 'No passkey was created. Try again when your device asks.';
      await api('POST', '/api/v1/auth/passkeys/registration', {
        ceremony: options.ceremony,
        credential: (created as PublicKeyCredential).toJSON(),
        name: name.trim() || 'Passkey',
      });
      setName('');
      setVersion(version + 1);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const remove = async (id: string) => {
    try {
      await api('DELETE', `/api/v1/auth/passkeys/${id}`);
      setVersion(version + 1);
    } catch (e) {
      setError(e);
    }
  };
  return (
    <section class="card" aria-labelledby="account-passkeys">
      <h2 id="account-passkeys">Passkeys</h2>
      <p>A passkey signs you in with your device's screen lock or security key, with no password or code to type.</p>
      <Show loaded={passkeys} what="your passkeys">
        {({ items }) =>
          items.length === 0 ? (
            <p class="empty">You have no passkeys yet.</p>
          ) : (
            <ul class="plain" data-testid="passkeys">
              {items.map((p) => (
                <li key={p.id}>
                  <strong>{p.name}</strong>
                  <span class="detail">
                    added {dateOf(p.created_at_ms)}
                    {p.last_used_ms ? ` · last used ${dateOf(p.last_used_ms)}` : ''}
                  </span>
                  <button type="button" class="small" onClick={() => remove(p.id)}>
                    Remove
                  </button>
                </li>
              ))}
            </ul>
          )
        }
      </Show>
      <form onSubmit={add}>
        <Field label="Name for a new passkey" hint="For example: work laptop" value={name} onInput={setName} maxLength={PASSKEY_NAME_CHARS_MAX} />
        <ErrorNote error={error} />
        <button type="submit" disabled={busy}>
          {busy ? 'Waiting for your device…' : 'Add a passkey'}
        </button>
      </form>
    </section>
  );
}

/**
 * The devices that receive my secure messages, each with its safety number (which the
 * people I write to can compare with what their app shows for me), and removing one.
 */
function MessageDevices() {
  const messaging = useMessaging();
  const [version, setVersion] = useState(0);
  const [error, setError] = useState<unknown>(null);
  // Checked against the audit log, as correspondents check them: a device of mine that the
  // log does not prove is one someone else may have added.
  const devices = useLoad(async () => {
    const list = await api<DeviceList>('GET', '/api/v1/devices');
    return { devices: await checkDevices(list, await logKey()) };
  }, [version]);
  useEvents((event) => {
    if (event.type === 'devices' && event.user === messaging?.me) setVersion((v) => v + 1);
  });
  if (!messaging) return null;
  const thisDevice = messaging.device.state === 'ready' ? messaging.device.id : null;
  const remove = async (id: string) => {
    setError(null);
    try {
      await api('DELETE', `/api/v1/devices/${id}`);
      setVersion(version + 1);
    } catch (e) {
      setError(e);
    }
  };
  const number = (fingerprint: string) => {
    try {
      return safetyNumber(fingerprint);
    } catch {
      return 'unreadable';
    }
  };
  return (
    <section class="card" aria-labelledby="account-devices">
      <h2 id="account-devices">Devices for secure messages</h2>
      <p>
        Each browser or app where you read secure messages holds its own keys, which never leave it. Remove a device you no
        longer use: it then receives nothing more. People you write to can compare these safety numbers with what they see.
      </p>
      <DeviceNotice />
      <Show loaded={devices} what="your devices">
        {({ devices: items }) =>
          items.length === 0 ? (
            <p class="empty">No devices yet.</p>
          ) : (
            <ul class="plain" data-testid="message-devices">
              {items.map(({ device: d, verified, reason }) => (
                <li key={d.id}>
                  <strong>{d.label}</strong>
                  {d.id === thisDevice && ' (this browser)'}
                  <span class="detail">
                    Safety number <code class="safety-number">{number(d.fingerprint)}</code> · added {when(d.added_at)}
                  </span>
                  {verified ? (
                    <span class="verified">Verified in the transparency log</span>
                  ) : (
                    <span class="error">
                      Not verified: {reason}. If you did not add this device, someone may be trying to read your messages:
                      remove it and tell your clinic.
                    </span>
                  )}
                  <button type="button" class="small" onClick={() => remove(d.id)}>
                    Remove<span class="visually-hidden"> {d.label}</span>
                  </button>
                </li>
              ))}
            </ul>
          )
        }
      </Show>
      <ErrorNote error={error} />
    </section>
  );
}

interface OpenSession {
  id: string;
  current: boolean;
  created_at_ms: number;
  last_seen_ms: number;
  source_ip: string | null;
  user_agent: string | null;
}

function dateOf(ms: number): string {
  return new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/** A patient-role user enters the code someone gave them, to act for them (a proxy). */
function ActForSomeone(props: { onAccepted: () => void }) {
  const [code, setCode] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [accepted, setAccepted] = useState(false);
  const accept = async (event: Event) => {
    event.preventDefault();
    setError(null);
    setAccepted(false);
    try {
      await api('POST', '/api/v1/delegations/accept', { offer: code.trim() });
      setCode('');
      setAccepted(true);
      props.onAccepted();
    } catch (e) {
      setError(e);
    }
  };
  return (
    <form class="card" onSubmit={accept} aria-labelledby="account-act-for">
      <h2 id="account-act-for">Act for someone</h2>
      <p>If a patient or their clinic gave you a code to act for them (as their parent, guardian or caregiver), enter it here.</p>
      <Field label="Code" value={code} onInput={setCode} autoComplete="off" maxLength={200} required />
      <ErrorNote error={error} />
      {accepted && (
        <p class="ok" role="status">
          Done. Choose whose record to see at the top of the portal.
        </p>
      )}
      <button type="submit">Accept</button>
    </form>
  );
}

export function Account(props: { onSignedOut: (notice: string) => void; canActForOthers: boolean; onActingChanged: () => void }) {
  const [version, setVersion] = useState(0);
  const [error, setError] = useState<unknown>(null);
  const sessions = useLoad(() => api<{ items: OpenSession[] }>('GET', '/api/v1/auth/sessions'), [version]);
  const end = async (id: string) => {
    try {
      await api('DELETE', `/api/v1/auth/sessions/${id}`);
      setVersion(version + 1);
    } catch (e) {
      setError(e);
    }
  };
  const everywhere = async () => {
    try {
      await api('POST', '/api/v1/auth/sign-out-everywhere', {});
      props.onSignedOut('You were signed out on every device.');
    } catch (e) {
      setError(e);
    }
  };
  return (
    <Page title="Your account">
      {props.canActForOthers && <ActForSomeone onAccepted={props.onActingChanged} />}
      <Passkeys />
      <MessageDevices />
      <section class="card" aria-labelledby="account-sessions">
        <h2 id="account-sessions">Where you are signed in</h2>
        <Show loaded={sessions} what="your sessions">
          {({ items }) => (
            <ul class="plain">
              {items.map((s) => (
                <li key={s.id}>
                  <strong>{s.user_agent ?? 'Unknown device'}</strong>
                  <span class="detail">
                    {s.current ? 'This device · ' : ''}signed in {dateOf(s.created_at_ms)} · last active {dateOf(s.last_seen_ms)}
                    {s.source_ip ? ` · from ${s.source_ip}` : ''}
                  </span>
                  {!s.current && (
                    <button type="button" class="small" onClick={() => end(s.id)}>
                      Sign out this device
                    </button>
                  )}
                </li>
              ))}
            </ul>
          )}
        </Show>
        <ErrorNote error={error} />
        <button type="button" onClick={everywhere}>
          Sign out everywhere
        </button>
      </section>
    </Page>
  );
}
