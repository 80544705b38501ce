// SFrame (RFC 9605): end-to-end encryption of media frames, on WebCrypto alone.
//
// Video visits are WebRTC calls whose media passes through no Haven server, but a TURN
// relay or anything else on the path must still learn nothing: each encoded frame is sealed
// in the browser that captured it and opened only in the browsers of the call's
// participants. The frame transform worker (sframe-worker.ts) applies this module to every
// frame; keys reach it from the visit page, which seals them to the other participants'
// devices (HPKE, web/src/e2e), so Haven never holds one.
//
// What is here, section by section of the RFC:
// - §4.3 the header: a config byte (X|KKK|Y|CCC) then the KID and the CTR as minimal
//   big-endian integers; values 0–7 live in the config byte itself;
// - §4.4.2 key derivation: `sframe_secret = HKDF-Extract("", base_key)`, then `sframe_key`
//   and `sframe_salt` expanded from it under "SFrame 1.0 Secret key " / "SFrame 1.0 Secret
//   salt " followed by the KID (8 bytes) and the cipher suite (2 bytes), big-endian;
// - §4.4.3 and §4.4.4 encryption and decryption: nonce = salt XOR CTR, AAD = header ‖
//   metadata, output = header ‖ AEAD ciphertext (tag included);
// - §4.5 the five cipher suites: AES-GCM (0x0004, 0x0005) directly, and the AES-CTR + HMAC
//   compound AEAD of §4.5.1 (0x0001–0x0003) from WebCrypto's AES-CTR and HMAC, cheap to
//   carry and covered by the RFC's vectors;
// - a sender context whose counter only goes up and never wraps, and a receiver context that
//   maps KIDs to derived keys, so keys come and go as participants join and leave;
// - the media framing the worker uses: codec header bytes that must stay readable to
//   Chromium's depacketizer are left in the clear and authenticated as SFrame metadata.
//
// The RFC's test vectors (crates/server/tests/vectors/rfc9605-sframe.json) are run against
// this module in Chromium by crates/server/tests/browser/sframe-vectors.mjs.
//
// No DOM here: the module runs in a worker as well as in a page.

/** Bytes backed by their own ArrayBuffer: what WebCrypto takes. */
export type Bytes = Uint8Array<ArrayBuffer>;

// ------------------------------------------------------------------------------------------
// Limits and constants
// ------------------------------------------------------------------------------------------

/** KIDs and CTRs are unsigned 64-bit integers (§4.3: at most 8 bytes each). */
export const U64_MAX = (1n << 64n) - 1n;

/**
 * The largest frame sealed or opened, in bytes. A 1080p VP8 key frame is a few hundred
 * kilobytes; anything far beyond is not a frame of a visit, and refusing it bounds the work
 * and memory one frame can cost.
 */
export const FRAME_BYTES_MAX = 4 * 1024 * 1024;

/**
 * The most keys one receiver context holds. A visit has at most four people; each sender
 * has a current key and, for a few seconds after a rotation, the previous one.
 */
export const RECEIVE_KEYS_MAX = 64;

/** The longest SFrame header: the config byte, an 8-byte KID and an 8-byte CTR. */
export const HEADER_BYTES_MAX = 17;

const KEY_LABEL = 'SFrame 1.0 Secret key ';
const SALT_LABEL = 'SFrame 1.0 Secret salt ';

// ------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------

/** Why a frame could not be sealed or opened; `code` is stable, `message` is for logs. */
export type SFrameErrorCode =
  /** A header that is truncated, not minimally encoded, or a value outside 64 bits. */
  | 'malformed_header'
  /** A frame or ciphertext of an impossible length, or an argument of the wrong shape. */
  | 'malformed'
  /** A frame larger than `FRAME_BYTES_MAX`. */
  | 'frame_too_large'
  /** No key for the header's KID (never received, or already removed). */
  | 'unknown_kid'
  /** The tag did not verify: the frame, its header or its metadata was altered, or the key is not its key. */
  | 'authentication_failed'
  /** The sender's counter reached 2^64 − 1: the key must be replaced, never reused. */
  | 'counter_exhausted'
  /** The receiver already holds `RECEIVE_KEYS_MAX` keys. */
  | 'too_many_keys'
  /** A cipher suite this module does not implement. */
  | 'unsupported_suite';

