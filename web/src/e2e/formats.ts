// End-to-end message formats in the browser: device identities, messages sealed on one
// device for its recipients' devices, and attachments.
//
// Haven's server stores and relays what this module produces but never holds a key that
// opens it. The Rust side (crates/crypto/src/e2e.rs) writes the same formats for native
// clients and tests; the two must agree byte for byte, and the interop script
// (crates/server/tests/browser/e2e-interop.mjs) checks both directions in Chromium.
//
// - A device holds an HPKE key pair (RFC 9180 base mode: DHKEM(X25519, HKDF-SHA256),
//   HKDF-SHA256, AES-128-GCM) and an Ed25519 signing key. It signs
//   `DEVICE_TAG ‖ hpke public ‖ signing public`; the SHA-256 of the same bytes is its
//   fingerprint, which the audit log records when the device is added.
// - A message body is encrypted once under a random content key (AES-256-GCM, bound to its
//   thread and id); the content key is sealed with HPKE to every recipient device, with the
//   message id as associated data so that a sealed key cannot be moved to another message.
//   The sender device signs the ids and the ciphertext's hash, because HPKE's base mode says
//   nothing about who sealed: without the signature the server could write in anyone's name.
// - An attachment is encrypted under its own random file key, bound to the attachment's id;
//   the key travels inside the (encrypted) message body.
//
// Only WebCrypto and @hpke/core (itself WebCrypto underneath) do cryptography here: private
// keys stay CryptoKeys, and can be non-extractable.
import { Aes128Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';

/** Prefix of what a device signs about itself, and of what its fingerprint hashes. */
export const DEVICE_TAG = 'haven.device.v1\n';
/** HPKE `info` when a content key is sealed to a device. */
export const MESSAGE_KEY_INFO = 'haven.message-key.v1';
/** Prefix of a message body's associated data and of what its sender signs. */
export const MESSAGE_TAG = 'haven.message.v1\n';
/** Prefix of an attachment's associated data. */
export const ATTACHMENT_TAG = 'haven.attachment.v1\n';

/** An X25519 or Ed25519 public key, an HPKE `enc`, a content or file key, a SHA-256. */
export const KEY_BYTES = 32;
/** A content key sealed to one device: the key and AES-128-GCM's tag. */
export const SEALED_KEY_BYTES = KEY_BYTES + 16;
/** The AES-GCM nonce in front of every body and attachment. */
export const NONCE_BYTES = 12;
/** The AES-GCM tag at the end of every body and attachment. */
export const TAG_BYTES = 16;
/** An Ed25519 signature. */
export const SIGNATURE_BYTES = 64;

/**
 * The largest message body, before encryption: text is typed by people, files go apart. The
 * same as Haven's limit on a sealed body (`MESSAGE_CIPHERTEXT_BYTES_MAX` in
 * crates/app/src/messaging.rs, less the nonce and tag), so nothing is sealed that Haven
 * would refuse.
 */
export const MESSAGE_BODY_BYTES_MAX = 256 * 1024;
/** The most attachments one message may carry. */
export const ATTACHMENTS_PER_MESSAGE_MAX = 32;
/** The longest file name or media type kept in a message body. */
export const ATTACHMENT_LABEL_CHARS_MAX = 255;

/** Why something could not be sealed or opened; `code` is stable, `message` is for logs. */
export type E2eErrorCode =
  /** Wrong length, an id that is not a lowercase hyphenated UUID, bad base64 or JSON. */
  | 'malformed'
  /** This browser lacks X25519 or Ed25519 in WebCrypto, or a body has an unknown version. */
  | 'unsupported'
  /** The claimed sender device did not sign this message. */
  | 'bad_signature'
  /** The content key was not sealed to this device, or was altered or moved. */
  | 'sealed_key_refused'
  /** The body or attachment was altered, moved, or the key is not its key. */
  | 'decryption_failed'
  /** An attachment opened, but its SHA-256 is not the one the message body names. */
  | 'digest_mismatch';

export class E2eError extends Error {
  constructor(
    readonly code: E2eErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'E2eError';
  }
}

// ------------------------------------------------------------------------------------------
// Bytes, base64 and ids
// ------------------------------------------------------------------------------------------

const utf8 = new TextEncoder();

/** UTF-8 bytes of a string (ids and tags are ASCII). */
export function utf8Bytes(text: string): Uint8Array<ArrayBuffer> {
  return utf8.encode(text);
}

/** A copy backed by its own ArrayBuffer: what WebCrypto takes, safe from later changes. */
function owned(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(bytes);
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

export async function sha256(bytes: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', owned(bytes)));
}

export function hexOf(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Standard base64 with padding (`btoa`'s alphabet), as every binary value travels in JSON. */
export function encodeBase64(bytes: Uint8Array): string {
  let binary = '';
  // In slices, so that a large attachment does not overflow the argument list.
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Decodes standard padded base64, refusing anything else: `atob` alone would accept missing
 * padding, spaces and stray low bits, so two spellings could name the same bytes.
 */
export function decodeBase64(text: string, what = 'value'): Uint8Array<ArrayBuffer> {
  if (!BASE64.test(text)) throw new E2eError('malformed', `the ${what} is not standard base64`);
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  if (encodeBase64(bytes) !== text) throw new E2eError('malformed', `the ${what} is not canonical base64`);
  return bytes;
}

const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Whether `id` is a UUID spelled as Haven signs it: lowercase and hyphenated. */
export function isCanonicalUuid(id: string): boolean {
  return CANONICAL_UUID.test(id);
}

function requireUuid(id: unknown, what: string): asserts id is string {
  // Another spelling of the same UUID would give other associated data than the Rust side's.
  if (typeof id !== 'string' || !isCanonicalUuid(id)) {
    throw new E2eError('malformed', `the ${what} is not a lowercase hyphenated UUID`);
  }
}

function requireLength(bytes: Uint8Array, length: number, what: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
    throw new E2eError('malformed', `the ${what} is not ${length} bytes`);
  }
}

function randomBytes(length: number): Uint8Array<ArrayBuffer> {
  return crypto.getRandomValues(new Uint8Array(length));
}

// ------------------------------------------------------------------------------------------
// The HPKE suite
// ------------------------------------------------------------------------------------------

let hpkeSuite: CipherSuite | null = null;

/**
 * Haven's HPKE suite: DHKEM(X25519, HKDF-SHA256) 0x0020, HKDF-SHA256 0x0001,
 * AES-128-GCM 0x0001. Made on first use, so that a page importing only the audit checks
 * does not carry @hpke/core.
 */
export function havenHpkeSuite(): CipherSuite {
  hpkeSuite ??= new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes128Gcm() });
  return hpkeSuite;
}

// ------------------------------------------------------------------------------------------
// Devices
// ------------------------------------------------------------------------------------------

/** A device's two public keys, raw: all other devices need to write to it and check it. */
export interface DevicePublicKeys {
  /** X25519, 32 bytes. */
  hpkePublicKey: Uint8Array;
  /** Ed25519, 32 bytes. */
  signingPublicKey: Uint8Array;
}

/** `DEVICE_TAG ‖ hpke public ‖ signing public`: what a device signs and what is hashed. */
function deviceIdentityBytes(keys: DevicePublicKeys): Uint8Array<ArrayBuffer> {
  requireLength(keys.hpkePublicKey, KEY_BYTES, 'HPKE public key');
  requireLength(keys.signingPublicKey, KEY_BYTES, 'signing public key');
  return concatBytes(utf8Bytes(DEVICE_TAG), keys.hpkePublicKey, keys.signingPublicKey);
}

/** Lowercase hex SHA-256 of the device's identity: what the audit log records (64 chars). */
export async function deviceFingerprint(keys: DevicePublicKeys): Promise<string> {
  return hexOf(await sha256(deviceIdentityBytes(keys)));
}

/** The device's signature over its own keys, with its Ed25519 private key. */
export async function signDevice(keys: DevicePublicKeys, signingKey: CryptoKey): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.sign('Ed25519', signingKey, deviceIdentityBytes(keys)));
}

