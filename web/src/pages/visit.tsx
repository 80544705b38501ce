// A video visit: `/visits/{appointment}`, for the patient it is booked for and for the
// clinicians of their care team.
//
// Before connecting, the page asks Haven where the visit stands (not open yet, over, ended)
// and says so in words. The patient then waits in the waiting room until a clinician lets
// them in; a clinician is in the call at once and sees who waits. The call is end-to-end
// encrypted (visit/call.ts): the page shows that, and whose devices hold the keys, with
// their safety numbers; a member whose device could not be checked is named in a warning.
//
// `window.havenVisit` lets a test read the call's statistics and check that the frames
// leaving this browser are sealed. It reveals verdicts and counts only (no key, no media),
// and only same-origin scripts can reach it (the Content Security Policy forbids others).
import { useEffect, useRef, useState } from 'preact/hooks';
import type { Device } from '../e2e';
import { useMessaging } from '../messaging/context';
import { DeviceNotice } from './messages';
import { type LogKey, logKey } from '../messaging/trust';
import { type Role, roleNames } from '../session';
import { ErrorNote, Link, Loading, Page, Show, useLoad, when } from '../ui';
import { type CallSnapshot, type PeerView, VisitCall, fetchVisitStatus } from '../visit/call';
import { GuestsPanel, RecordingPanel, VisitNotePanel } from '../visit/panels';
import type { Agreement } from '../visit/recording';
import type { Member } from '../visit/signaling';

interface VisitTestHook {
  snapshot: () => CallSnapshot | null;
  stats: () => Promise<unknown>;
  probe: (count: number) => Promise<unknown>;
  sealing: () => Promise<unknown>;
  diagnostics: () => Promise<unknown>;
}

declare global {
  interface Window {
    havenVisit?: VisitTestHook;
  }
}

/**
 * What the person is called on the page: "you", the patient, a guest, or a host by the staff
 * role their checked device was published under (a nurse is "Nurse"); a host whose device
 * is not checked yet is "Care team", which every host is.
 */
function memberName(member: Member, me: string | null, staffRole?: Role | null): string {
  if (member.user && member.user === me) return 'You';
  if (member.role === 'patient') return 'Patient';
  if (member.role === 'guest') return 'Guest';
  return staffRole && staffRole !== 'patient' ? roleNames[staffRole] : 'Care team';
}

/** Why the screen was not shared, in words: refused (by the person or the browser), or why not. */
function screenShareProblem(e: unknown): string {
  if (e instanceof DOMException && e.name === 'NotAllowedError') {
    return 'The screen was not shared: sharing was not allowed, by you or by this browser’s settings.';
  }
  return `The screen could not be shared (${e instanceof Error ? e.message : String(e)}).`;
}

const QUALITY_TEXT = { unknown: 'Connecting', good: 'Good connection', fair: 'Fair connection', poor: 'Poor connection' };

/** A `<video>` showing a stream (srcObject cannot be set as an attribute). */
function StreamVideo(props: { stream: MediaStream | null; muted?: boolean; label: string; testId?: string }) {
  const ref = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    const video = ref.current;
    if (video && video.srcObject !== props.stream) video.srcObject = props.stream;
  }, [props.stream]);
  return <video ref={ref} autoplay playsInline muted={props.muted} aria-label={props.label} data-testid={props.testId} />;
}

function PeerTile(props: { peer: PeerView; me: string | null }) {
  const { peer } = props;
  const name = memberName(peer.member, props.me, peer.staffRole);
  const states = [
    peer.member.connected ? null : 'reconnecting…',
    peer.audioMuted ? 'muted' : null,
    peer.videoOff ? 'camera off' : null,
    peer.sharingScreen ? 'sharing their screen' : null,
  ].filter(Boolean);
  return (
    <figure class="visit-tile" data-testid={`peer-${peer.member.id}`}>
      <StreamVideo stream={peer.stream} label={`${name}'s video`} />
      <figcaption>
        <strong>{name}</strong>
        {states.length > 0 && <span> · {states.join(', ')}</span>}
        <span class={`quality quality-${peer.quality}`} data-testid="quality">
          {' '}
          · {QUALITY_TEXT[peer.quality]}
        </span>
      </figcaption>
    </figure>
  );
}

