// The parts of the visit page around the call: recording by consent, inviting guests, and
// the visit note. Each says plainly what will happen before it happens.
import { useState } from 'preact/hooks';
import { api } from '../api';
import { ErrorNote } from '../ui';
import { type Agreement, fileRecording } from './recording';
import { VISIT_NOTE_CHARS_MAX, fileVisitNote, openVisitEncounter } from './visit-note';

/** Where the recording stands, as Haven's room says. */
export interface RecordingState {
  phase: 'off' | 'asking' | 'on';
  by: number | null;
  consented: number[];
  ended: 'declined' | 'joined' | 'stopped' | 'recorder_left' | null;
  declinedBy: number | null;
}

export const RECORDING_OFF: RecordingState = { phase: 'off', by: null, consented: [], ended: null, declinedBy: null };

export interface RecordingControls {
  askToRecord(): void;
  consentToRecord(granted: boolean): void;
  startRecording(): void;
  /** Stops this browser's recorder, if it records; the recording, or null. */
  stopRecording(): Promise<{ recording: Blob; startedAtMs: number } | null>;
}

const ENDED_TEXT: Record<NonNullable<RecordingState['ended']>, string> = {
  declined: 'Someone did not agree, so the visit is not recorded.',
  joined: 'The recording stopped: someone joined who has not agreed to it.',
  stopped: 'The recording stopped.',
  recorder_left: 'The recording stopped: the clinician recording it left.',
};

/**
 * Recording: a clinician asks, everyone answers here, and only once all agreed can the
 * clinician start. Everyone sees when it runs.
 */
export function RecordingPanel(props: {
  state: RecordingState;
  me: number | null;
  host: boolean;
  everyone: number[];
  controls: RecordingControls;
  /** Names the agreements for the chart (the patient by reference). */
  agreements: () => Agreement[];
  appointment: string;
  patient: string;
}) {
  const { state, me, host, controls } = props;
  const [filing, setFiling] = useState<'idle' | 'saving' | 'saved'>('idle');
  const [problem, setProblem] = useState<unknown>(null);
  const agreed = me !== null && state.consented.includes(me);
  const allAgreed = props.everyone.every((m) => state.consented.includes(m));
  const stop = async () => {
    setProblem(null);
    const agreements = props.agreements();
    const stopped = await controls.stopRecording();
    if (!stopped) return;
    setFiling('saving');
    try {
      await fileRecording({
        appointment: props.appointment,
        patient: props.patient,
        recording: stopped.recording,
        startedAtMs: stopped.startedAtMs,
        endedAtMs: Date.now(),
        agreements,
      });
      setFiling('saved');
    } catch (e) {
      setProblem(e);
      setFiling('idle');
    }
  };
  return (
    <section class="card" aria-labelledby="visit-recording" data-testid="recording" data-phase={state.phase}>
      <h2 id="visit-recording">Recording</h2>
      {state.phase === 'on' && (
        <p class="notice" role="status" data-testid="recording-on">
          ● This visit is being recorded, with everyone’s agreement. The recording goes to the patient’s record.
        </p>
      )}
      {state.phase === 'off' && state.ended && <p role="status">{ENDED_TEXT[state.ended]}</p>}
      {state.phase === 'off' && !state.ended && <p>This visit is not recorded.</p>}
      {state.phase === 'asking' && !agreed && (
        <div role="alertdialog" aria-labelledby="visit-recording-ask" class="notice" data-testid="recording-ask">
          <p id="visit-recording-ask">
            The clinician asks to record this visit for the patient’s record. It is recorded only if everyone agrees. Do you agree?
          </p>
          <button type="button" class="primary" data-testid="recording-agree" onClick={() => controls.consentToRecord(true)}>
            I agree
          </button>
          <button type="button" data-testid="recording-refuse" onClick={() => controls.consentToRecord(false)}>
            No, do not record
          </button>
        </div>
      )}
      {state.phase === 'asking' && agreed && (
        <p role="status">
          Waiting for everyone to answer ({state.consented.length} of {props.everyone.length} agreed).
        </p>
      )}
      {host && state.phase === 'off' && (
        <button type="button" data-testid="recording-ask-button" onClick={() => controls.askToRecord()}>
          Ask to record
        </button>
      )}
      {host && state.phase === 'asking' && (
        <button type="button" class="primary" disabled={!allAgreed} data-testid="recording-start" onClick={() => controls.startRecording()}>
          Start recording
        </button>
      )}
      {host && state.phase === 'on' && (
        <button type="button" data-testid="recording-stop" onClick={() => void stop()}>
          Stop and save to the record
        </button>
      )}
      {filing === 'saving' && <p role="status">Saving the recording to the patient’s record…</p>}
      {filing === 'saved' && (
        <p role="status" data-testid="recording-saved">
          The recording and everyone’s consent are saved in the patient’s record.
        </p>
      )}
      {problem !== null && <ErrorNote error={problem} />}
    </section>
  );
}