/**
 * Whether `signature` is the device's signature over its own keys: proof that whoever
 * registered it holds the signing key, and that the HPKE key belongs with it. Like the Rust
 * side, refuses an all-zero HPKE key (every shared secret with it would be zero).
 */
export async function verifyDeviceSelfSignature(keys: DevicePublicKeys, signature: Uint8Array): Promise<boolean> {
  if (!(signature instanceof Uint8Array) || signature.length !== SIGNATURE_BYTES) return false;
  let identity: Uint8Array<ArrayBuffer>;
  try {
    identity = deviceIdentityBytes(keys);
  } catch {
    return false;
  }
  if (keys.hpkePublicKey.every((b) => b === 0)) return false;
  const publicKey = await importSigningPublicKey(keys.signingPublicKey).catch(() => null);
  if (publicKey === null) return false;
  return crypto.subtle.verify('Ed25519', publicKey, owned(signature), identity);
}

function importSigningPublicKey(raw: Uint8Array): Promise<CryptoKey> {
  return crypto.subtle.importKey('raw', owned(raw), { name: 'Ed25519' }, true, ['verify']);
}

/**
 * What people compare to know they have the same device: the first 30 bytes of the
 * fingerprint as groups of 5 digits, one group per 5 bytes (a big-endian 40-bit integer
 * modulo 100 000, zero-padded), separated by spaces, as the Rust side's `safety_number`.
 */