export class SFrameError extends Error {
  constructor(
    readonly code: SFrameErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'SFrameError';
  }
}

// ------------------------------------------------------------------------------------------
// Cipher suites (§4.5, Table 1)
// ------------------------------------------------------------------------------------------

export type CipherSuiteId = 0x0001 | 0x0002 | 0x0003 | 0x0004 | 0x0005;

export interface CipherSuite {
  readonly id: CipherSuiteId;
  readonly name: string;
  /** The hash of HKDF and, for the compound AEAD, of HMAC. */
  readonly hash: 'SHA-256' | 'SHA-512';
  /** Hash output, bytes. */
  readonly nh: number;
  /** AES key inside the compound AEAD key, bytes; null for AES-GCM. */
  readonly nka: number | null;
  /** AEAD key, bytes. */
  readonly nk: number;
  /** Nonce, bytes. */
  readonly nn: number;
  /** Tag, bytes. */
  readonly nt: number;
}

function suite(id: CipherSuiteId, name: string, hash: CipherSuite['hash'], nh: number, nka: number | null, nk: number, nt: number): CipherSuite {
  return Object.freeze({ id, name, hash, nh, nka, nk, nn: 12, nt });
}

export const CIPHER_SUITES: Readonly<Record<CipherSuiteId, CipherSuite>> = Object.freeze({
  0x0001: suite(0x0001, 'AES_128_CTR_HMAC_SHA256_80', 'SHA-256', 32, 16, 48, 10),
  0x0002: suite(0x0002, 'AES_128_CTR_HMAC_SHA256_64', 'SHA-256', 32, 16, 48, 8),
  0x0003: suite(0x0003, 'AES_128_CTR_HMAC_SHA256_32', 'SHA-256', 32, 16, 48, 4),
  0x0004: suite(0x0004, 'AES_128_GCM_SHA256_128', 'SHA-256', 32, null, 16, 16),
  0x0005: suite(0x0005, 'AES_256_GCM_SHA512_128', 'SHA-512', 64, null, 32, 16),
});

/**
 * Haven's suite for visits: AES-256-GCM with a full 16-byte tag. A recorded call should stay
 * private for as long as a medical record does, so the 256-bit key; the tag costs 16 bytes a
 * frame, nothing beside a video frame, and truncated tags buy little on audio at 50 frames a
 * second.
 */
export const DEFAULT_CIPHER_SUITE: CipherSuiteId = 0x0005;

export function cipherSuite(id: number): CipherSuite {
  const found = (CIPHER_SUITES as Record<number, CipherSuite | undefined>)[id];
  if (!found) throw new SFrameError('unsupported_suite', `cipher suite 0x${id.toString(16).padStart(4, '0')} is not implemented`);
  return found;
}

// ------------------------------------------------------------------------------------------
// Bytes
// ------------------------------------------------------------------------------------------

function owned(bytes: Uint8Array): Bytes {
  return new Uint8Array(bytes);
}

export function concatBytes(...parts: Uint8Array[]): Bytes {
  const out = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** `value` as `length` big-endian bytes; the caller has checked that it fits. */
function bigEndian(value: bigint, length: number): Bytes {
  const out = new Uint8Array(length);
  let rest = value;
  for (let i = length - 1; i >= 0; i -= 1) {
    out[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return out;
}

function readBigEndian(bytes: Uint8Array, offset: number, length: number): bigint {
  let value = 0n;
  for (let i = 0; i < length; i += 1) value = (value << 8n) | BigInt(bytes[offset + i] ?? 0);
  return value;
}

/** Bytes needed for `value` (at least one). */
function minimalLength(value: bigint): number {
  let length = 1;
  while (value >> BigInt(8 * length) > 0n) length += 1;
  return length;
}

function requireU64(value: unknown, what: string, code: SFrameErrorCode = 'malformed'): asserts value is bigint {
  if (typeof value !== 'bigint' || value < 0n || value > U64_MAX) {
    throw new SFrameError(code, `the ${what} is not an unsigned 64-bit integer (a bigint)`);
  }
}

function requireBytes(value: unknown, what: string): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw new SFrameError('malformed', `the ${what} is not a Uint8Array`);
}

/** Equal lengths and bytes, without stopping at the first difference. */
function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i += 1) difference |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return difference === 0;
}

