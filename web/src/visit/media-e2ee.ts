/// <reference types="vite/client" />
// End-to-end encryption of a video visit's media, on the page's side: it starts the frame
// transform worker (sframe-worker.ts), attaches it to every RTCRtpSender and RTCRtpReceiver
// of the call, makes this browser's send keys and hands the worker the keys of the others.
//
// Keys never pass through Haven in the clear: `createSendKey` returns the fresh base key so
// that the visit page can seal it to each participant's devices (HPKE, web/src/e2e), and the
// keys they seal to us come back through `addReceiveKey`. A rotation, when someone leaves,
// goes: createSendKey → seal it to those who remain → they add it → setSendKey; each of them
// then removes our previous key after a grace for frames in flight (`KEY_GRACE_MS`).
//
// One MediaE2ee per call, hence one worker: all the call's senders seal under one counter
// there, so no nonce is ever used twice across peer connections.
//
// The worker's script is loaded under Haven's Content Security Policy, which requires
// Trusted Types for script URLs: its URL goes through the `haven-worker` policy, made once,
// which passes only a same-origin script under /assets/ (Vite's build output), or, in
// Vite's dev server, under /src/. Vite finds the worker through the `?worker&url` import
// below and emits it as its own file in dist/assets; the usual
// `new Worker(new URL('./sframe-worker.ts', import.meta.url))` pattern is recognised only
// when written inside the `new Worker(...)` call, where the policy cannot stand between.
import workerScriptUrl from './sframe-worker.ts?worker&url';
import { CIPHER_SUITES, type CipherSuiteId, DEFAULT_CIPHER_SUITE, type MediaKind, U64_MAX, cipherSuite } from './sframe';
import type { ProbedFrame, TransformOptions, TransformStats, WorkerErrorCode, WorkerReply, WorkerRequest } from './sframe-worker';

export type { ProbedFrame, TransformStats } from './sframe-worker';

/** The Trusted Types policy that may create the worker's script URL (named in Haven's CSP). */
export const WORKER_POLICY_NAME = 'haven-worker';
/** How long a key request to the worker may take (deriving a key is milliseconds). */
export const REQUEST_TIMEOUT_MS = 10_000;
/** How long a probe waits for its frames: a video track sends dozens a second. */
export const PROBE_TIMEOUT_MS = 15_000;
/** How long a participant's previous key stays after they rotate, for frames in flight. */
export const KEY_GRACE_MS = 5_000;

export type MediaE2eeErrorCode =
  | WorkerErrorCode
  /** The browser has no WebRTC Encoded Transform: the call must not start unencrypted. */
  | 'unsupported'
  /** A worker script URL the policy would not pass. */
  | 'worker_url_refused'
  /** The worker failed to load or crashed. */
  | 'worker_failed'
  | 'timeout'
  /** The MediaE2ee was closed. */
  | 'closed';

export class MediaE2eeError extends Error {
  constructor(
    readonly code: MediaE2eeErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'MediaE2eeError';
  }
}

// ------------------------------------------------------------------------------------------
// The worker's script URL, through Trusted Types
// ------------------------------------------------------------------------------------------

// Typed here: TypeScript's DOM library does not describe Trusted Types yet.
interface TrustedScriptUrlPolicy {
  createScriptURL(input: string): object;
}
interface TrustedTypeFactory {
  createPolicy(name: string, rules: { createScriptURL(input: string): string }): TrustedScriptUrlPolicy;
}

/** Vite's built assets: one path segment of safe characters, a script. */
const BUILT_ASSET = /^\/assets\/[A-Za-z0-9._-]+\.js$/;

/**
 * The absolute URL of a worker script Haven may run, or `worker_url_refused`: same origin
 * as the page, and one of Vite's built scripts under /assets/ (in the dev server, a module
 * under /src/).
 */
export function checkWorkerScriptUrl(input: string, pageUrl: string = location.href, dev: boolean = import.meta.env.DEV): string {
  let url: URL;
  try {
    url = new URL(input, pageUrl);
  } catch {
    throw new MediaE2eeError('worker_url_refused', `not a URL: ${input}`);
  }
  if (url.origin !== new URL(pageUrl).origin) throw new MediaE2eeError('worker_url_refused', `a worker from another origin: ${url.origin}`);
  const built = BUILT_ASSET.test(url.pathname) && url.search === '' && url.hash === '';
  const devModule = dev && url.pathname.startsWith('/src/');
  if (!built && !devModule) throw new MediaE2eeError('worker_url_refused', `a worker script outside /assets/: ${url.pathname}`);
  return url.href;
}

