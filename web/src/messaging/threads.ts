// Conversations as the app uses them: Haven's answers, messages opened on this device, and
// messages sealed here for every verified device of the conversation. Nothing opened is
// stored anywhere: callers keep it in their components' state.
import { ApiError, api, apiBytes, apiInBackground, apiUpload, fhir } from '../api';
import {
  type AttachmentRef,
  type MessageBody,
  E2eError,
  MESSAGE_BODY_BYTES_MAX,
  decodeBase64,
  decodeMessageBody,
  encodeBase64,
  encodeMessageBody,
  openAttachment,
  openMessage,
  sealAttachment,
  sealMessage,
} from '../e2e';
import { type Role, roleNames } from '../session';
import type { DeviceList, ThisDevice } from './device';
import { type CheckedDevice, type LogKey, checkDevices } from './trust';

export interface Participant {
  user: string;
  added_at: string;
  removed_at: string | null;
  read_seq: number;
  read_at: string | null;
}

export interface Thread {
  id: string;
  patient: string | null;
  created_by: string;
  created_at: string;
  last_message_seq: number;
  last_message_at: string | null;
  participants: Participant[];
}

export interface ThreadSummary {
  id: string;
  patient: string | null;
  created_at: string;
  last_message_seq: number;
  last_message_at: string | null;
  unread: number;
}

export interface Inbox {
  unread: number;
  items: ThreadSummary[];
}

interface WireMessage {
  seq: number;
  id: string;
  sender: string;
  sender_device: string;
  sent_at: string;
  ciphertext: string;
  signature: string;
  key: { enc: string; sealed_key: string } | null;
}

/** A message as this device read it. */
export interface OpenedMessage {
  seq: number;
  id: string;
  sender: string;
  senderDevice: string;
  sentAt: string;
  /** What it says; `null` when it could not be opened here (`problem` says why). */
  body: MessageBody | null;
  problem: string | null;
}

/** The largest sealed attachment Haven keeps (`ATTACHMENT_BYTES_MAX` in crates/app). */
export const SEALED_ATTACHMENT_BYTES_MAX = 25 * 1024 * 1024;
/** The largest file that fits, once its nonce and tag are added. */
export const ATTACHMENT_FILE_BYTES_MAX = SEALED_ATTACHMENT_BYTES_MAX - 12 - 16;
/** Messages fetched per request. */
const MESSAGES_PAGE = 100;
/** Room in a body for its JSON and one attachment's name, type, key and digest. */
const BODY_OVERHEAD_BYTES = 2048;
/** Attempts to send when the conversation's devices change under the sender. */
const SEND_ATTEMPTS_MAX = 3;

function utf8Length(text: string): number {
  return new TextEncoder().encode(text).length;
}

/** "Clinician (…3f9a2c)": Haven has no display names for people yet, so a role and a short id. */
export function personName(user: string, me: string, role: Role | null | undefined): string {
  if (user === me) return 'You';
  return `${role ? roleNames[role] : 'Someone'} (…${user.slice(-6)})`;
}

/** Each participant's role, from the log entries of their devices (verified ones first). */
export function rolesOf(devices: CheckedDevice[]): Map<string, Role> {
  const roles = new Map<string, Role>();
  for (const c of [...devices].sort((a, b) => Number(b.verified) - Number(a.verified))) {
    if (c.role && !roles.has(c.device.user)) roles.set(c.device.user, c.role);
  }
  return roles;
}

export function fetchThread(id: string, background = false): Promise<Thread> {
  return (background ? apiInBackground<Thread> : api<Thread>)('GET', `/api/v1/threads/${id}`);
}

export async function fetchCheckedDevices(thread: string, key: LogKey, background = false): Promise<CheckedDevice[]> {
  const list = await (background ? apiInBackground<DeviceList> : api<DeviceList>)('GET', `/api/v1/threads/${thread}/devices`);
  return checkDevices(list, key);
}

/** Every message after `after`, page by page, for this device. */
export async function fetchMessages(thread: string, device: string, after: number, background = false): Promise<WireMessage[]> {
  const get = background ? apiInBackground<{ items: WireMessage[]; next: string | null }> : api<{ items: WireMessage[]; next: string | null }>;
  const all: WireMessage[] = [];
  let path: string | null = `/api/v1/threads/${thread}/messages?device=${device}&after=${after}&limit=${MESSAGES_PAGE}`;
  while (path) {
    const page = await get('GET', path);
    all.push(...page.items);
    path = page.next;
  }
  return all;
}

