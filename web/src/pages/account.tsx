// My account: the sessions open in my name (end any of them, or all at once).
import { useState } from 'preact/hooks';
import { api } from '../api';
import { ErrorNote, Page, Show, useLoad } from '../ui';

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

export function Account(props: { onSignedOut: (notice: string) => void }) {
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