export function safetyNumber(fingerprint: string): string {
  if (!/^[0-9a-f]{64}$/.test(fingerprint)) {
    throw new E2eError('malformed', 'a fingerprint is 64 lowercase hex digits');
  }
  const digest = Uint8Array.from(fingerprint.match(/../g) ?? [], (h) => parseInt(h, 16));
  const groups: string[] = [];
  for (let start = 0; start < 30; start += 5) {
    // 40 bits fit exactly in a double, so plain arithmetic is exact.
    const value = digest.subarray(start, start + 5).reduce((acc, b) => acc * 256 + b, 0);
    groups.push(String(value % 100_000).padStart(5, '0'));
  }
  return groups.join(' ');
}

// ------------------------------------------------------------------------------------------
// Messages
// ------------------------------------------------------------------------------------------

/** One device a message is sealed to. */
export interface MessageRecipient {
  /** Haven's id of the device, echoed in the sealed key so the server can route it. */
  deviceId: string;
  /** X25519, 32 bytes. */
  hpkePublicKey: Uint8Array;
}

/** The content key of one message, sealed to one device. */
export interface SealedKey {
  device: string;
  /** HPKE's encapsulated key, 32 bytes. */
  enc: Uint8Array<ArrayBuffer>;
  /** The content key under AES-128-GCM, 48 bytes. */
  sealed_key: Uint8Array<ArrayBuffer>;
}

/** A message sealed for its recipients, keys in the order the devices were given. */
export interface SealedMessage {
  /** `nonce ‖ AES-256-GCM(body) ‖ tag`. */
  ciphertext: Uint8Array<ArrayBuffer>;
  /** The sender device's Ed25519 signature, 64 bytes. */
  signature: Uint8Array<ArrayBuffer>;
  keys: SealedKey[];
}

export interface SealMessageParams {
  threadId: string;
  messageId: string;
  /** The encoded body (`encodeMessageBody`). */
  plaintext: Uint8Array;
  recipients: MessageRecipient[];
  /** The sender device's Ed25519 private key. */
  signer: CryptoKey;
}

export interface OpenMessageParams {
  threadId: string;
  messageId: string;
  ciphertext: Uint8Array;
  /** This device's `enc` and `sealed_key` from the message's keys. */
  enc: Uint8Array;
  sealedKey: Uint8Array;
  signature: Uint8Array;
  /** The claimed sender device's Ed25519 public key, raw. */
  senderSigningKey: Uint8Array;
  /**
   * This device's X25519 key pair; a pair works with a non-extractable private key, as the
   * public half is then not recomputed from the private one.
   */
  recipientKey: CryptoKeyPair | CryptoKey;
}

/** `MESSAGE_TAG ‖ thread ‖ "\n" ‖ message`: the body's associated data. */
function messageAad(threadId: string, messageId: string): Uint8Array<ArrayBuffer> {
  return utf8Bytes(`${MESSAGE_TAG}${threadId}\n${messageId}`);
}

/** What the sender signs: the body's associated data, `"\n"`, SHA-256 of the ciphertext. */
async function messageSignedBytes(threadId: string, messageId: string, ciphertext: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  return concatBytes(messageAad(threadId, messageId), utf8Bytes('\n'), await sha256(ciphertext));
}

