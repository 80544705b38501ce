// Secure messages: the inbox, a conversation, and starting one. Messages are sealed in this
// browser for every verified device of the conversation and opened here; Haven relays
// ciphertext it cannot read. What is opened lives in these components' state only, so
// leaving the page or signing out drops it.
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, api, apiInBackground } from '../api';
import { type MessageBody, safetyNumber } from '../e2e';
import { type Messaging, useEvents, useMessaging } from '../messaging/context';
import type { ThisDevice } from '../messaging/device';
import {
  type Inbox,
  type OpenedMessage,
  type Thread,
  type ThreadSummary,
  ATTACHMENT_FILE_BYTES_MAX,
  SendError,
  fetchCheckedDevices,
  fetchMessages,
  fetchThread,
  fileToChart,
  openAttachmentFile,
  openOne,
  personName,
  rolesOf,
  saveFile,
  sendMessage,
  sizeText,
  startThread,
} from '../messaging/threads';
import {
  type CheckedDevice,
  type LogKey,
  type NewDevice,
  acknowledgeDevices,
  logKey,
  newDevices,
  rememberedSigningKeys,
  trustServedLogKey,
} from '../messaging/trust';
import { navigate } from '../router';
import { type Role, roleNames } from '../session';
import { ErrorNote, Link, Loading, Page, Show, useLoad, when } from '../ui';
import { type PatientSummary, fullName } from './workspace';

/** Conversations described at once in the inbox. */
const INBOX_ROWS_MAX = 50;
/** The longest message a person types, in characters (the body limit is in bytes). */
const MESSAGE_CHARS_MAX = 100_000;

type ReadyDevice = Extract<ThisDevice, { state: 'ready' }>;

/** A device's safety number, or a plain word when Haven sent a malformed fingerprint. */
function safetyNumberOf(fingerprint: string): string {
  try {
    return safetyNumber(fingerprint);
  } catch {
    return 'unreadable';
  }
}

/** A failure, in words for the person; the app's own faults also go to the console. */
function problemText(error: unknown): string {
  if (error instanceof SendError) return error.message;
  if (error instanceof ApiError) return error.message;
  console.error(error);
  return 'Something went wrong. Please try again.';
}

/** What stands between this browser and its messages, said with the way forward. */
export function DeviceNotice() {
  const messaging = useMessaging();
  const [busy, setBusy] = useState(false);
  if (!messaging) return null;
  const { device } = messaging;
  if (device.state === 'checking') return <Loading what="this browser's keys" />;
  if (device.state === 'unavailable') {
    return (
      <p class="error" role="alert">
        {device.message}
      </p>
    );
  }
  if (device.state === 'removed') {
    const again = async () => {
      setBusy(true);
      await messaging.setUpAgain();
      setBusy(false);
    };
    return (
      <section class="card warn" aria-labelledby="device-removed" data-testid="device-removed">
        <h2 id="device-removed">This browser was removed from your devices</h2>
        <p>
          It no longer receives messages, and cannot send any. If you removed it yourself, or you trust this computer, you
          can set it up again: it gets new keys, and messages sent to its old keys stay unreadable here.
        </p>
        <button type="button" class="primary" disabled={busy} onClick={again}>
          {busy ? 'Setting up…' : 'Set up this browser again'}
        </button>
      </section>
    );
  }
  return null;
}

/** The unread count, said for a screen reader after a link's name. */
export function UnreadBadge(props: { count: number | null }) {
  if (!props.count) return null;
  return (
    <>
      {' '}
      <span class="badge count" data-testid="unread-badge">
        {props.count}
        <span class="visually-hidden"> unread</span>
      </span>
    </>
  );
}

/** The portal home's card: how many messages wait to be read. */
export function MessagesCard(props: { href: string }) {
  const messaging = useMessaging();
  if (!messaging) return null;
  const { unread } = messaging;
  return (
    <section class="card" aria-labelledby="home-messages" data-testid="home-messages">
      <h2 id="home-messages">Messages</h2>
      <p>
        {unread === null
          ? 'Checking for new messages…'
          : unread === 0
            ? 'No unread messages.'
            : `You have ${unread} unread message${unread === 1 ? '' : 's'}.`}
      </p>
      <Link href={props.href}>Open your messages</Link>
    </section>
  );
}