/** The call's end-to-end encryption, in words: who holds keys, and any warning. */
function EncryptionPanel(props: { snapshot: CallSnapshot; me: string | null; mySafetyNumber: string }) {
  const { peers } = props.snapshot;
  const warnings = peers.filter((p) => p.warning);
  return (
    <section class="card" aria-labelledby="visit-encryption">
      <h2 id="visit-encryption">End-to-end encrypted</h2>
      <p>
        Sound and video are encrypted in this browser before they leave it. Only the devices below hold the keys; Haven relays the call and
        cannot see or hear it.
      </p>
      <ul class="plain" data-testid="key-holders">
        <li>
          You, this browser · safety number <code>{props.mySafetyNumber}</code>
        </li>
        {peers.map((peer) => (
          <li key={peer.member.id}>
            {memberName(peer.member, props.me, peer.staffRole)} ·{' '}
            {peer.verified === null
              ? 'checking their device…'
              : peer.verified && peer.guestDevice
                ? 'a guest’s device, made for this visit and published nowhere: compare its safety number with them'
                : peer.verified
                  ? 'device checked against the transparency log'
                  : 'device not checked'}
            {peer.safetyNumber && (
              <>
                {' '}
                · safety number <code>{peer.safetyNumber}</code>
              </>
            )}
            {peer.keyReceived ? '' : ' · no key from them yet'}
          </li>
        ))}
      </ul>
      {warnings.map((peer) => (
        <p class="notice" role="alert" key={peer.member.id} data-testid="device-warning">
          {memberName(peer.member, props.me, peer.staffRole)}: {peer.warning}. They receive no key from this browser, so they cannot see or hear you.
        </p>
      ))}
    </section>
  );
}

