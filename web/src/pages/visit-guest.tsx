// A guest's way into a video visit: `/visits/guest#<invitation>`, for an interpreter or a
// relative a clinician invited, who has no account. The invitation is in the fragment
// (never sent to a server by the browser) and is removed from the address bar at once; it
// opens once, into a session for that visit only (an HttpOnly cookie). This browser makes
// device keys for the visit, kept in memory only, and the guest waits until a clinician
// admits them. Nothing of the guest is stored here.
import { useEffect, useState } from 'preact/hooks';
import { ApiError, api } from '../api';
import type { LogKey } from '../messaging/trust';
import { ErrorNote, Loading } from '../ui';
import { SERVED_LOG_KEY } from '../visit/call';
import { type GuestDevice, makeGuestDevice } from '../visit/guest-device';
import { InCall, useLocalMedia } from './visit';

/** Where a guest's invitation link leads. */
export const GUEST_VISIT_PATH = '/visits/guest';

const KIND_TEXT: Record<string, string> = {
  interpreter: 'an interpreter',
  family: 'a family member',
  caregiver: 'a caregiver',
  other: 'a guest',
};

interface Opened {
  appointment: string;
  kind: string;
}

export function GuestVisitPage() {
  // Read once, then gone from the address bar (and from the history entry).
  const [invitation] = useState(() => {
    const secret = location.hash.slice(1);
    if (secret) history.replaceState(null, '', location.pathname);
    return secret;
  });
  const [opened, setOpened] = useState<Opened | null>(null);
  const [device, setDevice] = useState<GuestDevice | null>(null);
  const [key, setKey] = useState<LogKey | null>(null);
  const [problem, setProblem] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const media = useLocalMedia(opened !== null);
  useEffect(() => {
    document.title = 'Video visit · Haven';
  }, []);

  const join = async () => {
    setBusy(true);
    setProblem(null);
    try {
      const session = await api<Opened>('POST', '/api/v1/visits/guest-sessions', { invitation });
      // A guest has nowhere to pin the log's key: it is taken as served with the call's
      // devices, for this visit (`served` below tells the call to read it there).
      setKey({ state: 'pinned', vkey: SERVED_LOG_KEY });
      setDevice(await makeGuestDevice());
      setOpened(session);
    } catch (e) {
      setProblem(
        e instanceof ApiError && e.status === 401
          ? 'This invitation link was already used, or has expired. Ask the clinic for a new one.'
          : e,
      );
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main">
      <h1>Video visit</h1>
      {!invitation && <p class="error">This link has no invitation in it. Open the whole link the clinic sent you.</p>}
      {invitation && !opened && (
        <section class="card">
          <p>
            You are invited to join a video visit. When you join, you wait until the clinician lets you in. Your camera and microphone will be
            used; the call is encrypted end to end. The link works once.
          </p>
          <button type="button" class="primary" disabled={busy} data-testid="guest-join" onClick={() => void join()}>
            Join the visit
          </button>
        </section>
      )}
      {problem !== null && (typeof problem === 'string' ? <p class="error" role="alert">{problem}</p> : <ErrorNote error={problem} />)}
      {opened && device && key && (
        <>
          <p>You join as {KIND_TEXT[opened.kind] ?? 'a guest'}.</p>
          {media.problem && (
            <p class="error" role="alert">
              {media.problem}
            </p>
          )}
          {!media.problem && !media.stream && <Loading what="your camera and microphone" />}
          {media.stream && (
            <InCall
              appointment={opened.appointment}
              device={{ id: null, query: device.query, fingerprint: device.fingerprint, safetyNumber: device.safetyNumber, keys: device.keys }}
              logKey={key}
              stream={media.stream}
              relayOnly={new URLSearchParams(location.search).get('relay') === 'only'}
              me={null}
              patient={null}
            />
          )}
        </>
      )}
    </main>
  );
}