/** Opens a message with this device's keys, after checking its sender's signature. */
export async function openOne(
  thread: string,
  message: WireMessage,
  device: Extract<ThisDevice, { state: 'ready' }>,
  signingKeys: Map<string, Uint8Array<ArrayBuffer>>,
): Promise<OpenedMessage> {
  const opened: OpenedMessage = {
    seq: message.seq,
    id: message.id,
    sender: message.sender,
    senderDevice: message.sender_device,
    sentAt: message.sent_at,
    body: null,
    problem: null,
  };
  if (!message.key) {
    return { ...opened, problem: 'Sent before this browser was set up for messages, so it cannot be read here.' };
  }
  const senderKey = signingKeys.get(message.sender_device);
  if (!senderKey) {
    return { ...opened, problem: 'Sent from a device that is no longer listed, so it cannot be checked and is not shown.' };
  }
  try {
    const plaintext = await openMessage({
      threadId: thread,
      messageId: message.id,
      ciphertext: decodeBase64(message.ciphertext, 'ciphertext'),
      enc: decodeBase64(message.key.enc, 'enc'),
      sealedKey: decodeBase64(message.key.sealed_key, 'sealed key'),
      signature: decodeBase64(message.signature, 'signature'),
      senderSigningKey: senderKey,
      recipientKey: device.keys.hpke,
    });
    return { ...opened, body: decodeMessageBody(plaintext) };
  } catch (error) {
    if (error instanceof E2eError && error.code === 'bad_signature') {
      return { ...opened, problem: 'This message is not signed by the device it claims to come from. It is not shown.' };
    }
    if (error instanceof E2eError && error.code === 'unsupported') {
      return { ...opened, problem: 'This message was written by a newer version of Haven. Reload the page to read it.' };
    }
    return { ...opened, problem: 'This message could not be opened in this browser.' };
  }
}

/** What became of a message sent. */
export interface Sent {
  seq: number;
  /** Devices that were not sent the message, because they could not be verified. */
  withheld: CheckedDevice[];
}

/** Why a message could not be sent, in words for the person; the cause is for the console. */
export class SendError extends Error {}

/**
 * Seals `text` (and `file`, if any) on this device for every verified device of the
 * conversation, withholding the others, and posts it. When the devices change meanwhile
 * (Haven answers `recipients_changed`), they are fetched, checked and sealed to again.
 */
export async function sendMessage(params: {
  thread: string;
  device: Extract<ThisDevice, { state: 'ready' }>;
  key: LogKey;
  text: string;
  file: File | null;
  /** Told the devices checked for each attempt, so the page shows what was withheld. */
  onChecked: (devices: CheckedDevice[]) => void;
}): Promise<Sent> {
  const { thread, device } = params;
  // What a file adds to the body (its name, type, key and digest) is small: the text decides.
  if (utf8Length(params.text) > MESSAGE_BODY_BYTES_MAX - BODY_OVERHEAD_BYTES) {
    throw new SendError(`This message is too long: at most ${MESSAGE_BODY_BYTES_MAX / 1024} KiB of text. Send long documents as a file.`);
  }
  let plaintext: Uint8Array<ArrayBuffer> | null = null;
  for (let attempt = 1; ; attempt++) {
    const checked = await fetchCheckedDevices(thread, params.key);
    params.onChecked(checked);
    const recipients = checked.filter((c) => c.verified && c.hpkePublicKey);
    const withheld = checked.filter((c) => !recipients.includes(c));
    if (!recipients.some((c) => c.device.user !== device.keys.userId)) {
      throw new SendError(
        'Nobody else in this conversation has a device that could be verified (or they have not signed in since secure messages began), so nobody could read it: it was not sent.',
      );
    }
    // The file is sealed and uploaded once, when there is someone to send it to.
    if (plaintext === null) {
      const attachments: AttachmentRef[] = params.file ? [await uploadAttachment(thread, params.file)] : [];
      plaintext = encodeMessageBody({ text: params.text, attachments });
    }
    const messageId = crypto.randomUUID();
    const sealed = await sealMessage({
      threadId: thread,
      messageId,
      plaintext,
      recipients: recipients.map((c) => ({ deviceId: c.device.id, hpkePublicKey: c.hpkePublicKey! })),
      signer: device.keys.signing.privateKey,
    });
    try {
      const answer = await api<{ id: string; seq: number }>('POST', `/api/v1/threads/${thread}/messages`, {
        id: messageId,
        sender_device: device.id,
        ciphertext: encodeBase64(sealed.ciphertext),
        signature: encodeBase64(sealed.signature),
        keys: sealed.keys.map((k) => ({ device: k.device, enc: encodeBase64(k.enc), sealed_key: encodeBase64(k.sealed_key) })),
        withheld_devices: withheld.map((c) => c.device.id),
      });
      return { seq: answer.seq, withheld };
    } catch (error) {
      if (error instanceof ApiError && error.code === 'recipients_changed' && attempt < SEND_ATTEMPTS_MAX) continue;
      throw error;
    }
  }
}

/** Seals a file under a fresh key and uploads it; the key goes into the message body. */
async function uploadAttachment(thread: string, file: File): Promise<AttachmentRef> {
  if (file.size > ATTACHMENT_FILE_BYTES_MAX) {
    throw new SendError(`This file is too large to send: at most ${Math.floor(ATTACHMENT_FILE_BYTES_MAX / 1024 / 1024)} MB.`);
  }
  const id = crypto.randomUUID();
  const bytes = new Uint8Array(await file.arrayBuffer());
  const sealed = await sealAttachment({ attachmentId: id, file: bytes });
  await apiUpload('PUT', `/api/v1/threads/${thread}/attachments/${id}`, sealed.blob, 'application/octet-stream');
  return {
    id,
    // Names and types are the sender's words: bounded as the body format requires.
    name: (file.name || 'file').slice(0, 255),
    type: (file.type || 'application/octet-stream').slice(0, 255),
    size: bytes.length,
    key: sealed.key,
    sha256: sealed.sha256,
  };
}

