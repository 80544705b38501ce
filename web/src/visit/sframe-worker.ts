// The frame transform worker of video visits: every encoded audio and video frame of the
// call passes through here (WebRTC Encoded Transform, `RTCRtpScriptTransform`), and leaves
// sealed with SFrame (sframe.ts) on the way out, opened on the way in.
//
// A worker, because that is where the browser hands over encoded frames, and the work on
// each frame stays off the page's thread. One worker serves the whole call (media-e2ee.ts
// makes it once): every sender transform, audio and video, to every peer of the mesh,
// seals under the one send key with the one counter kept here, so no two frames ever share
// a nonce, however many peer connections carry them.
//
// Frames out: clear codec prefix ‖ SFrame header ‖ ciphertext ‖ tag (see sframe.ts's media
// framing: VP8 keeps 10 bytes of a key frame and 3 of a delta frame readable, Opus 1, so
// Chromium's packetizers still work; those bytes are authenticated as SFrame metadata).
// Frames in: opened with the sending participant's keys, or dropped and counted: a frame
// that does not open is never passed on, sealed or not. Frames of a codec other than VP8 or
// Opus (as the frame's metadata names it) are dropped both ways: the framing knows no other.
//
// Messages from the page (each with a numeric `id`, answered once with the same `id`):
//   { type: 'setSendKey', kid, baseKey, suite? }        seal from now on under this key
//   { type: 'addReceiveKey', participant, kid, baseKey, suite? }
//   { type: 'removeReceiveKey', participant, kid, afterMs? }   afterMs: grace for frames in flight
//   { type: 'removeParticipant', participant }          forget all of a participant's keys
//   { type: 'probe', count }     answers, once `count` more frames went out, with each one's
//                                input and output bytes, kind, KID and CTR (a newer probe
//                                supersedes a waiting one, which is answered `probe_superseded`)
//   { type: 'stats' }            frames sealed, opened, dropped by reason; the KIDs held
// Answers: { id, ok: true, result } or { id, ok: false, error: { code, message } }.
// KIDs are bigints; a base key is an HKDF CryptoKey (deriveBits) or raw bytes.
// Transform options (`new RTCRtpScriptTransform(worker, options)`):
//   { role: 'encrypt' | 'decrypt', kind: 'audio' | 'video', participant: string }
// where `participant` names the peer whose keys open a receiver's frames (for a sender it
// only labels the stream in probes).
import {
  type CipherSuiteId,
  DEFAULT_CIPHER_SUITE,
  type MediaKind,
  SFrameError,
  type SFrameErrorCode,
  SFrameReceiveContext,
  SFrameSendContext,
  cipherSuite,
  importBaseKey,
  openMediaFrame,
  sealMediaFrame,
} from './sframe';

// ------------------------------------------------------------------------------------------
// Limits
// ------------------------------------------------------------------------------------------

/** Peers whose keys are held at once: a visit has at most four people, who may rejoin. */
export const PARTICIPANTS_MAX = 16;
/**
 * Keys held for one peer: the current one and those still in their grace period. A peer
 * rotating faster than that loses its oldest frames in flight, nothing more.
 */
export const RECEIVE_KEYS_PER_PARTICIPANT_MAX = 4;
/** The KIDs this worker has sealed under, kept so none is used twice; one per rotation. */
export const SEND_KEYS_PER_WORKER_MAX = 1024;
/** The longest grace before a removed key goes. */
export const REMOVE_AFTER_MS_MAX = 60_000;
/** The most frames one probe captures (each is kept whole, twice). */
export const PROBE_FRAMES_MAX = 64;
/** The longest participant label. */
export const PARTICIPANT_LABEL_CHARS_MAX = 128;

// ------------------------------------------------------------------------------------------
// The protocol (shared with media-e2ee.ts, which imports these types only)
// ------------------------------------------------------------------------------------------

export type TransformRole = 'encrypt' | 'decrypt';

export interface TransformOptions {
  readonly role: TransformRole;
  readonly kind: MediaKind;
  readonly participant: string;
}

export type BaseKeyInput = CryptoKey | ArrayBuffer | Uint8Array;

export type WorkerRequest =
  | { id: number; type: 'setSendKey'; kid: bigint; baseKey: BaseKeyInput; suite?: CipherSuiteId }
  | { id: number; type: 'addReceiveKey'; participant: string; kid: bigint; baseKey: BaseKeyInput; suite?: CipherSuiteId }
  | { id: number; type: 'removeReceiveKey'; participant: string; kid: bigint; afterMs?: number }
  | { id: number; type: 'removeParticipant'; participant: string }
  | { id: number; type: 'probe'; count: number }
  | { id: number; type: 'stats' };