// ------------------------------------------------------------------------------------------
// The header (§4.3)
// ------------------------------------------------------------------------------------------

export interface SFrameHeader {
  readonly kid: bigint;
  readonly ctr: bigint;
  /** How many bytes of the input the header took. */
  readonly length: number;
}

/** The header for `kid` and `ctr`, each in its shortest form. */
export function encodeHeader(kid: bigint, ctr: bigint): Bytes {
  requireU64(kid, 'KID', 'malformed_header');
  requireU64(ctr, 'CTR', 'malformed_header');
  // 0–7 fit in the three bits of K or C; anything larger follows the config byte, and those
  // three bits then hold its length minus one.
  const kidLength = kid < 8n ? 0 : minimalLength(kid);
  const ctrLength = ctr < 8n ? 0 : minimalLength(ctr);
  const kidBits = kidLength === 0 ? Number(kid) << 4 : 0x80 | ((kidLength - 1) << 4);
  const ctrBits = ctrLength === 0 ? Number(ctr) : 0x08 | (ctrLength - 1);
  return concatBytes(Uint8Array.of(kidBits | ctrBits), bigEndian(kid, kidLength), bigEndian(ctr, ctrLength));
}

/**
 * The header at the start of `bytes` (what follows it is left alone). Refuses a truncated
 * header and one not in the shortest form the RFC requires: two spellings of one (KID, CTR)
 * would give two AADs for what the sender meant as one frame.
 */
export function decodeHeader(bytes: Uint8Array): SFrameHeader {
  requireBytes(bytes, 'SFrame ciphertext');
  const config = bytes[0];
  if (config === undefined) throw new SFrameError('malformed_header', 'the frame is empty: no SFrame header');
  let offset = 1;
  const read = (extended: boolean, bits: number, what: string): bigint => {
    if (!extended) return BigInt(bits);
    const length = bits + 1;
    if (bytes.length < offset + length) throw new SFrameError('malformed_header', `the header's ${what} is truncated`);
    const value = readBigEndian(bytes, offset, length);
    if (value < 8n || minimalLength(value) !== length) {
      throw new SFrameError('malformed_header', `the header's ${what} is not in its shortest form`);
    }
    offset += length;
    return value;
  };
  const kid = read((config & 0x80) !== 0, (config >> 4) & 0x07, 'KID');
  const ctr = read((config & 0x08) !== 0, config & 0x07, 'CTR');
  return { kid, ctr, length: offset };
}

// ------------------------------------------------------------------------------------------
// Key derivation (§4.4.2)
// ------------------------------------------------------------------------------------------

function label(prefix: string, suiteId: CipherSuiteId, kid: bigint): Bytes {
  requireU64(kid, 'KID');
  // The KID as a full 8-byte integer here, not the header's compact form.
  return concatBytes(new TextEncoder().encode(prefix), bigEndian(kid, 8), bigEndian(BigInt(cipherSuite(suiteId).id), 2));
}

/** `sframe_key_label`: "SFrame 1.0 Secret key " ‖ KID (8 bytes) ‖ cipher suite (2 bytes). */
export function keyLabel(suiteId: CipherSuiteId, kid: bigint): Bytes {
  return label(KEY_LABEL, suiteId, kid);
}

/** `sframe_salt_label`: "SFrame 1.0 Secret salt " ‖ KID (8 bytes) ‖ cipher suite (2 bytes). */
export function saltLabel(suiteId: CipherSuiteId, kid: bigint): Bytes {
  return label(SALT_LABEL, suiteId, kid);
}