/** Seals `plaintext` for every recipient device and signs it as the sender device. */
export async function sealMessage(params: SealMessageParams): Promise<SealedMessage> {
  const { threadId, messageId } = params;
  requireUuid(threadId, 'thread id');
  requireUuid(messageId, 'message id');
  for (const recipient of params.recipients) {
    requireLength(recipient.hpkePublicKey, KEY_BYTES, `HPKE key of device ${recipient.deviceId}`);
  }
  const contentKey = randomBytes(KEY_BYTES);
  try {
    const ciphertext = await encryptBody(contentKey, params.plaintext, messageAad(threadId, messageId));
    const suite = havenHpkeSuite();
    const info = utf8Bytes(MESSAGE_KEY_INFO);
    const aad = utf8Bytes(messageId);
    const keys: SealedKey[] = [];
    for (const recipient of params.recipients) {
      let sealed: { ct: ArrayBuffer; enc: ArrayBuffer };
      try {
        const recipientPublicKey = await suite.kem.deserializePublicKey(owned(recipient.hpkePublicKey));
        sealed = await suite.seal({ recipientPublicKey, info }, contentKey, aad);
      } catch (e) {
        // A low-order point gives an all-zero shared secret, which WebCrypto refuses.
        throw new E2eError('malformed', `the HPKE key of device ${recipient.deviceId} is not a usable X25519 key (${String(e)})`);
      }
      keys.push({ device: recipient.deviceId, enc: new Uint8Array(sealed.enc), sealed_key: new Uint8Array(sealed.ct) });
    }
    const signed = await messageSignedBytes(threadId, messageId, ciphertext);
    const signature = new Uint8Array(await crypto.subtle.sign('Ed25519', params.signer, signed));
    return { ciphertext, signature, keys };
  } finally {
    contentKey.fill(0);
  }
}

/**
 * Checks that the claimed sender signed this message, then opens the content key sealed to
 * this device and the body. The signature comes first, so nothing unsigned is decrypted.
 * Throws `E2eError` on any failure.
 */
export async function openMessage(params: OpenMessageParams): Promise<Uint8Array<ArrayBuffer>> {
  const { threadId, messageId } = params;
  requireUuid(threadId, 'thread id');
  requireUuid(messageId, 'message id');
  requireLength(params.enc, KEY_BYTES, 'enc');
  requireLength(params.sealedKey, SEALED_KEY_BYTES, 'sealed key');
  await verifyMessageSignature(params);
  let contentKey: Uint8Array<ArrayBuffer>;
  try {
    contentKey = new Uint8Array(
      await havenHpkeSuite().open(
        { recipientKey: params.recipientKey, enc: owned(params.enc), info: utf8Bytes(MESSAGE_KEY_INFO) },
        owned(params.sealedKey),
        utf8Bytes(messageId),
      ),
    );
  } catch (e) {
    throw new E2eError('sealed_key_refused', `the content key does not open on this device (${String(e)})`);
  }
  try {
    return await decryptBody(contentKey, params.ciphertext, messageAad(threadId, messageId), 'message body');
  } finally {
    contentKey.fill(0);
  }
}

/** Throws `bad_signature` unless the device with `senderSigningKey` signed this message. */
export async function verifyMessageSignature(params: {
  threadId: string;
  messageId: string;
  ciphertext: Uint8Array;
  signature: Uint8Array;
  senderSigningKey: Uint8Array;
}): Promise<void> {
  requireUuid(params.threadId, 'thread id');
  requireUuid(params.messageId, 'message id');
  requireLength(params.signature, SIGNATURE_BYTES, 'signature');
  requireLength(params.senderSigningKey, KEY_BYTES, "sender's signing key");
  let publicKey: CryptoKey;
  try {
    publicKey = await importSigningPublicKey(params.senderSigningKey);
  } catch (e) {
    throw new E2eError('malformed', `the sender's signing key is not an Ed25519 key (${String(e)})`);
  }
  const signed = await messageSignedBytes(params.threadId, params.messageId, params.ciphertext);
  if (!(await crypto.subtle.verify('Ed25519', publicKey, owned(params.signature), signed))) {
    throw new E2eError('bad_signature', 'the message is not signed by the device it claims to come from');
  }
}