/** The policy, made on first use; null where the browser has no Trusted Types (and so enforces none). */
let workerPolicy: TrustedScriptUrlPolicy | null | undefined;

function trustedWorkerUrl(input: string): string | object {
  if (workerPolicy === undefined) {
    const factory = (globalThis as { trustedTypes?: TrustedTypeFactory }).trustedTypes;
    // createPolicy throws if the CSP does not list the name; left to surface as it is.
    workerPolicy = factory ? factory.createPolicy(WORKER_POLICY_NAME, { createScriptURL: (url) => checkWorkerScriptUrl(url) }) : null;
  }
  return workerPolicy ? workerPolicy.createScriptURL(input) : checkWorkerScriptUrl(input);
}

// ------------------------------------------------------------------------------------------
// Keys
// ------------------------------------------------------------------------------------------

/** This browser's key for the media it sends: sealed to the others, then set. */
export interface SendKey {
  readonly suite: CipherSuiteId;
  readonly kid: bigint;
  /**
   * Fresh random bytes: 16 for AES-128-GCM, 32 otherwise. The worker has its own copy once
   * the key is set; the caller wipes this one (`fill(0)`) when it has sealed it to the others.
   */
  readonly baseKey: Uint8Array<ArrayBuffer>;
}

/** A participant's send key, as they sealed it to this device. */
export interface ReceiveKey {
  readonly kid: bigint;
  readonly baseKey: CryptoKey | Uint8Array;
  readonly suite?: CipherSuiteId;
}

/**
 * Base key lengths. A base key only feeds HKDF, so its length is its strength: the AEAD key
 * length, and never more than 32 bytes, which no suite here needs beyond.
 */
function baseKeyBytes(suite: CipherSuiteId): number {
  return Math.min(CIPHER_SUITES[suite].nk, 32);
}

// ------------------------------------------------------------------------------------------
// The call's encryption
// ------------------------------------------------------------------------------------------

interface Pending {
  resolve(result: unknown): void;
  reject(error: MediaE2eeError): void;
  timer: ReturnType<typeof setTimeout>;
}

type RequestBody = WorkerRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

export class MediaE2ee {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #nextRequestId = 1;
  /**
   * The next KID this browser sends under. It starts at a random 16-bit value, so that a page
   * reloaded mid-call (a new MediaE2ee, a new key) does not announce the same KIDs as before,
   * and goes up by one per rotation.
   */
  #nextKid = BigInt(crypto.getRandomValues(new Uint16Array(1))[0] ?? 0);
  #failure: MediaE2eeError | null = null;

  /** Use `startMediaE2ee`. */
  constructor(readonly suite: CipherSuiteId) {
    this.#worker = new Worker(trustedWorkerUrl(workerScriptUrl) as string, { type: 'module', name: 'haven-sframe' });
    this.#worker.onmessage = (event: MessageEvent<WorkerReply>) => this.#answer(event.data);
    this.#worker.onerror = (event) => this.#fail(new MediaE2eeError('worker_failed', `the media encryption worker failed: ${event.message || 'it did not load'}`));
    this.#worker.onmessageerror = () => this.#fail(new MediaE2eeError('worker_failed', 'a message from the media encryption worker could not be read'));
  }