/**
 * A base key as WebCrypto's HKDF takes it. A CryptoKey given here (HKDF, `deriveBits`) may
 * be non-extractable: the visit page can hand the worker a key it cannot read back.
 */
export async function importBaseKey(baseKey: CryptoKey | Uint8Array): Promise<CryptoKey> {
  if (baseKey instanceof Uint8Array) {
    if (baseKey.length === 0) throw new SFrameError('malformed', 'the base key is empty');
    return crypto.subtle.importKey('raw', owned(baseKey), 'HKDF', false, ['deriveBits']);
  }
  if (typeof CryptoKey === 'undefined' || !(baseKey instanceof CryptoKey) || baseKey.algorithm.name !== 'HKDF') {
    throw new SFrameError('malformed', 'the base key is neither bytes nor an HKDF CryptoKey');
  }
  return baseKey;
}

export interface DerivedKeyAndSalt {
  /** `sframe_key`: `AEAD.Nk` bytes (for the compound AEAD, the AES key then the HMAC key). */
  readonly key: Bytes;
  /** `sframe_salt`: `AEAD.Nn` bytes. */
  readonly salt: Bytes;
}

/**
 * `derive_key_salt(KID, base_key)`. WebCrypto's HKDF runs Extract then Expand in one call;
 * an empty salt is what the RFC's `HKDF-Extract("", base_key)` means (RFC 5869 treats it as
 * a string of zeros, the same HMAC key).
 */
export async function deriveKeyAndSalt(suiteId: CipherSuiteId, kid: bigint, baseKey: CryptoKey | Uint8Array): Promise<DerivedKeyAndSalt> {
  const s = cipherSuite(suiteId);
  const hkdfKey = await importBaseKey(baseKey);
  const expand = async (info: Bytes, length: number): Promise<Bytes> =>
    new Uint8Array(await crypto.subtle.deriveBits({ name: 'HKDF', hash: s.hash, salt: new Uint8Array(0), info }, hkdfKey, length * 8));
  const [key, salt] = await Promise.all([expand(keyLabel(s.id, kid), s.nk), expand(saltLabel(s.id, kid), s.nn)]);
  return { key, salt };
}

/** The nonce of frame `ctr`: the salt XOR the counter, big-endian, left-padded to `Nn` bytes. */
export function frameNonce(salt: Uint8Array, ctr: bigint): Bytes {
  requireU64(ctr, 'CTR');
  const counter = bigEndian(ctr, salt.length);
  return counter.map((byte, i) => byte ^ (salt[i] ?? 0));
}

// ------------------------------------------------------------------------------------------
// The AEADs (§4.4, §4.5.1)
// ------------------------------------------------------------------------------------------

/** A derived `sframe_key`, imported for its suite's AEAD (non-extractable). */
export type AeadKey =
  | { readonly suite: CipherSuite; readonly kind: 'aes-gcm'; readonly key: CryptoKey }
  | { readonly suite: CipherSuite; readonly kind: 'aes-ctr-hmac'; readonly encKey: CryptoKey; readonly authKey: CryptoKey };

/** `derive_subkeys` of §4.5.1: the first `Nka` bytes encrypt, the remaining `Nh` authenticate. */
export function compoundSubkeys(suiteId: CipherSuiteId, key: Uint8Array): { encKey: Bytes; authKey: Bytes } {
  const s = cipherSuite(suiteId);
  if (s.nka === null) throw new SFrameError('unsupported_suite', `${s.name} is not a compound AES-CTR + HMAC suite`);
  if (key.length !== s.nk) throw new SFrameError('malformed', `a ${s.name} key is ${s.nk} bytes, not ${key.length}`);
  return { encKey: owned(key.subarray(0, s.nka)), authKey: owned(key.subarray(s.nka)) };
}