/** Downloads an attachment, opens it here and checks it is the file the message names. */
export async function openAttachmentFile(thread: string, ref: AttachmentRef): Promise<Uint8Array<ArrayBuffer>> {
  const blob = await apiBytes(`/api/v1/threads/${thread}/attachments/${ref.id}`);
  return openAttachment({ attachmentId: ref.id, key: ref.key, blob, sha256: ref.sha256 });
}

/** Hands a file to the browser to save, from memory (a Blob URL), never rendered here. */
export function saveFile(bytes: Uint8Array<ArrayBuffer>, name: string): void {
  // As bytes of no particular type: the file is saved, not opened inside Haven's origin.
  const url = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
  const link = document.createElement('a');
  link.href = url;
  link.download = name.replace(/[\\/:*?"<>|\u0000-\u001f]/g, '_') || 'file';
  document.body.append(link);
  link.click();
  link.remove();
  // After the browser has taken the file.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** File types the chart keeps (`CONTENT_TYPES` in crates/app/src/attachments.rs). */
const CHART_FILE_TYPES = ['application/pdf', 'image/png', 'image/jpeg', 'application/dicom', 'text/plain', 'audio/webm', 'video/webm', 'audio/mp4', 'video/mp4'];
/** FHIR strings hold at most this many characters (`STRING_CHARS_MAX` in crates/fhir). */
const FHIR_STRING_CHARS_MAX = 4096;
/** Inline base64 in a FHIR resource (`BASE64_CHARS_MAX` in crates/fhir). */
const FHIR_BASE64_CHARS_MAX = 262_144;

/** What filing a message to the chart did. */
export interface Filed {
  communication: string;
  /** Attachments left out, with why. */
  skipped: string[];
}

/**
 * Files a message in the patient's chart as a FHIR `Communication`: its text as the
 * payload, and each attachment of a type the chart keeps as a `Binary` it refers to. The
 * chart seals what it holds under the patient's key, as it does every record.
 */
export async function fileToChart(params: {
  patient: string;
  thread: string;
  message: OpenedMessage;
  fromPatient: boolean;
}): Promise<Filed> {
  const { patient, message } = params;
  const body = message.body;
  if (!body) throw new SendError('This message could not be opened, so there is nothing to file.');
  const payload: Record<string, unknown>[] = [];
  const text = body.text.trim();
  if (text.length > 0 && text.length <= FHIR_STRING_CHARS_MAX) {
    payload.push({ contentString: text });
  } else if (text.length > 0) {
    const data = encodeBase64(new TextEncoder().encode(text));
    if (data.length > FHIR_BASE64_CHARS_MAX) throw new SendError('This message is too long to file in the chart.');
    payload.push({ contentAttachment: { contentType: 'text/plain', data, title: 'Message text' } });
  }
  const skipped: string[] = [];
  for (const ref of body.attachments) {
    if (!CHART_FILE_TYPES.includes(ref.type)) {
      skipped.push(`${ref.name}: the chart does not keep files of type ${ref.type || 'unknown'}`);
      continue;
    }
    try {
      const bytes = await openAttachmentFile(params.thread, ref);
      const binary = await apiUpload<{ id: string }>('POST', '/fhir/Binary', bytes, ref.type, {
        'x-security-context': `Patient/${patient}`,
      });
      payload.push({ contentAttachment: { contentType: ref.type, url: `Binary/${binary.id}`, title: ref.name.slice(0, 200), size: ref.size } });
    } catch (error) {
      skipped.push(`${ref.name}: ${error instanceof ApiError ? error.message : 'it could not be opened'}`);
    }
  }
  if (payload.length === 0) throw new SendError('There is nothing in this message the chart can keep.');
  const communication = await fhir<{ id: string }>('POST', 'Communication', {
    resourceType: 'Communication',
    // The message's own id, so the entry can be traced to the conversation.
    identifier: [{ system: 'urn:ietf:rfc:3986', value: `urn:uuid:${message.id}` }],
    status: 'completed',
    category: [{ text: 'Secure message' }],
    medium: [
      { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationMode', code: 'WRITTEN', display: 'written' }] },
    ],
    subject: { reference: `Patient/${patient}` },
    sent: new Date(message.sentAt).toISOString(),
    ...(params.fromPatient ? { sender: { reference: `Patient/${patient}` } } : {}),
    payload,
  });
  return { communication: communication.id, skipped };
}

/** Starts a conversation and returns its id. */
export async function startThread(patient: string | null, participants: string[]): Promise<string> {
  const thread = await api<Thread>('POST', '/api/v1/threads', { patient, participants });
  return thread.id;
}

/** A byte count for people. */
export function sizeText(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