interface InboxRow {
  summary: ThreadSummary;
  participants: string[];
  roles: Map<string, Role>;
}

/** The person's conversations, newest first, with what is unread. */
export function MessagesInbox(props: { base: string }) {
  const messaging = useMessaging()!;
  const { me } = messaging;
  const staff = messaging.role !== 'patient';
  const [version, setVersion] = useState(0);
  const background = useRef(false);
  // What each conversation is (who takes part), asked once; nudges refresh the rest.
  const described = useRef(new Map<string, { participants: string[]; roles: Map<string, Role> }>());
  const patientNames = useLoad(
    () =>
      staff
        ? api<{ items: PatientSummary[] }>('GET', '/api/v1/patients?care_team=me').then(
            ({ items }) => new Map(items.map((p) => [p.id, fullName(p)])),
          )
        : Promise.resolve(new Map<string, string>()),
    [staff],
  );
  const rows = useLoad(async () => {
    const quiet = background.current;
    const get = quiet ? apiInBackground : api;
    const inbox = await get<Inbox>('GET', '/api/v1/threads');
    const items = [...inbox.items]
      .sort((a, b) => (b.last_message_at ?? b.created_at).localeCompare(a.last_message_at ?? a.created_at))
      .slice(0, INBOX_ROWS_MAX);
    return Promise.all(
      items.map(async (summary): Promise<InboxRow> => {
        let known = described.current.get(summary.id);
        if (!known) {
          const [thread, devices] = await Promise.all([
            fetchThread(summary.id, quiet),
            get<{ devices: { user: string; log_entry: { role: string | null } | null }[] }>(
              'GET',
              `/api/v1/threads/${summary.id}/devices`,
            ),
          ]);
          const roles = new Map<string, Role>();
          for (const d of devices.devices) {
            const role = d.log_entry?.role as Role | undefined;
            if (role && role in roleNames) roles.set(d.user, role);
          }
          known = {
            participants: thread.participants.filter((p) => p.removed_at === null && p.user !== me).map((p) => p.user),
            roles,
          };
          described.current.set(summary.id, known);
        }
        return { summary, ...known };
      }),
    );
  }, [version]);
  useEvents((event) => {
    if (event.type === 'devices') return;
    if (event.type === 'participants' || event.type === 'reconnected') described.current.clear();
    background.current = true;
    setVersion((v) => v + 1);
  });
  return (
    <Page title="Messages" lead="Secure messages with your care team. They are encrypted in your browser: Haven cannot read them.">
      <DeviceNotice />
      <section class="card" aria-labelledby="conversations">
        <h2 id="conversations">Conversations</h2>
        {staff ? (
          <p class="hint">
            Patients start conversations with their care team from their portal, and you answer them here. To talk with
            the rest of a patient's care team, open the patient's chart and choose “Message the care team”.
          </p>
        ) : (
          <p class="actions">
            <Link href={`${props.base}/new`} class="button">
              New conversation
            </Link>
          </p>
        )}
        <Show loaded={rows} what="your conversations">
          {(list) =>
            list.length === 0 ? (
              <p class="empty">No conversations yet.</p>
            ) : (
              <ul class="plain conversations" data-testid="conversations">
                {list.map(({ summary, participants, roles }) => {
                  const names = participants.map((user) => personName(user, me, roles.get(user)));
                  const about =
                    staff && summary.patient
                      ? patientNames.state === 'ready'
                        ? (patientNames.value.get(summary.patient) ?? 'a patient')
                        : 'a patient'
                      : null;
                  return (
                    <li key={summary.id} class={summary.unread > 0 ? 'unread' : undefined}>
                      <Link href={`${props.base}/${summary.id}`}>
                        <strong>With {names.length > 0 ? names.join(', ') : 'nobody else'}</strong>
                      </Link>
                      <UnreadBadge count={summary.unread} />
                      <span class="detail">
                        {about && `About ${about} · `}
                        {summary.last_message_at ? `last message ${when(summary.last_message_at)}` : 'no messages yet'}
                      </span>
                    </li>
                  );
                })}
              </ul>
            )
          }
        </Show>
      </section>
    </Page>
  );
}

interface CareTeamMember {
  user: string;
  role: string;
  added_at: string;
}