export async function importAeadKey(suiteId: CipherSuiteId, key: Uint8Array): Promise<AeadKey> {
  const s = cipherSuite(suiteId);
  requireBytes(key, 'AEAD key');
  if (key.length !== s.nk) throw new SFrameError('malformed', `a ${s.name} key is ${s.nk} bytes, not ${key.length}`);
  if (s.nka === null) {
    return { suite: s, kind: 'aes-gcm', key: await crypto.subtle.importKey('raw', owned(key), 'AES-GCM', false, ['encrypt', 'decrypt']) };
  }
  const { encKey, authKey } = compoundSubkeys(s.id, key);
  const [enc, auth] = await Promise.all([
    crypto.subtle.importKey('raw', encKey, 'AES-CTR', false, ['encrypt', 'decrypt']),
    crypto.subtle.importKey('raw', authKey, { name: 'HMAC', hash: s.hash }, false, ['sign']),
  ]);
  encKey.fill(0);
  authKey.fill(0);
  return { suite: s, kind: 'aes-ctr-hmac', encKey: enc, authKey: auth };
}

/** `compute_tag` of §4.5.1: HMAC over the lengths, the nonce, the AAD and the ciphertext. */
async function compoundTag(authKey: CryptoKey, s: CipherSuite, nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array): Promise<Bytes> {
  const authData = concatBytes(bigEndian(BigInt(aad.length), 8), bigEndian(BigInt(ct.length), 8), bigEndian(BigInt(s.nt), 8), nonce, aad, ct);
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', authKey, authData));
  return mac.slice(0, s.nt);
}

/** AES-CTR's initial counter block: the 12-byte nonce then a 32-bit block counter at zero. */
function counterBlock(nonce: Uint8Array): Bytes {
  return concatBytes(nonce, new Uint8Array(4));
}

function requireNonce(key: AeadKey, nonce: Uint8Array): void {
  requireBytes(nonce, 'nonce');
  if (nonce.length !== key.suite.nn) throw new SFrameError('malformed', `the nonce is ${nonce.length} bytes, not ${key.suite.nn}`);
}