/** Why a request was refused: SFrame's own codes, and the worker's. */
export type WorkerErrorCode = SFrameErrorCode | 'bad_request' | 'kid_reused' | 'too_many_participants' | 'probe_superseded' | 'internal';

export type WorkerReply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: { code: WorkerErrorCode; message: string } };

/** Why a frame was dropped. */
export type DropReason =
  /** An outgoing frame before any send key was set: nothing goes out in the clear. */
  | 'no_send_key'
  /** An incoming frame under a KID not (or no longer) held for its participant. */
  | 'unknown_kid'
  /** An incoming frame that did not authenticate. */
  | 'authentication_failed'
  /** A frame too short for its codec header, or a bad SFrame header. */
  | 'malformed'
  | 'frame_too_large'
  /** The send key sealed 2^64 frames; a new one is needed. */
  | 'counter_exhausted'
  /**
   * A codec other than VP8 or Opus: the clear prefix is defined for those two only, so any
   * other is neither sealed nor opened (media-e2ee.ts restricts the negotiation to them).
   */
  | 'unsupported_codec'
  /** Anything else (a WebCrypto failure): counted, never passed through. */
  | 'internal';

export interface TransformStats {
  encrypted: number;
  decrypted: number;
  dropped: Record<DropReason, number>;
  /** The KID frames are sealed under now. */
  sendKid: bigint | null;
  /** Each participant's KIDs, oldest first. */
  receiveKids: Record<string, bigint[]>;
}

/** One outgoing frame as a probe saw it: what the encoder made, and what left. */
export interface ProbedFrame {
  kind: MediaKind;
  participant: string;
  kid: bigint;
  ctr: bigint;
  clearBytes: number;
  input: ArrayBuffer;
  output: ArrayBuffer;
}

// ------------------------------------------------------------------------------------------
// The worker's scope, typed here: the app is compiled with the DOM library, not WebWorker's,
// and the two cannot be loaded together.
// ------------------------------------------------------------------------------------------

interface EncodedFrame {
  data: ArrayBuffer;
  /** Chromium's frames carry their codec's MIME type here. */
  getMetadata?(): { mimeType?: string };
}

interface ScriptTransformer {
  readonly readable: ReadableStream<EncodedFrame>;
  readonly writable: WritableStream<EncodedFrame>;
  readonly options: unknown;
}

interface WorkerScope {
  onrtctransform: ((event: Event & { readonly transformer: ScriptTransformer }) => void) | null;
  onmessage: ((event: MessageEvent<unknown>) => void) | null;
  postMessage(message: unknown, transfer?: Transferable[]): void;
}

const scope = self as unknown as WorkerScope;

// ------------------------------------------------------------------------------------------
// State
// ------------------------------------------------------------------------------------------

let sender: SFrameSendContext | null = null;
const usedSendKids = new Set<bigint>();
const receivers = new Map<string, SFrameReceiveContext>();
const removals = new Map<string, ReturnType<typeof setTimeout>>();
const counts = {
  encrypted: 0,
  decrypted: 0,
  dropped: {
    no_send_key: 0,
    unknown_kid: 0,
    authentication_failed: 0,
    malformed: 0,
    frame_too_large: 0,
    counter_exhausted: 0,
    unsupported_codec: 0,
    internal: 0,
  } satisfies Record<DropReason, number>,
};
let probe: { id: number; count: number; frames: ProbedFrame[] } | null = null;

class RequestError extends Error {
  constructor(
    readonly code: WorkerErrorCode,
    message: string,
  ) {
    super(message);
  }
}

// ------------------------------------------------------------------------------------------
// Frames
// ------------------------------------------------------------------------------------------

function dropReason(error: unknown): DropReason {
  if (!(error instanceof SFrameError)) return 'internal';
  switch (error.code) {
    case 'unknown_kid':
    case 'authentication_failed':
    case 'frame_too_large':
    case 'counter_exhausted':
      return error.code;
    case 'malformed':
    case 'malformed_header':
      return 'malformed';
    default:
      return 'internal';
  }
}

/** The codec each kind's framing is written for, as `getMetadata().mimeType` names it. */
const FRAMED_CODECS: Record<MediaKind, string> = { video: 'video/vp8', audio: 'audio/opus' };

/** False when the frame says it is of a codec the framing does not know; true when it says nothing. */
function framedCodec(frame: EncodedFrame, kind: MediaKind): boolean {
  const mimeType = frame.getMetadata?.().mimeType;
  return mimeType === undefined || mimeType.toLowerCase() === FRAMED_CODECS[kind];
}