/** `nonce ‖ AES-256-GCM(key, nonce, plaintext, aad) ‖ tag`, with a random nonce. */
async function encryptBody(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
  const aesKey = await crypto.subtle.importKey('raw', owned(key), { name: 'AES-GCM' }, false, ['encrypt']);
  // A random 96-bit nonce is safe: every content and file key encrypts exactly one plaintext.
  const nonce = randomBytes(NONCE_BYTES);
  const sealed = await crypto.subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad, tagLength: 128 }, aesKey, owned(plaintext));
  return concatBytes(nonce, new Uint8Array(sealed));
}

async function decryptBody(key: Uint8Array, sealed: Uint8Array, aad: Uint8Array<ArrayBuffer>, what: string): Promise<Uint8Array<ArrayBuffer>> {
  if (!(sealed instanceof Uint8Array) || sealed.length < NONCE_BYTES + TAG_BYTES) {
    throw new E2eError('malformed', `the ${what} is shorter than a nonce and a tag`);
  }
  requireLength(key, KEY_BYTES, `key of the ${what}`);
  const aesKey = await crypto.subtle.importKey('raw', owned(key), { name: 'AES-GCM' }, false, ['decrypt']);
  try {
    const iv = owned(sealed.subarray(0, NONCE_BYTES));
    const body = owned(sealed.subarray(NONCE_BYTES));
    return new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv, additionalData: aad, tagLength: 128 }, aesKey, body));
  } catch {
    throw new E2eError('decryption_failed', `the ${what} was altered, moved, or is not under this key`);
  }
}

// ------------------------------------------------------------------------------------------
// Attachments
// ------------------------------------------------------------------------------------------

/** `ATTACHMENT_TAG ‖ attachment id`. */
function attachmentAad(attachmentId: string): Uint8Array<ArrayBuffer> {
  return utf8Bytes(`${ATTACHMENT_TAG}${attachmentId}`);
}

export interface SealedAttachment {
  /** The file key, 32 bytes, for the message body (`AttachmentRef.key`). */
  key: Uint8Array<ArrayBuffer>;
  /** `nonce ‖ AES-256-GCM(file) ‖ tag`, to upload. */
  blob: Uint8Array<ArrayBuffer>;
  /** SHA-256 of the file, for the message body (`AttachmentRef.sha256`). */
  sha256: Uint8Array<ArrayBuffer>;
}

/**
 * Seals a file under a fresh file key. `attachmentId` is chosen by this client
 * (`crypto.randomUUID()`), so the blob is bound to its id before the server sees it.
 */
export async function sealAttachment(params: { attachmentId: string; file: Uint8Array }): Promise<SealedAttachment> {
  requireUuid(params.attachmentId, 'attachment id');
  const key = randomBytes(KEY_BYTES);
  const blob = await encryptBody(key, params.file, attachmentAad(params.attachmentId));
  return { key, blob, sha256: await sha256(params.file) };
}

/**
 * Opens an attachment's blob with its file key; with `sha256` (from the message body), also
 * checks the file is the one the sender named.
 */
export async function openAttachment(params: {
  attachmentId: string;
  key: Uint8Array;
  blob: Uint8Array;
  sha256?: Uint8Array;
}): Promise<Uint8Array<ArrayBuffer>> {
  requireUuid(params.attachmentId, 'attachment id');
  const file = await decryptBody(params.key, params.blob, attachmentAad(params.attachmentId), 'attachment');
  if (params.sha256 !== undefined && !bytesEqual(await sha256(file), params.sha256)) {
    throw new E2eError('digest_mismatch', 'the attachment is not the file the message names');
  }
  return file;
}

// ------------------------------------------------------------------------------------------
// Message bodies
// ------------------------------------------------------------------------------------------

/** An attachment as a message body names it. */
export interface AttachmentRef {
  /** Lowercase hyphenated UUID, chosen by the sender. */
  id: string;
  /** The file's name as the sender had it. */
  name: string;
  /** Its media type, e.g. `application/pdf`. */
  type: string;
  /** Its size in bytes, before encryption. */
  size: number;
  /** The file key, 32 bytes. */
  key: Uint8Array<ArrayBuffer>;
  /** SHA-256 of the file, 32 bytes. */
  sha256: Uint8Array<ArrayBuffer>;
}

/** What a message says, version 1. */
export interface MessageBody {
  text: string;
  attachments: AttachmentRef[];
}