  /** A fresh key for this browser's media, not yet in use: seal it to the others first. */
  createSendKey(): SendKey {
    if (this.#nextKid > U64_MAX) throw new MediaE2eeError('too_many_keys', 'no KIDs left for this call');
    const kid = this.#nextKid;
    this.#nextKid += 1n;
    return { suite: this.suite, kid, baseKey: crypto.getRandomValues(new Uint8Array(baseKeyBytes(this.suite))) };
  }

  /**
   * Seals this browser's media under `key` from the next frame on. Until a first key is set,
   * outgoing frames are dropped, never sent in the clear. A key set once cannot be set again
   * (the worker refuses its KID), since its counter would start over.
   */
  async setSendKey(key: SendKey): Promise<void> {
    await this.#request({ type: 'setSendKey', kid: key.kid, baseKey: key.baseKey.slice(), suite: key.suite });
  }

  /** Lets `participant`'s frames under `key.kid` be opened; a KID given again replaces its key. */
  async addReceiveKey(participant: string, key: ReceiveKey): Promise<void> {
    const baseKey = key.baseKey instanceof Uint8Array ? key.baseKey.slice() : key.baseKey;
    await this.#request({ type: 'addReceiveKey', participant, kid: key.kid, baseKey, suite: key.suite ?? this.suite });
  }

  /** Forgets one of `participant`'s keys, after `afterMs` (by default the grace for frames in flight). */
  async removeReceiveKey(participant: string, kid: bigint, afterMs: number = KEY_GRACE_MS): Promise<void> {
    await this.#request({ type: 'removeReceiveKey', participant, kid, afterMs });
  }

  /** Forgets all of `participant`'s keys at once: they left the call. */
  async removeParticipant(participant: string): Promise<void> {
    await this.#request({ type: 'removeParticipant', participant });
  }

  /** Seals what `sender` sends; `participant` labels the stream in probes (the peer it goes to). */
  attachSender(sender: RTCRtpSender, participant: string, kind: MediaKind | undefined = mediaKind(sender.track?.kind)): void {
    if (!kind) throw new MediaE2eeError('bad_request', 'the sender has no track: say whether it sends audio or video');
    this.#attach(sender, { role: 'encrypt', kind, participant });
  }

  /** Opens what `receiver` receives from `participant`, with that participant's keys. */
  attachReceiver(receiver: RTCRtpReceiver, participant: string): void {
    const kind = mediaKind(receiver.track.kind);
    if (!kind) throw new MediaE2eeError('bad_request', `a receiver of ${receiver.track.kind}`);
    this.#attach(receiver, { role: 'decrypt', kind, participant });
  }

  /** The next `count` frames sent, as the encoder made them and as they left (for tests). */
  async probe(count: number): Promise<ProbedFrame[]> {
    return (await this.#request({ type: 'probe', count }, PROBE_TIMEOUT_MS)) as ProbedFrame[];
  }

  /** Frames sealed, opened and dropped (by reason), and the KIDs held. */
  async stats(): Promise<TransformStats> {
    return (await this.#request({ type: 'stats' })) as TransformStats;
  }

  /** Ends the worker, and with it every key it held; attached transforms stop passing frames. */
  close(): void {
    this.#worker.terminate();
    this.#fail(new MediaE2eeError('closed', 'the media encryption was closed'));
  }

  #attach(target: RTCRtpSender | RTCRtpReceiver, options: TransformOptions): void {
    if (this.#failure) throw this.#failure;
    target.transform = new RTCRtpScriptTransform(this.#worker, options);
  }

  #request(body: RequestBody, timeoutMs: number = REQUEST_TIMEOUT_MS): Promise<unknown> {
    if (this.#failure) return Promise.reject(this.#failure);
    const id = this.#nextRequestId;
    this.#nextRequestId += 1;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new MediaE2eeError('timeout', `the media encryption worker did not answer ${body.type} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      this.#worker.postMessage({ ...body, id });
    });
  }

  #answer(reply: WorkerReply): void {
    const pending = this.#pending.get(reply.id);
    if (!pending) return;
    this.#pending.delete(reply.id);
    clearTimeout(pending.timer);
    if (reply.ok) pending.resolve(reply.result);
    else pending.reject(new MediaE2eeError(reply.error.code, reply.error.message));
  }

  #fail(error: MediaE2eeError): void {
    this.#failure ??= error;
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.#pending.clear();
  }
}

function mediaKind(kind: string | undefined): MediaKind | undefined {
  return kind === 'audio' || kind === 'video' ? kind : undefined;
}

/**
 * The call's media encryption, or `unsupported` where the browser cannot transform encoded
 * frames: the visit page must then refuse to start the call rather than send media in the
 * clear.
 */
export function startMediaE2ee(options: { suite?: CipherSuiteId } = {}): MediaE2ee {
  if (typeof RTCRtpScriptTransform === 'undefined') {
    throw new MediaE2eeError('unsupported', 'this browser cannot encrypt call media end to end (no RTCRtpScriptTransform)');
  }
  return new MediaE2ee(cipherSuite(options.suite ?? DEFAULT_CIPHER_SUITE).id);
}

/**
 * Limits `transceiver` to the codecs whose headers the frame transform knows how to leave
 * readable: VP8 for video (with its retransmissions), Opus for audio. Call before the offer
 * or answer is made; the worker drops frames of any other codec.
 */
export function preferSFrameCodecs(transceiver: RTCRtpTransceiver, kind: MediaKind): void {
  const capabilities = RTCRtpReceiver.getCapabilities(kind);
  const wanted = kind === 'video' ? ['video/vp8', 'video/rtx'] : ['audio/opus'];
  const codecs = (capabilities?.codecs ?? []).filter((codec) => wanted.includes(codec.mimeType.toLowerCase()));
  if (!codecs.some((codec) => codec.mimeType.toLowerCase() !== 'video/rtx')) {
    throw new MediaE2eeError('unsupported', `this browser offers no ${kind === 'video' ? 'VP8' : 'Opus'}`);
  }
  transceiver.setCodecPreferences(codecs);
}