async function encryptFrame(frame: EncodedFrame, controller: TransformStreamDefaultController<EncodedFrame>, options: TransformOptions): Promise<void> {
  if (!framedCodec(frame, options.kind)) {
    counts.dropped.unsupported_codec += 1;
    return;
  }
  // The key is read once: a rotation during the await below takes effect from the next frame.
  const current = sender;
  if (!current) {
    counts.dropped.no_send_key += 1;
    return;
  }
  const input = new Uint8Array(frame.data);
  try {
    const sealed = await sealMediaFrame(current, options.kind, input);
    if (probe) {
      probe.frames.push({
        kind: options.kind,
        participant: options.participant,
        kid: sealed.kid,
        ctr: sealed.ctr,
        clearBytes: sealed.clearBytes,
        input: input.slice().buffer,
        output: sealed.bytes.slice().buffer,
      });
      if (probe.frames.length >= probe.count) {
        reply({ id: probe.id, ok: true, result: probe.frames });
        probe = null;
      }
    }
    frame.data = sealed.bytes.buffer;
    counts.encrypted += 1;
    controller.enqueue(frame);
  } catch (error) {
    counts.dropped[dropReason(error)] += 1;
  }
}

async function decryptFrame(frame: EncodedFrame, controller: TransformStreamDefaultController<EncodedFrame>, options: TransformOptions): Promise<void> {
  if (!framedCodec(frame, options.kind)) {
    counts.dropped.unsupported_codec += 1;
    return;
  }
  const keys = receivers.get(options.participant);
  if (!keys) {
    counts.dropped.unknown_kid += 1;
    return;
  }
  try {
    const opened = await openMediaFrame(keys, options.kind, new Uint8Array(frame.data));
    frame.data = opened.plaintext.buffer;
    counts.decrypted += 1;
    controller.enqueue(frame);
  } catch (error) {
    // Dropped, never passed on: the decoder sees a lost frame and asks for a key frame.
    counts.dropped[dropReason(error)] += 1;
  }
}

function transformOptions(value: unknown): TransformOptions | null {
  if (typeof value !== 'object' || value === null) return null;
  const { role, kind, participant } = value as Record<string, unknown>;
  if (role !== 'encrypt' && role !== 'decrypt') return null;
  if (kind !== 'audio' && kind !== 'video') return null;
  if (!validLabel(participant)) return null;
  return { role, kind, participant };
}

scope.onrtctransform = (event) => {
  const { transformer } = event;
  const options = transformOptions(transformer.options);
  if (!options) {
    // Without a role nothing safe can be done: the streams are left unconnected, so no frame
    // flows at all rather than one in the clear.
    console.error('sframe-worker: a transform without valid options { role, kind, participant }');
    return;
  }
  const step = options.role === 'encrypt' ? encryptFrame : decryptFrame;
  transformer.readable
    .pipeThrough(new TransformStream<EncodedFrame, EncodedFrame>({ transform: (frame, controller) => step(frame, controller, options) }))
    .pipeTo(transformer.writable)
    .catch((error: unknown) => console.error(`sframe-worker: the ${options.role} stream of ${options.participant} ended: ${String(error)}`));
};

// ------------------------------------------------------------------------------------------
// Requests
// ------------------------------------------------------------------------------------------

function reply(message: WorkerReply): void {
  scope.postMessage(message);
}

function validLabel(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= PARTICIPANT_LABEL_CHARS_MAX;
}

function requireLabel(value: unknown): string {
  if (!validLabel(value)) throw new RequestError('bad_request', `a participant is a label of 1 to ${PARTICIPANT_LABEL_CHARS_MAX} characters`);
  return value;
}

function requireKid(value: unknown): bigint {
  if (typeof value !== 'bigint') throw new RequestError('bad_request', 'a KID is a bigint');
  return value;
}

function requireSuite(value: unknown): CipherSuiteId {
  if (value === undefined) return DEFAULT_CIPHER_SUITE;
  if (typeof value !== 'number') throw new RequestError('bad_request', 'a cipher suite is a number');
  return cipherSuite(value).id;
}

/**
 * The base key as an HKDF CryptoKey; raw bytes are imported (non-extractable) and this
 * worker's copy of them wiped.
 */
async function baseKeyOf(value: unknown): Promise<CryptoKey> {
  if (value instanceof CryptoKey) return importBaseKey(value);
  if (!(value instanceof ArrayBuffer) && !(value instanceof Uint8Array)) {
    throw new RequestError('bad_request', 'a base key is an HKDF CryptoKey or raw bytes');
  }
  const bytes = value instanceof ArrayBuffer ? new Uint8Array(value) : value;
  try {
    return await importBaseKey(bytes);
  } finally {
    bytes.fill(0);
  }
}

function removalKey(participant: string, kid: bigint): string {
  return `${participant}\u0000${kid}`;
}

function cancelRemoval(participant: string, kid: bigint): void {
  const key = removalKey(participant, kid);
  clearTimeout(removals.get(key));
  removals.delete(key);
}