const BODY_KEYS = ['v', 'text', 'attachments'];
const ATTACHMENT_KEYS = ['id', 'name', 'type', 'size', 'key', 'sha256'];

/**
 * UTF-8 JSON `{"v":1,"text":…,"attachments":[{"id","name","type","size","key","sha256"}]}`,
 * keys in that order, binary values in base64. Refuses what `decodeMessageBody` would refuse.
 */
export function encodeMessageBody(body: MessageBody): Uint8Array<ArrayBuffer> {
  const json = {
    v: 1,
    text: body.text,
    attachments: body.attachments.map((a) => ({
      id: a.id,
      name: a.name,
      type: a.type,
      size: a.size,
      key: encodeBase64(a.key),
      sha256: encodeBase64(a.sha256),
    })),
  };
  const bytes = utf8Bytes(JSON.stringify(json));
  // The same checks as on receipt, so that nothing is sent that a recipient would refuse.
  decodeMessageBody(bytes);
  return bytes;
}

/**
 * Reads a version 1 body, refusing an unknown version, unknown or missing fields and wrong
 * types: a field this version does not know could carry meaning the sender relied on.
 */
export function decodeMessageBody(bytes: Uint8Array): MessageBody {
  if (bytes.length > MESSAGE_BODY_BYTES_MAX) {
    throw new E2eError('malformed', `the message body is over ${MESSAGE_BODY_BYTES_MAX} bytes`);
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes));
  } catch {
    throw new E2eError('malformed', 'the message body is not UTF-8 JSON');
  }
  if (!isPlainObject(json)) throw new E2eError('malformed', 'the message body is not a JSON object');
  if (json.v !== 1) {
    throw new E2eError('unsupported', `the message body has version ${JSON.stringify(json.v) ?? 'none'}, this app reads version 1`);
  }
  requireExactKeys(json, BODY_KEYS, 'message body');
  if (typeof json.text !== 'string') throw new E2eError('malformed', 'the message text is not a string');
  if (!Array.isArray(json.attachments)) throw new E2eError('malformed', 'the attachments are not a list');
  if (json.attachments.length > ATTACHMENTS_PER_MESSAGE_MAX) {
    throw new E2eError('malformed', `a message carries at most ${ATTACHMENTS_PER_MESSAGE_MAX} attachments`);
  }
  const attachments = json.attachments.map((item: unknown, i): AttachmentRef => {
    const what = `attachment ${i + 1}`;
    if (!isPlainObject(item)) throw new E2eError('malformed', `${what} is not a JSON object`);
    requireExactKeys(item, ATTACHMENT_KEYS, what);
    const { id, name, type, size, key, sha256: digest } = item;
    requireUuid(id, `${what}'s id`);
    for (const [label, value] of [
      ['name', name],
      ['type', type],
    ] as const) {
      if (typeof value !== 'string' || value.length > ATTACHMENT_LABEL_CHARS_MAX) {
        throw new E2eError('malformed', `${what}'s ${label} is not a string of at most ${ATTACHMENT_LABEL_CHARS_MAX} characters`);
      }
    }
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
      throw new E2eError('malformed', `${what}'s size is not a whole number of bytes`);
    }
    if (typeof key !== 'string' || typeof digest !== 'string') {
      throw new E2eError('malformed', `${what}'s key and sha256 are not base64 strings`);
    }
    const keyBytes = decodeBase64(key, `${what}'s key`);
    const digestBytes = decodeBase64(digest, `${what}'s sha256`);
    requireLength(keyBytes, KEY_BYTES, `${what}'s key`);
    requireLength(digestBytes, KEY_BYTES, `${what}'s sha256`);
    return { id, name: name as string, type: type as string, size, key: keyBytes, sha256: digestBytes };
  });
  return { text: json.text, attachments };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function requireExactKeys(object: Record<string, unknown>, keys: string[], what: string): void {
  const present = Object.keys(object);
  const unknown = present.filter((k) => !keys.includes(k));
  const missing = keys.filter((k) => !present.includes(k));
  if (unknown.length > 0) throw new E2eError('malformed', `${what} has unknown fields: ${unknown.join(', ')}`);
  if (missing.length > 0) throw new E2eError('malformed', `${what} lacks fields: ${missing.join(', ')}`);
}