/**
 * Starting a conversation about `patient` with people of their care team: a patient
 * writing to their own team, or one of the team writing to the others.
 */
function StartConversation(props: { patient: string; members: CareTeamMember[]; me: string; threadBase: string }) {
  const [chosen, setChosen] = useState<string[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const others = props.members.filter((m) => m.user !== props.me);
  if (others.length === 0) {
    return <p class="empty">There is nobody else on the care team yet. The front desk adds people to it.</p>;
  }
  const start = async (event: Event) => {
    event.preventDefault();
    if (chosen.length === 0) return setError('Choose at least one person to write to.');
    setBusy(true);
    setError(null);
    try {
      const id = await startThread(props.patient, chosen);
      navigate(`${props.threadBase}/${id}`);
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };
  return (
    <form onSubmit={start}>
      <fieldset>
        <legend>Who to write to</legend>
        <p class="hint">
          Haven does not show people's names yet: each person is shown by their role and the end of their Haven id.
        </p>
        {others.map((m) => {
          const role = m.role in roleNames ? roleNames[m.role as Role] : m.role;
          return (
            <label class="check" key={m.user}>
              <input
                type="checkbox"
                checked={chosen.includes(m.user)}
                onChange={(e) =>
                  setChosen(e.currentTarget.checked ? [...chosen, m.user] : chosen.filter((u) => u !== m.user))
                }
              />
              {role} (…{m.user.slice(-6)})
            </label>
          );
        })}
      </fieldset>
      <ErrorNote error={error} />
      <button type="submit" class="primary" disabled={busy}>
        {busy ? 'Starting…' : 'Start the conversation'}
      </button>
    </form>
  );
}

/** A patient starts a conversation with people of their care team. */
export function NewConversation(props: { patient: string; base: string }) {
  const messaging = useMessaging()!;
  const team = useLoad(
    () => api<{ members: CareTeamMember[] }>('GET', `/api/v1/patients/${props.patient}/care-team`),
    [props.patient],
  );
  return (
    <Page title="New conversation" lead="Write to the people who look after you.">
      <DeviceNotice />
      <section class="card" aria-labelledby="new-conversation-team">
        <h2 id="new-conversation-team">Your care team</h2>
        <Show loaded={team} what="your care team">
          {({ members }) => (
            <StartConversation patient={props.patient} members={members} me={messaging.me} threadBase={props.base} />
          )}
        </Show>
      </section>
    </Page>
  );
}

/** One of a patient's care team starts a conversation with others of the team, about them. */
export function TeamConversation(props: { patient: string }) {
  const messaging = useMessaging()!;
  const loaded = useLoad(
    () =>
      Promise.all([
        api<PatientSummary>('GET', `/api/v1/patients/${props.patient}`),
        api<{ members: CareTeamMember[] }>('GET', `/api/v1/patients/${props.patient}/care-team`),
      ]),
    [props.patient],
  );
  return (
    <Page title="Message the care team" windowTitle="New conversation">
      <DeviceNotice />
      <Show loaded={loaded} what="the care team">
        {([patient, { members }]) => (
          <section class="card" aria-labelledby="team-conversation">
            <h2 id="team-conversation">About {fullName(patient)}</h2>
            <p class="hint">
              A conversation among the staff caring for this patient; the patient does not take part. Haven has no way yet
              to start one with the patient: they write to you from their portal, and you answer there.
            </p>
            <StartConversation patient={props.patient} members={members} me={messaging.me} threadBase="/workspace/messages" />
          </section>
        )}
      </Show>
    </Page>
  );
}

/** The state of a conversation on screen. */
interface Loaded {
  thread: Thread;
  key: LogKey;
  devices: CheckedDevice[];
  messages: OpenedMessage[];
  fresh: NewDevice[];
}

export function ThreadPage(props: { thread: string; base: string }) {
  const messaging = useMessaging()!;
  const { device } = messaging;
  return (
    <Page title="Conversation" windowTitle="Messages">
      <p>
        <Link href={props.base}>All conversations</Link>
      </p>
      <DeviceNotice />
      {device.state === 'ready' && <Conversation key={device.id} thread={props.thread} device={device} messaging={messaging} />}
    </Page>
  );
}

function Conversation(props: { thread: string; device: ReadyDevice; messaging: Messaging }) {
  const { thread: threadId, device, messaging } = props;
  const { me } = messaging;
  const staff = messaging.role !== 'patient';
  const [state, setState] = useState<Loaded | null>(null);
  const [failure, setFailure] = useState<unknown>(null);
  const [patientName, setPatientName] = useState<string | null>(null);
  // Work on the conversation, one step at a time, so that nudges arriving together do not
  // fetch the same messages twice.
  const queue = useRef<Promise<unknown>>(Promise.resolve());
  const latest = useRef<Loaded | null>(null);
  latest.current = state;
  const alive = useRef(true);
  useEffect(
    () => () => {
      alive.current = false;
    },
    [],
  );

  const update = (next: Loaded) => {
    if (!alive.current) return;
    latest.current = next;
    setState(next);
  };

  const markRead = (loaded: Loaded) => {
    const mine = loaded.thread.participants.find((p) => p.user === me);
    const last = loaded.messages[loaded.messages.length - 1];
    if (!last || !mine || mine.read_seq >= last.seq || document.visibilityState !== 'visible') return;
    apiInBackground('POST', `/api/v1/threads/${threadId}/read`, { seq: last.seq }).then(
      () => messaging.refreshUnread(),
      () => undefined,
    );
  };

  /** Opens messages, checking each against its sender device's key. */
  const open = async (wire: Awaited<ReturnType<typeof fetchMessages>>, devices: CheckedDevice[]) => {
    const keys = await rememberedSigningKeys(me);
    // Only devices the log proves (now, or when first seen here) are believed about who wrote.
    for (const c of devices) if (c.verified && c.signingPublicKey) keys.set(c.device.id, c.signingPublicKey);
    return Promise.all(wire.map((m) => openOne(threadId, m, device, keys)));
  };

  const run = (step: () => Promise<void>) => {
    queue.current = queue.current.then(step).catch((error) => alive.current && setFailure(error));
    return queue.current;
  };

  /** Everything, from the start. */
  const loadAll = (background: boolean) =>
    run(async () => {
      const key = await logKey(background);
      const [thread, devices] = await Promise.all([
        fetchThread(threadId, background),
        fetchCheckedDevices(threadId, key, background),
      ]);
      const fresh = await newDevices(me, device.id, devices);
      const messages = await open(await fetchMessages(threadId, device.id, 0, background), devices);
      const loaded = { thread, key, devices, messages, fresh };
      update(loaded);
      setFailure(null);
      markRead(loaded);
      if (staff && thread.patient && patientName === null) {
        api<PatientSummary>('GET', `/api/v1/patients/${thread.patient}`).then(
          (p) => alive.current && setPatientName(fullName(p)),
          () => undefined,
        );
      }
    });

  /** Messages after the last one shown. */
  const loadNewer = () =>
    run(async () => {
      const current = latest.current;
      if (!current) return;
      const after = current.messages[current.messages.length - 1]?.seq ?? 0;
      const [thread, wire] = await Promise.all([fetchThread(threadId, true), fetchMessages(threadId, device.id, after, true)]);
      const opened = await open(wire, current.devices);
      const seen = new Set(current.messages.map((m) => m.seq));
      const messages = [...current.messages, ...opened.filter((m) => !seen.has(m.seq))].sort((a, b) => a.seq - b.seq);
      const loaded = { ...current, thread, messages };
      update(loaded);
      markRead(loaded);
    });

  /** The devices again (someone's changed), and who takes part. */
  const recheck = () =>
    run(async () => {
      const current = latest.current;
      if (!current) return;
      const key = await logKey(true);
      const [thread, devices] = await Promise.all([fetchThread(threadId, true), fetchCheckedDevices(threadId, key, true)]);
      const fresh = await newDevices(me, device.id, devices);
      update({ ...current, thread, key, devices, fresh });
    });

  useEffect(() => {
    loadAll(false);
    // A conversation open in a tab in the background is marked read when the person comes
    // back to it, not before.
    const onVisible = () => {
      if (latest.current) markRead(latest.current);
    };
    document.addEventListener('visibilitychange', onVisible);
    return () => document.removeEventListener('visibilitychange', onVisible);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [threadId]);

  useEvents((event) => {
    if (event.type === 'reconnected') return void loadAll(true);
    if (event.type === 'devices') {
      const current = latest.current;
      if (current?.thread.participants.some((p) => p.user === event.user)) recheck();
      return;
    }
    if (event.thread !== threadId) return;
    if (event.type === 'message') loadNewer();
    else if (event.type === 'participants') recheck();
    else if (event.type === 'read') {
      run(async () => {
        const current = latest.current;
        if (current) update({ ...current, thread: await fetchThread(threadId, true) });
      });
    }
  });

  if (!state) {
    return failure ? <ErrorNote error={problemText(failure)} /> : <Loading what="the conversation" />;
  }
  const { thread, devices, messages } = state;
  const roles = rolesOf(devices);
  const others = thread.participants.filter((p) => p.removed_at === null && p.user !== me);
  const name = (user: string) => personName(user, me, roles.get(user));
  const withheld = devices.filter((c) => !c.verified);
  const withoutDevices = others.filter((p) => !devices.some((c) => c.device.user === p.user));
  const myLast = [...messages].reverse().find((m) => m.sender === me);
  const seen = myLast !== undefined && others.length > 0 && others.every((p) => p.read_seq >= myLast.seq);

  return (
    <>
      <p class="lead" data-testid="thread-with">
        With {others.length > 0 ? others.map((p) => name(p.user)).join(', ') : 'nobody else'}
        {thread.patient && staff && (
          <>
            {' '}
            · about {patientName ?? 'a patient'} (<Link href={`/workspace/patients/${thread.patient}`}>open the chart</Link>)
          </>
        )}
      </p>
      <ErrorNote error={failure && problemText(failure)} />
      {state.key.state === 'changed' && <LogKeyChanged served={state.key.served} onTrusted={() => loadAll(false)} />}
      {withheld.length > 0 && (
        <section class="card warn" aria-labelledby="withheld-title" role="alert" data-testid="withheld-warning">
          <h2 id="withheld-title">Some devices are not sent your messages</h2>
          <ul>
            {withheld.map((c) => (
              <li key={c.device.id}>
                {name(c.device.user)}’s device “{c.device.label}” is withheld: {c.reason}. Haven lists it, but it could not be
                verified, so it cannot read what you send. If they did not add it, someone may be trying to read along: tell
                your clinic.
              </li>
            ))}
          </ul>
        </section>
      )}
      {state.fresh.length > 0 && (
        <section class="notice" role="status" aria-labelledby="new-devices-title" data-testid="new-devices">
          <h2 id="new-devices-title">New devices</h2>
          <ul>
            {state.fresh.map(({ checked }) => (
              <li key={checked.device.id}>
                {checked.device.user === me ? 'You have' : `${name(checked.device.user)} has`} a new device “
                {checked.device.label}” — safety number <code>{safetyNumberOf(checked.device.fingerprint)}</code>;{' '}
                {checked.device.user === me ? 'check that it is yours' : 'compare it with them'}.
              </li>
            ))}
          </ul>
          <button
            type="button"
            class="small"
            onClick={async () => {
              await acknowledgeDevices(
                me,
                state.fresh.map((f) => f.checked),
              );
              update({ ...state, fresh: [] });
            }}
          >
            I have noted {state.fresh.length === 1 ? 'it' : 'them'}
          </button>
        </section>
      )}
      {withoutDevices.length > 0 && (
        <p class="notice" data-testid="without-devices">
          {withoutDevices.map((p) => name(p.user)).join(', ')} {withoutDevices.length === 1 ? 'has' : 'have'} not set up
          secure messages on any device yet, so they cannot read this conversation until they sign in to Haven.
        </p>
      )}
      <section aria-labelledby="messages-title">
        <h2 id="messages-title" class="visually-hidden">
          Messages
        </h2>
        {messages.length === 0 ? (
          <p class="empty">No messages yet. Write the first one below.</p>
        ) : (
          <ol class="messages" role="log" aria-labelledby="messages-title" data-testid="messages">
            {messages.map((m) => (
              <MessageItem
                key={m.seq}
                message={m}
                mine={m.sender === me}
                sender={name(m.sender)}
                thread={threadId}
                seen={seen && m === myLast}
                fileTo={staff ? thread.patient : null}
                fromPatient={roles.get(m.sender) === 'patient'}
              />
            ))}
          </ol>
        )}
      </section>
      <Compose
        thread={threadId}
        device={device}
        logKey={state.key}
        onChecked={(checked) => {
          const current = latest.current;
          if (current) update({ ...current, devices: checked });
        }}
        onSent={() => loadNewer()}
      />
      <SafetyNumbers devices={devices} participants={thread.participants.filter((p) => p.removed_at === null)} me={me} device={device} />
    </>
  );
}

function LogKeyChanged(props: { served: string; onTrusted: () => void }) {
  const [confirming, setConfirming] = useState(false);
  return (
    <section class="card warn" role="alert" aria-labelledby="log-key-title" data-testid="log-key-changed">
      <h2 id="log-key-title">Warning: Haven's audit log has a new key</h2>
      <p>
        Haven now signs its audit log with a different key from the one this browser first saw. Devices cannot be checked
        against the log, so nothing is sent to them. If your clinic did not tell you that they changed the key, someone may
        be trying to read your messages: tell your clinic before you go on.
      </p>
      {confirming ? (
        <p class="actions">
          <button
            type="button"
            class="danger"
            onClick={async () => {
              await trustServedLogKey(props.served);
              props.onTrusted();
            }}
          >
            Yes, my clinic changed it: trust the new key
          </button>
          <button type="button" onClick={() => setConfirming(false)}>
            Cancel
          </button>
        </p>
      ) : (
        <button type="button" onClick={() => setConfirming(true)}>
          Trust the new key…
        </button>
      )}
    </section>
  );
}

function MessageItem(props: {
  message: OpenedMessage;
  mine: boolean;
  sender: string;
  thread: string;
  seen: boolean;
  /** The patient to file to, for staff in a conversation about one. */
  fileTo: string | null;
  fromPatient: boolean;
}) {
  const { message } = props;
  const body: MessageBody | null = message.body;
  return (
    <li class={props.mine ? 'mine' : undefined} data-seq={message.seq}>
      <p class="meta">
        <strong>{props.sender}</strong> <time dateTime={message.sentAt}>{when(message.sentAt)}</time>
      </p>
      {body ? (
        body.text && <p class="message-text">{body.text}</p>
      ) : (
        <p class="problem">{message.problem}</p>
      )}
      {body && body.attachments.length > 0 && (
        <ul class="attachments">
          {body.attachments.map((a) => (
            <Attachment key={a.id} thread={props.thread} attachment={a} />
          ))}
        </ul>
      )}
      {props.fileTo && body && <FileToChart patient={props.fileTo} thread={props.thread} message={message} fromPatient={props.fromPatient} />}
      {props.seen && (
        <p class="seen" data-testid="seen">
          Seen
        </p>
      )}
    </li>
  );
}

function Attachment(props: { thread: string; attachment: MessageBody['attachments'][number] }) {
  const { attachment } = props;
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const download = async () => {
    setBusy(true);
    setError(null);
    try {
      saveFile(await openAttachmentFile(props.thread, attachment), attachment.name);
    } catch (e) {
      setError(e instanceof ApiError ? e.message : 'The file could not be opened: it may have been altered.');
    } finally {
      setBusy(false);
    }
  };
  return (
    <li>
      <span class="file-name">{attachment.name}</span> <span class="detail">{sizeText(attachment.size)}</span>
      <button type="button" class="small" onClick={download} disabled={busy}>
        {busy ? 'Decrypting…' : 'Download'}
        <span class="visually-hidden"> {attachment.name}</span>
      </button>
      {error && (
        <span class="error" role="alert">
          {error}
        </span>
      )}
    </li>
  );
}

function FileToChart(props: { patient: string; thread: string; message: OpenedMessage; fromPatient: boolean }) {
  const [state, setState] = useState<'idle' | 'busy' | 'done'>('idle');
  const [note, setNote] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  if (state === 'done') {
    return (
      <p class="ok" role="status">
        Filed to chart{note ? `. ${note}` : ''}
      </p>
    );
  }
  const file = async () => {
    setState('busy');
    setError(null);
    try {
      const filed = await fileToChart({ ...props });
      setNote(filed.skipped.length > 0 ? `Not filed: ${filed.skipped.join('; ')}.` : null);
      setState('done');
    } catch (e) {
      setError(problemText(e));
      setState('idle');
    }
  };
  return (
    <p class="file-to-chart">
      <button type="button" class="small" onClick={file} disabled={state === 'busy'}>
        {state === 'busy' ? 'Filing…' : 'File to chart'}
      </button>
      {error && (
        <span class="error" role="alert">
          {error}
        </span>
      )}
    </p>
  );
}

function Compose(props: {
  thread: string;
  device: ReadyDevice;
  logKey: LogKey;
  onChecked: (devices: CheckedDevice[]) => void;
  onSent: () => void;
}) {
  const [text, setText] = useState('');
  const [file, setFile] = useState<File | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const fileInput = useRef<HTMLInputElement>(null);
  const textArea = useRef<HTMLTextAreaElement>(null);
  const send = async (event: Event) => {
    event.preventDefault();
    if (!text.trim() && !file) return setError('Write a message or choose a file first.');
    setBusy(true);
    setError(null);
    try {
      await sendMessage({ thread: props.thread, device: props.device, key: props.logKey, text: text.trim(), file, onChecked: props.onChecked });
      setText('');
      setFile(null);
      if (fileInput.current) fileInput.current.value = '';
      props.onSent();
      textArea.current?.focus();
    } catch (e) {
      setError(problemText(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card compose" onSubmit={send} aria-labelledby="compose-title">
      <h2 id="compose-title">Write a message</h2>
      <div class="field">
        <label for="message-text">Message</label>
        <textarea
          id="message-text"
          ref={textArea}
          rows={4}
          maxLength={MESSAGE_CHARS_MAX}
          value={text}
          onInput={(e) => setText(e.currentTarget.value)}
        />
      </div>
      <div class="field">
        <label for="message-file">Attach a file (optional)</label>
        <p class="hint" id="message-file-hint">
          Up to {Math.round(ATTACHMENT_FILE_BYTES_MAX / 1024 / 1024)} MB. It is encrypted in this browser before it is sent.
        </p>
        <input
          id="message-file"
          ref={fileInput}
          type="file"
          aria-describedby="message-file-hint"
          onChange={(e) => setFile(e.currentTarget.files?.[0] ?? null)}
        />
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <button type="submit" class="primary" disabled={busy}>
        {busy ? 'Encrypting and sending…' : 'Send'}
      </button>
    </form>
  );
}

function SafetyNumbers(props: {
  devices: CheckedDevice[];
  participants: Thread['participants'];
  me: string;
  device: ReadyDevice;
}) {
  const [open, setOpen] = useState(false);
  const roles = rolesOf(props.devices);
  return (
    <section class="card" aria-labelledby="safety-title">
      <h2 id="safety-title">Devices and safety numbers</h2>
      <p>
        Every device that can read this conversation has a safety number. To be sure nobody else reads along, compare the
        numbers with the people you write to, in person or on a call: theirs should match what they see on their own
        account page.
      </p>
      <button type="button" aria-expanded={open} aria-controls="safety-list" onClick={() => setOpen(!open)}>
        {open ? 'Hide the devices' : 'Show the devices'}
      </button>
      {open && (
        <div id="safety-list" data-testid="safety-list">
          {props.participants.map((p) => {
            const theirs = props.devices.filter((c) => c.device.user === p.user);
            return (
              <div key={p.user}>
                <h3>{personName(p.user, props.me, roles.get(p.user))}</h3>
                {theirs.length === 0 ? (
                  <p class="empty">No devices: they cannot read messages yet.</p>
                ) : (
                  <ul class="plain">
                    {theirs.map((c) => (
                      <li key={c.device.id}>
                        <strong>{c.device.label}</strong>
                        {c.device.id === props.device.id && ' (this browser)'}
                        <span class="detail">
                          Safety number <code class="safety-number">{safetyNumberOf(c.device.fingerprint)}</code> · added{' '}
                          {when(c.device.added_at)}
                        </span>
                        {c.verified ? (
                          <span class="verified">Verified in the transparency log</span>
                        ) : (
                          <span class="error">Withheld: {c.reason}</span>
                        )}
                      </li>
                    ))}
                  </ul>
                )}
              </div>
            );
          })}
        </div>
      )}
    </section>
  );
}