async function setSendKey(request: Record<string, unknown>): Promise<unknown> {
  const kid = requireKid(request.kid);
  const suite = requireSuite(request.suite);
  // A KID sealed under before would start its counter at 0 again: the same nonces, under
  // the same key if the page sent it twice. Refused, and remembered before the await so two
  // requests at once cannot both pass.
  if (usedSendKids.has(kid)) throw new RequestError('kid_reused', `KID ${kid} has been sent under already; rotate to a new KID`);
  if (usedSendKids.size >= SEND_KEYS_PER_WORKER_MAX) throw new SFrameError('too_many_keys', `this call has used ${SEND_KEYS_PER_WORKER_MAX} send keys`);
  usedSendKids.add(kid);
  const baseKey = await baseKeyOf(request.baseKey);
  sender = await SFrameSendContext.create({ kid, baseKey, suite });
  return { kid };
}

async function addReceiveKey(request: Record<string, unknown>): Promise<unknown> {
  const participant = requireLabel(request.participant);
  const kid = requireKid(request.kid);
  const suite = requireSuite(request.suite);
  let keys = receivers.get(participant);
  if (!keys) {
    if (receivers.size >= PARTICIPANTS_MAX) throw new RequestError('too_many_participants', `keys are held for ${PARTICIPANTS_MAX} participants already`);
    keys = new SFrameReceiveContext(RECEIVE_KEYS_PER_PARTICIPANT_MAX);
    receivers.set(participant, keys);
  }
  // A participant at their limit loses their oldest key, whose grace would end soon anyway.
  const oldest = keys.kids()[0];
  if (!keys.hasKey(kid) && keys.size >= RECEIVE_KEYS_PER_PARTICIPANT_MAX && oldest !== undefined) {
    keys.removeKey(oldest);
    cancelRemoval(participant, oldest);
  }
  cancelRemoval(participant, kid);
  await keys.addKey(kid, await baseKeyOf(request.baseKey), suite);
  return { participant, kid };
}

function removeReceiveKey(request: Record<string, unknown>): unknown {
  const participant = requireLabel(request.participant);
  const kid = requireKid(request.kid);
  const afterMs = request.afterMs ?? 0;
  if (typeof afterMs !== 'number' || !Number.isFinite(afterMs) || afterMs < 0 || afterMs > REMOVE_AFTER_MS_MAX) {
    throw new RequestError('bad_request', `afterMs is 0 to ${REMOVE_AFTER_MS_MAX}`);
  }
  const remove = () => {
    removals.delete(removalKey(participant, kid));
    receivers.get(participant)?.removeKey(kid);
  };
  cancelRemoval(participant, kid);
  if (afterMs === 0) remove();
  else removals.set(removalKey(participant, kid), setTimeout(remove, afterMs));
  return { participant, kid, afterMs };
}

function removeParticipant(request: Record<string, unknown>): unknown {
  const participant = requireLabel(request.participant);
  for (const kid of receivers.get(participant)?.kids() ?? []) cancelRemoval(participant, kid);
  receivers.delete(participant);
  return { participant };
}

function stats(): TransformStats {
  return {
    encrypted: counts.encrypted,
    decrypted: counts.decrypted,
    dropped: { ...counts.dropped },
    sendKid: sender?.kid ?? null,
    receiveKids: Object.fromEntries([...receivers].map(([participant, keys]) => [participant, keys.kids()])),
  };
}

async function handle(data: unknown): Promise<void> {
  const request = (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>;
  const id = typeof request.id === 'number' ? request.id : -1;
  try {
    let result: unknown;
    switch (request.type) {
      case 'setSendKey':
        result = await setSendKey(request);
        break;
      case 'addReceiveKey':
        result = await addReceiveKey(request);
        break;
      case 'removeReceiveKey':
        result = removeReceiveKey(request);
        break;
      case 'removeParticipant':
        result = removeParticipant(request);
        break;
      case 'stats':
        result = stats();
        break;
      case 'probe': {
        const count = request.count;
        if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > PROBE_FRAMES_MAX) {
          throw new RequestError('bad_request', `a probe captures 1 to ${PROBE_FRAMES_MAX} frames`);
        }
        // A page whose earlier probe timed out asks again: the new probe takes over.
        if (probe) reply({ id: probe.id, ok: false, error: { code: 'probe_superseded', message: 'a newer probe took over' } });
        // Answered from encryptFrame once `count` frames went out.
        probe = { id, count, frames: [] };
        return;
      }
      default:
        throw new RequestError('bad_request', `unknown request type ${String(request.type)}`);
    }
    reply({ id, ok: true, result });
  } catch (error) {
    const code: WorkerErrorCode = error instanceof RequestError || error instanceof SFrameError ? error.code : 'internal';
    reply({ id, ok: false, error: { code, message: error instanceof Error ? error.message : String(error) } });
  }
}

scope.onmessage = (event) => {
  void handle(event.data);
};