const GUEST_KINDS = [
  ['interpreter', 'An interpreter'],
  ['family', 'A family member'],
  ['caregiver', 'A caregiver'],
  ['other', 'Someone else'],
] as const;

/** A host invites a guest: a link that opens once, to send them. */
export function GuestsPanel(props: { appointment: string }) {
  const [kind, setKind] = useState<string>('interpreter');
  const [link, setLink] = useState<string | null>(null);
  const [problem, setProblem] = useState<unknown>(null);
  const invite = async () => {
    setProblem(null);
    try {
      const invited = await api<{ invitation: string }>('POST', `/api/v1/visits/${encodeURIComponent(props.appointment)}/guests`, { kind });
      // The secret travels in the fragment, which browsers never send to a server.
      setLink(`${location.origin}/visits/guest#${invited.invitation}`);
    } catch (e) {
      setProblem(e);
    }
  };
  return (
    <section class="card" aria-labelledby="visit-guests">
      <h2 id="visit-guests">Invite a guest</h2>
      <p>An interpreter or a relative joins with a link that works once, for this visit only. They wait until you admit them.</p>
      <label for="visit-guest-kind">Who</label>{' '}
      <select id="visit-guest-kind" value={kind} onChange={(e) => setKind(e.currentTarget.value)}>
        {GUEST_KINDS.map(([value, text]) => (
          <option key={value} value={value}>
            {text}
          </option>
        ))}
      </select>{' '}
      <button type="button" data-testid="guest-invite" onClick={() => void invite()}>
        Make a link
      </button>
      {link && (
        <p>
          Send this link to the guest (it opens once): <code class="guest-link" data-testid="guest-link">{link}</code>
        </p>
      )}
      {problem !== null && <ErrorNote error={problem} />}
    </section>
  );
}

/** The clinician's note of the visit, filed to its Encounter. */
export function VisitNotePanel(props: { appointment: string; patient: string; startedAtMs: number }) {
  const [text, setText] = useState('');
  const [encounter, setEncounter] = useState<string | null>(null);
  const [saved, setSaved] = useState(0);
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<unknown>(null);
  const save = async (event: Event) => {
    event.preventDefault();
    if (!text.trim()) return setProblem('Write the note first.');
    setBusy(true);
    setProblem(null);
    try {
      const id = encounter ?? (await openVisitEncounter({ appointment: props.appointment, patient: props.patient, startedAtMs: props.startedAtMs }));
      setEncounter(id);
      await fileVisitNote({ patient: props.patient, encounter: id, text });
      setText('');
      setSaved(saved + 1);
    } catch (e) {
      setProblem(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="card" aria-labelledby="visit-note">
      <h2 id="visit-note">Visit note</h2>
      <form onSubmit={(e) => void save(e)}>
        <label for="visit-note-text">Note for the patient’s record</label>
        <textarea id="visit-note-text" rows={5} maxLength={VISIT_NOTE_CHARS_MAX} value={text} onInput={(e) => setText(e.currentTarget.value)} />
        <button type="submit" class="primary" disabled={busy} data-testid="visit-note-save">
          Save to the visit
        </button>
      </form>
      {saved > 0 && (
        <p role="status" data-testid="visit-note-saved">
          {saved === 1 ? 'The note is saved to this visit in the patient’s record.' : `${saved} notes are saved to this visit.`}
        </p>
      )}
      {problem !== null && <ErrorNote error={problem} />}
    </section>
  );
}