function Lobby(props: { waiting: Member[]; call: VisitCall; me: string | null }) {
  if (props.waiting.length === 0) return null;
  return (
    <section class="card" aria-labelledby="visit-lobby">
      <h2 id="visit-lobby">Waiting to join</h2>
      <ul class="plain" data-testid="lobby">
        {props.waiting.map((member) => (
          <li key={member.id}>
            {memberName(member, props.me)} {member.connected ? '' : '(connection lost)'}
            <button type="button" class="small primary" onClick={() => props.call.admit(member.id)}>
              Admit
            </button>
            <button type="button" class="small" onClick={() => props.call.decline(member.id)}>
              Decline
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}

function Chat(props: { snapshot: CallSnapshot; call: VisitCall; me: string | null }) {
  const [text, setText] = useState('');
  const peers = new Map(props.snapshot.peers.map((p) => [p.member.id, p]));
  return (
    <section class="card" aria-labelledby="visit-chat">
      <h2 id="visit-chat">Chat</h2>
      <ol class="plain visit-chat" aria-live="polite" data-testid="chat">
        {props.snapshot.chat.map((line) => {
          const peer = line.from === 'me' ? undefined : peers.get(line.from);
          const from = line.from === 'me' ? 'You' : peer ? memberName(peer.member, props.me, peer.staffRole) : 'Someone who left';
          return (
            <li key={line.id}>
              <strong>{from}:</strong> <span class="message-text">{line.text}</span>
            </li>
          );
        })}
      </ol>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void props.call.sendChat(text);
          setText('');
        }}
      >
        <label for="visit-chat-line" class="visually-hidden">
          Message
        </label>
        <input id="visit-chat-line" value={text} maxLength={2000} onInput={(e) => setText(e.currentTarget.value)} autocomplete="off" />
        <button type="submit" class="small">
          Send
        </button>
      </form>
    </section>
  );
}

function Controls(props: { snapshot: CallSnapshot; call: VisitCall }) {
  const { snapshot, call } = props;
  const [problem, setProblem] = useState<string | null>(null);
  return (
    <div class="visit-controls" role="toolbar" aria-label="Call controls">
      <button type="button" aria-pressed={snapshot.audioMuted} onClick={() => call.setAudioMuted(!snapshot.audioMuted)}>
        {snapshot.audioMuted ? 'Unmute' : 'Mute'}
      </button>
      <button type="button" aria-pressed={snapshot.videoOff} onClick={() => call.setVideoOff(!snapshot.videoOff)}>
        {snapshot.videoOff ? 'Turn camera on' : 'Turn camera off'}
      </button>
      <button
        type="button"
        aria-pressed={snapshot.sharingScreen}
        onClick={() => {
          setProblem(null);
          (snapshot.sharingScreen ? call.stopSharing() : call.shareScreen()).catch((e: unknown) => setProblem(screenShareProblem(e)));
        }}
      >
        {snapshot.sharingScreen ? 'Stop sharing' : 'Share screen'}
      </button>
      <button type="button" onClick={() => call.leave()}>
        Leave
      </button>
      {snapshot.role === 'host' && (
        <button type="button" class="danger" onClick={() => call.end()}>
          End visit for everyone
        </button>
      )}
      {problem && (
        <p class="error" role="alert">
          {problem}
        </p>
      )}
    </div>
  );
}

const ENDINGS: Record<string, { title: string; text: string }> = {
  ended: { title: 'The visit has ended', text: 'Your clinician ended the visit. Thank you.' },
  declined: { title: 'You were not admitted', text: 'The clinician did not admit you to this visit. Please contact the clinic if you think this is a mistake.' },
  replaced: { title: 'The visit continues elsewhere', text: 'You joined this visit from another tab or device, so it was closed here.' },
  left: { title: 'You left the visit', text: 'You can rejoin while the visit is still going on.' },
  session_ended: { title: 'Your session ended', text: 'Sign in again to rejoin the visit.' },
  visit_full: { title: 'The visit is full', text: 'This visit already has as many participants as it can hold.' },
  lobby_full: { title: 'The waiting room is full', text: 'Too many people are waiting. Please try again in a moment.' },
  refused: { title: 'The visit could not be joined', text: 'Haven refused the connection. Reload the page to see why.' },
};

/** The call itself, for a signed-in person or a guest (`device.id` null, `me` null). */
export function InCall(props: {
  appointment: string;
  device: { id: string | null; query?: string; fingerprint: string; safetyNumber: string; keys: Device };
  logKey: LogKey;
  stream: MediaStream;
  relayOnly: boolean;
  me: string | null;
  /** The visit's patient, for what hosts file to the record; null for a guest. */
  patient: string | null;
}) {
  const [snapshot, setSnapshot] = useState<CallSnapshot | null>(null);
  const [failure, setFailure] = useState<unknown>(null);
  const [startedAtMs] = useState(() => Date.now());
  const callRef = useRef<VisitCall | null>(null);
  useEffect(() => {
    let call: VisitCall;
    try {
      call = new VisitCall({
        appointment: props.appointment,
        device: { id: props.device.id, query: props.device.query, fingerprint: props.device.fingerprint, keys: props.device.keys },
        logKey: props.logKey,
        localStream: props.stream,
        relayOnly: props.relayOnly,
        onChange: setSnapshot,
      });
    } catch (e) {
      setFailure(e);
      return;
    }
    callRef.current = call;
    setSnapshot(call.snapshot());
    window.havenVisit = {
      snapshot: () => call.snapshot(),
      stats: () => call.mediaStats(),
      probe: (count) => call.probeEncryption(count),
      sealing: () => call.sealingAccount(),
      diagnostics: () => call.diagnostics(),
    };
    return () => {
      call.close();
      delete window.havenVisit;
      for (const track of props.stream.getTracks()) track.stop();
    };
  }, [props.appointment]);
  if (failure) return <ErrorNote error={failure} />;
  const call = callRef.current;
  if (!snapshot || !call) return <Loading what="the call" />;
  const ending = ENDINGS[snapshot.phase];
  if (ending) {
    return (
      <section class="card" data-testid="visit-ended" data-phase={snapshot.phase}>
        <h2>{ending.title}</h2>
        <p>{ending.text}</p>
      </section>
    );
  }
  return (
    <>
      <p class="visually-hidden" aria-live="polite">
        {snapshot.phase === 'waiting' ? 'You are in the waiting room.' : snapshot.phase === 'in_call' ? 'You are in the visit.' : ''}
      </p>
      {snapshot.reconnecting && (
        <p class="notice" role="status">
          Connection lost. Reconnecting…
        </p>
      )}
      {snapshot.notice && (
        <p class="notice" role="status" data-testid="visit-notice">
          {snapshot.notice}
        </p>
      )}
      {snapshot.phase === 'connecting' && <Loading what="the visit" />}
      {snapshot.phase === 'waiting' && (
        <section class="card" data-testid="waiting-room">
          <h2>Waiting for your clinician</h2>
          <p>Your clinician knows you are here and will let you in. Please keep this page open.</p>
          <StreamVideo stream={props.stream} muted label="Your camera" />
          <button type="button" onClick={() => call.leave()}>
            Leave the waiting room
          </button>
        </section>
      )}
      {snapshot.phase === 'in_call' && (
        <>
          {snapshot.role === 'host' && <Lobby waiting={snapshot.waiting} call={call} me={props.me} />}
          <div class="visit-grid" data-testid="call">
            <figure class="visit-tile">
              <StreamVideo stream={props.stream} muted label="Your camera" />
              <figcaption>
                <strong>You</strong>
                {snapshot.audioMuted ? ' · muted' : ''}
              </figcaption>
            </figure>
            {snapshot.peers.map((peer) => (
              <PeerTile key={peer.member.id} peer={peer} me={props.me} />
            ))}
            {snapshot.peers.length === 0 && <p>No one else is here yet.</p>}
          </div>
          <Controls snapshot={snapshot} call={call} />
          <EncryptionPanel snapshot={snapshot} me={props.me} mySafetyNumber={props.device.safetyNumber} />
          <Chat snapshot={snapshot} call={call} me={props.me} />
          <RecordingPanel
            state={snapshot.recording}
            me={snapshot.me}
            host={snapshot.role === 'host' && props.patient !== null}
            everyone={[...(snapshot.me === null ? [] : [snapshot.me]), ...snapshot.peers.map((p) => p.member.id)]}
            controls={call}
            agreements={() => agreementsOf(snapshot, props.patient)}
            appointment={props.appointment}
            patient={props.patient ?? ''}
          />
          {snapshot.role === 'host' && props.patient && (
            <>
              <GuestsPanel appointment={props.appointment} />
              <VisitNotePanel appointment={props.appointment} patient={props.patient} startedAtMs={startedAtMs} />
            </>
          )}
        </>
      )}
    </>
  );
}

/** Who agreed to the recording, as the chart names them: the patient by reference. */
function agreementsOf(snapshot: CallSnapshot, patient: string | null): Agreement[] {
  const roleOf = new Map<number, Member>(snapshot.peers.map((p) => [p.member.id, p.member]));
  return snapshot.recording.consented.map((id) => {
    if (id === snapshot.me) return { reference: null, display: 'Clinician (recording)' };
    const member = roleOf.get(id);
    if (member?.role === 'patient' && patient) return { reference: `Patient/${patient}`, display: 'Patient' };
    return { reference: null, display: member?.role === 'guest' ? 'Guest' : 'Clinician' };
  });
}

/** Asks for the camera and microphone, saying why it failed when it does. */
export function useLocalMedia(wanted: boolean): { stream: MediaStream | null; problem: string | null } {
  const [stream, setStream] = useState<MediaStream | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  useEffect(() => {
    if (!wanted) return;
    let current = true;
    navigator.mediaDevices
      .getUserMedia({ audio: true, video: { width: { ideal: 640 }, height: { ideal: 360 } } })
      .then((media) => (current ? setStream(media) : media.getTracks().forEach((t) => t.stop())))
      .catch((e: unknown) => {
        const name = e instanceof DOMException ? e.name : '';
        setProblem(
          name === 'NotAllowedError'
            ? 'Haven may not use your camera and microphone. Allow them in your browser’s site settings, then reload this page.'
            : 'No camera or microphone could be opened. Check that they are connected and not in use by another app.',
        );
      });
    return () => {
      current = false;
    };
  }, [wanted]);
  return { stream, problem };
}

const STATE_TEXT: Record<string, (opensAt: string) => string> = {
  not_open_yet: (opensAt) => `This visit opens at ${when(opensAt)}, half an hour before it starts. Come back then.`,
  over: () => 'This visit’s time is over.',
  ended: () => 'This visit has ended.',
  not_held: () => 'This appointment is not held as a video visit (it may have been cancelled).',
};

export function VisitPage(props: { appointment: string; role: Role; me: string }) {
  const messaging = useMessaging();
  const status = useLoad(() => fetchVisitStatus(props.appointment), [props.appointment]);
  const key = useLoad(() => logKey(), []);
  const [joining, setJoining] = useState(false);
  const media = useLocalMedia(joining);
  const relayOnly = new URLSearchParams(location.search).get('relay') === 'only';
  return (
    <Page title="Video visit">
      <Show loaded={status} what="the visit">
        {(visit) => {
          const stateText = STATE_TEXT[visit.state];
          if (stateText) {
            return (
              <section class="card" data-testid="visit-closed" data-state={visit.state}>
                <p>{stateText(visit.opens_at)}</p>
                <p>
                  Booked for {when(visit.starts_at)}. <Link href={props.role === 'patient' ? '/portal' : '/workspace'}>Back to your home page</Link>
                </p>
              </section>
            );
          }
          if (!messaging) return <p class="error">Video visits are for patients and their clinicians.</p>;
          const device = messaging.device;
          if (device.state !== 'ready') return <DeviceNotice />;
          if (key.state !== 'ready') return <Loading what="the transparency log's key" />;
          if (key.value.state === 'changed') {
            return (
              <p class="notice" role="alert">
                The audit log’s key changed since this browser last saw it, so nobody’s device can be checked. Open Messages to review the change
                before joining.
              </p>
            );
          }
          if (!joining) {
            return (
              <section class="card">
                <p>
                  {visit.role === 'patient'
                    ? 'When you join, you wait in the waiting room until your clinician lets you in.'
                    : `You join as the visit’s ${roleNames[props.role].toLowerCase()}; the patient waits until you admit them.`}{' '}
                  Your camera and microphone will be used; the call is encrypted end to end.
                </p>
                <button type="button" class="primary" data-testid="join" onClick={() => setJoining(true)}>
                  {visit.role === 'patient' ? 'Join the waiting room' : 'Start the visit'}
                </button>
              </section>
            );
          }
          if (media.problem) {
            return (
              <p class="error" role="alert">
                {media.problem}
              </p>
            );
          }
          if (!media.stream) return <Loading what="your camera and microphone" />;
          return (
            <InCall
              appointment={props.appointment}
              device={{ id: device.id, fingerprint: device.fingerprint, safetyNumber: device.safetyNumber, keys: device.keys }}
              logKey={key.value}
              stream={media.stream}
              relayOnly={relayOnly}
              me={props.me}
              patient={visit.patient}
            />
          );
        }}
      </Show>
    </Page>
  );
}