/** `AEAD.Encrypt(key, nonce, aad, pt)`: the ciphertext with its tag at the end. */
export async function aeadEncrypt(key: AeadKey, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Promise<Bytes> {
  requireNonce(key, nonce);
  if (key.kind === 'aes-gcm') {
    return new Uint8Array(
      await crypto.subtle.encrypt({ name: 'AES-GCM', iv: owned(nonce), additionalData: owned(aad), tagLength: key.suite.nt * 8 }, key.key, owned(plaintext)),
    );
  }
  const ct = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-CTR', counter: counterBlock(nonce), length: 32 }, key.encKey, owned(plaintext)));
  return concatBytes(ct, await compoundTag(key.authKey, key.suite, nonce, aad, ct));
}

/** `AEAD.Decrypt(key, nonce, aad, ct)`: the plaintext, or `authentication_failed`. */
export async function aeadDecrypt(key: AeadKey, nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Promise<Bytes> {
  requireNonce(key, nonce);
  if (ciphertext.length < key.suite.nt) {
    throw new SFrameError('malformed', `the ciphertext is shorter than a ${key.suite.nt}-byte tag`);
  }
  if (key.kind === 'aes-gcm') {
    try {
      return new Uint8Array(
        await crypto.subtle.decrypt({ name: 'AES-GCM', iv: owned(nonce), additionalData: owned(aad), tagLength: key.suite.nt * 8 }, key.key, owned(ciphertext)),
      );
    } catch {
      throw new SFrameError('authentication_failed', 'the frame did not authenticate');
    }
  }
  const inner = ciphertext.subarray(0, ciphertext.length - key.suite.nt);
  const tag = ciphertext.subarray(ciphertext.length - key.suite.nt);
  // The tag is checked before anything is decrypted (encrypt-then-MAC).
  if (!constantTimeEqual(tag, await compoundTag(key.authKey, key.suite, nonce, aad, inner))) {
    throw new SFrameError('authentication_failed', 'the frame did not authenticate');
  }
  return new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-CTR', counter: counterBlock(nonce), length: 32 }, key.encKey, owned(inner)));
}

// ------------------------------------------------------------------------------------------
// SFrame encryption and decryption (§4.4.3, §4.4.4)
// ------------------------------------------------------------------------------------------

/** What one KID's base key becomes: the AEAD key and the salt. Never serialised. */
export interface SFrameKey {
  readonly kid: bigint;
  readonly aead: AeadKey;
  readonly salt: Bytes;
}

/** Derives and imports the key for `kid`; the raw `sframe_key` bytes are wiped afterwards. */
export async function deriveSFrameKey(suiteId: CipherSuiteId, kid: bigint, baseKey: CryptoKey | Uint8Array): Promise<SFrameKey> {
  const { key, salt } = await deriveKeyAndSalt(suiteId, kid, baseKey);
  try {
    return { kid, aead: await importAeadKey(suiteId, key), salt };
  } finally {
    key.fill(0);
  }
}

function requireFrameSize(bytes: Uint8Array, what: string): void {
  requireBytes(bytes, what);
  if (bytes.length > FRAME_BYTES_MAX) {
    throw new SFrameError('frame_too_large', `the ${what} is ${bytes.length} bytes, over the ${FRAME_BYTES_MAX}-byte limit`);
  }
}

/** `encrypt(CTR, KID, metadata, plaintext)`: header ‖ ciphertext ‖ tag. */
export async function sframeEncrypt(key: SFrameKey, ctr: bigint, metadata: Uint8Array, plaintext: Uint8Array): Promise<Bytes> {
  requireFrameSize(plaintext, 'plaintext');
  requireFrameSize(metadata, 'metadata');
  const header = encodeHeader(key.kid, ctr);
  const ciphertext = await aeadEncrypt(key.aead, frameNonce(key.salt, ctr), concatBytes(header, metadata), plaintext);
  return concatBytes(header, ciphertext);
}

export interface OpenedFrame {
  readonly kid: bigint;
  readonly ctr: bigint;
  readonly plaintext: Bytes;
}

/**
 * `decrypt(metadata, sframe_ciphertext)` with the key `keyFor` finds for the header's KID.
 * Fails with `unknown_kid`, `malformed_header`, `malformed` or `authentication_failed`; the
 * RFC's advice to take the same time either way is beyond what WebCrypto lets a page
 * promise, but nothing here returns early on the tag's bytes.
 */
export async function sframeDecrypt(keyFor: (kid: bigint) => SFrameKey | undefined, metadata: Uint8Array, sframeCiphertext: Uint8Array): Promise<OpenedFrame> {
  requireFrameSize(sframeCiphertext, 'SFrame ciphertext');
  requireFrameSize(metadata, 'metadata');
  const header = decodeHeader(sframeCiphertext);
  const key = keyFor(header.kid);
  if (!key) throw new SFrameError('unknown_kid', `no key for KID ${header.kid}`);
  const aad = concatBytes(sframeCiphertext.subarray(0, header.length), metadata);
  const plaintext = await aeadDecrypt(key.aead, frameNonce(key.salt, header.ctr), aad, sframeCiphertext.subarray(header.length));
  return { kid: header.kid, ctr: header.ctr, plaintext };
}

// ------------------------------------------------------------------------------------------
// Contexts: a sender with its counter, a receiver with its keys (§4.4.1)
// ------------------------------------------------------------------------------------------

export interface SealedFrame {
  readonly kid: bigint;
  readonly ctr: bigint;
  /** Header ‖ ciphertext ‖ tag. */
  readonly bytes: Bytes;
}

/**
 * One sender's key and counter. The counter starts at 0 and goes up by one for every frame,
 * reserved before any await so that frames sealed concurrently never share a nonce; at
 * 2^64 − 1 the context refuses to go on rather than wrap. A base key is used by exactly one
 * sender context (the RFC: never by two senders, never for both directions): the worker
 * refuses to take a KID it has sent under before.
 */
export class SFrameSendContext {
  #next: bigint;
  #exhausted = false;

  private constructor(
    readonly suite: CipherSuite,
    private readonly key: SFrameKey,
    firstCounter: bigint,
  ) {
    this.#next = firstCounter;
  }

  /**
   * `firstCounter` exists for the RFC's known-answer tests, which encrypt at a given CTR;
   * a real sender starts at 0 with a fresh key, since starting a used key again would repeat
   * its nonces.
   */
  static async create(options: { kid: bigint; baseKey: CryptoKey | Uint8Array; suite?: CipherSuiteId; firstCounter?: bigint }): Promise<SFrameSendContext> {
    const s = cipherSuite(options.suite ?? DEFAULT_CIPHER_SUITE);
    requireU64(options.kid, 'KID');
    const firstCounter = options.firstCounter ?? 0n;
    requireU64(firstCounter, 'first CTR');
    return new SFrameSendContext(s, await deriveSFrameKey(s.id, options.kid, options.baseKey), firstCounter);
  }

  get kid(): bigint {
    return this.key.kid;
  }

  /** The CTR the next frame will carry, or null once the counter is spent. */
  get nextCounter(): bigint | null {
    return this.#exhausted ? null : this.#next;
  }

  async encrypt(plaintext: Uint8Array, metadata: Uint8Array = new Uint8Array(0)): Promise<SealedFrame> {
    if (this.#exhausted) throw new SFrameError('counter_exhausted', `KID ${this.kid} has sealed 2^64 frames; a new key is needed`);
    // Checked before the counter moves, so a refused frame spends no CTR.
    requireFrameSize(plaintext, 'plaintext');
    requireFrameSize(metadata, 'metadata');
    const ctr = this.#next;
    if (ctr === U64_MAX) this.#exhausted = true;
    else this.#next = ctr + 1n;
    return { kid: this.kid, ctr, bytes: await sframeEncrypt(this.key, ctr, metadata, plaintext) };
  }
}

/**
 * The keys a receiver can open frames with, by KID. Keys are added when a participant sends
 * theirs and removed when they leave or rotate (after a short grace for frames in flight,
 * which the caller times). A KID added again replaces its key: a sender that reloads its page
 * starts over with a new key.
 */
export class SFrameReceiveContext {
  readonly #keys = new Map<bigint, SFrameKey>();

  constructor(readonly keysMax: number = RECEIVE_KEYS_MAX) {
    if (!Number.isInteger(keysMax) || keysMax < 1 || keysMax > RECEIVE_KEYS_MAX) {
      throw new SFrameError('malformed', `a receiver holds 1 to ${RECEIVE_KEYS_MAX} keys`);
    }
  }

  async addKey(kid: bigint, baseKey: CryptoKey | Uint8Array, suite: CipherSuiteId = DEFAULT_CIPHER_SUITE): Promise<void> {
    requireU64(kid, 'KID');
    if (!this.#keys.has(kid) && this.#keys.size >= this.keysMax) {
      throw new SFrameError('too_many_keys', `the receiver already holds ${this.keysMax} keys`);
    }
    const key = await deriveSFrameKey(suite, kid, baseKey);
    // Checked again: another add may have filled the map while this one derived.
    if (!this.#keys.has(kid) && this.#keys.size >= this.keysMax) {
      throw new SFrameError('too_many_keys', `the receiver already holds ${this.keysMax} keys`);
    }
    // Deleted first so that a replaced KID moves to the end, as the newest.
    this.#keys.delete(kid);
    this.#keys.set(kid, key);
  }

  removeKey(kid: bigint): boolean {
    return this.#keys.delete(kid);
  }

  hasKey(kid: bigint): boolean {
    return this.#keys.has(kid);
  }

  /** The KIDs held, oldest first. */
  kids(): bigint[] {
    return [...this.#keys.keys()];
  }

  get size(): number {
    return this.#keys.size;
  }

  decrypt(sframeCiphertext: Uint8Array, metadata: Uint8Array = new Uint8Array(0)): Promise<OpenedFrame> {
    return sframeDecrypt((kid) => this.#keys.get(kid), metadata, sframeCiphertext);
  }
}

// ------------------------------------------------------------------------------------------
// Media framing: what the frame transform seals and opens
// ------------------------------------------------------------------------------------------
//
// Chromium packetizes an encoded frame after the sender's transform and depacketizes it
// before the receiver's, reading codec headers from the payload: for VP8, whether the frame
// is a key frame and its size. Those bytes stay in the clear, and are given to SFrame as
// metadata so that they are authenticated all the same. A sealed media frame is
//
//   clear prefix ‖ SFrame header ‖ ciphertext ‖ tag
//
// The prefix length is read from the frame's own first byte on both sides, so the receiver
// needs no word from the sender; an altered first byte changes the prefix, hence the AAD,
// and the frame fails to open.

export type MediaKind = 'audio' | 'video';

/** VP8 key frame: the 3-byte frame tag, the start code and the 4 bytes of width and height (RFC 6386 §9.1). */
export const VP8_KEY_FRAME_CLEAR_BYTES = 10;
/** VP8 interframe: the 3-byte frame tag. */
export const VP8_DELTA_FRAME_CLEAR_BYTES = 3;
/** Opus: the TOC byte (RFC 6716 §3.1). */
export const OPUS_CLEAR_BYTES = 1;

/** How many leading bytes of a VP8 (video) or Opus (audio) frame stay in the clear. */
export function clearPrefixBytes(kind: MediaKind, frame: Uint8Array): number {
  requireBytes(frame, 'frame');
  const first = frame[0];
  if (first === undefined) throw new SFrameError('malformed', 'the frame is empty');
  if (kind === 'audio') return OPUS_CLEAR_BYTES;
  if (kind !== 'video') throw new SFrameError('malformed', `unknown media kind ${String(kind)}`);
  // The frame tag's lowest bit is VP8's "show key frame" inverted: 0 for a key frame.
  return (first & 0x01) === 0 ? VP8_KEY_FRAME_CLEAR_BYTES : VP8_DELTA_FRAME_CLEAR_BYTES;
}

export interface SealedMediaFrame extends SealedFrame {
  /** The clear prefix's length; the SFrame header starts there. */
  readonly clearBytes: number;
}

/** Clear prefix ‖ SFrame(prefix as metadata, rest of the frame). */
export async function sealMediaFrame(sender: SFrameSendContext, kind: MediaKind, frame: Uint8Array): Promise<SealedMediaFrame> {
  const clearBytes = clearPrefixBytes(kind, frame);
  // A VP8 frame shorter than its own header, or an empty Opus frame, is not one an encoder
  // makes; sealing part of it would leave the receiver unable to find the header.
  if (frame.length < clearBytes) {
    throw new SFrameError('malformed', `a ${kind} frame of ${frame.length} bytes is shorter than its ${clearBytes}-byte codec header`);
  }
  const prefix = frame.subarray(0, clearBytes);
  const sealed = await sender.encrypt(frame.subarray(clearBytes), prefix);
  return { kid: sealed.kid, ctr: sealed.ctr, clearBytes, bytes: concatBytes(prefix, sealed.bytes) };
}

/** The frame as the encoder made it, or an SFrameError; never the input passed through. */
export async function openMediaFrame(receiver: SFrameReceiveContext, kind: MediaKind, frame: Uint8Array): Promise<OpenedFrame> {
  const clearBytes = clearPrefixBytes(kind, frame);
  if (frame.length <= clearBytes) {
    throw new SFrameError('malformed', `a ${kind} frame of ${frame.length} bytes has no SFrame after its ${clearBytes}-byte codec header`);
  }
  const prefix = frame.subarray(0, clearBytes);
  const opened = await receiver.decrypt(frame.subarray(clearBytes), prefix);
  return { kid: opened.kid, ctr: opened.ctr, plaintext: concatBytes(prefix, opened.plaintext) };
}
