// The privacy console: every use of break-the-glass waits here for review, with who, whose
// chart, why and when; the privacy officer records whether it was justified.
import { useState } from 'preact/hooks';
import { api } from '../api';
import { ErrorNote, Page, Show, useLoad, when } from '../ui';

interface BreakGlassUse {
  id: string;
  user: string;
  patient: string;
  reason: string;
  created_at: string;
  expires_at: string;
  review_state: string;
}

function Review(props: { use: BreakGlassUse; onReviewed: () => void }) {
  const [note, setNote] = useState('');
  const [error, setError] = useState<unknown>(null);
  const review = async (outcome: 'justified' | 'unjustified') => {
    setError(null);
    try {
      await api('POST', `/api/v1/break-glass/${props.use.id}/review`, { outcome, note: note.trim() || undefined });
      props.onReviewed();
    } catch (e) {
      setError(e);
    }
  };
  const noteId = `review-note-${props.use.id}`;
  return (
    <div class="review">
      <div class="field">
        <label for={noteId}>Review note (optional)</label>
        <input id={noteId} value={note} maxLength={500} onInput={(e) => setNote(e.currentTarget.value)} />
      </div>
      <ErrorNote error={error} />
      <button type="button" onClick={() => review('justified')}>
        Justified
      </button>{' '}
      <button type="button" class="danger" onClick={() => review('unjustified')}>
        Not justified
      </button>
    </div>
  );
}

export function PrivacyConsole() {
  const [version, setVersion] = useState(0);
  const queue = useLoad(() => api<{ items: BreakGlassUse[] }>('GET', '/api/v1/break-glass?state=pending'), [version]);
  return (
    <Page title="Break-the-glass review" lead="Each emergency access to a chart outside the clinician's care, waiting for your review.">
      <Show loaded={queue} what="the review queue">
        {({ items }) =>
          items.length === 0 ? (
            <p class="empty card">Nothing waits for review.</p>
          ) : (
            <ul class="plain queue" data-testid="break-glass-queue">
              {items.map((use) => (
                <li key={use.id} class="card" data-user={use.user} data-patient={use.patient}>
                  <h2>Emergency access on {when(use.created_at)}</h2>
                  <dl>
                    <dt>Clinician</dt>
                    <dd>{use.user}</dd>
                    <dt>Patient</dt>
                    <dd>{use.patient}</dd>
                    <dt>Reason given</dt>
                    <dd class="reason">{use.reason}</dd>
                    <dt>Access until</dt>
                    <dd>{when(use.expires_at)}</dd>
                  </dl>
                  <Review use={use} onReviewed={() => setVersion(version + 1)} />
                </li>
              ))}
            </ul>
          )
        }
      </Show>
    </Page>
  );
}
