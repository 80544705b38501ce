// Checks, in this browser, what Haven's audit log proves: that an entry is in the log
// (an RFC 9162 Merkle inclusion proof), that the log's checkpoint is signed by the log's key
// (a C2SP signed note), and, built on both, that a device's keys were published for its
// user before anyone encrypts to them.
//
// The log's formats are defined in crates/audit (lib.rs: `write_canonical_bytes`; merkle.rs;
// checkpoint.rs); this is an independent implementation of the verifier side, so the browser
// does not take the server's word for any of it. Without this check the server could hand
// out a key of its own as someone's new device and read what is sealed to it; with it, such
// a key must at least be recorded, signed and visible to everyone who audits the log.
import { bytesEqual, concatBytes, decodeBase64, deviceFingerprint, DevicePublicKeys, sha256, utf8Bytes } from './formats';

/** Why a log proof could not even be checked (as opposed to checked and found false). */
export class TransparencyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TransparencyError';
  }
}

// ------------------------------------------------------------------------------------------
// Entries and leaves
// ------------------------------------------------------------------------------------------

/**
 * The names of an entry's text fields in canonical order, as `ENTRY_FIELD_NAMES` in
 * crates/audit publishes them for clients that recompute leaves.
 */
export const ENTRY_FIELD_NAMES = [
  'actor',
  'role',
  'organisation',
  'session',
  'client_app',
  'action',
  'patient',
  'resource_type',
  'resource_id',
  'outcome',
  'reason',
  'purpose_of_use',
  'request_id',
  'source_ip',
  'user_agent',
] as const;

export type EntryFieldName = (typeof ENTRY_FIELD_NAMES)[number];

/** An audit entry as Haven's API sends it (`EntryOutput` in crates/api). */
export type AuditLogEntry = {
  /** The entry's position in the log, from 1; hashed into its leaf. */
  seq: number;
  /** RFC 3339, for people; not hashed. */
  at: string;
  /** The same instant in milliseconds since the epoch, as hashed. */
  at_ms: number;
} & { [K in EntryFieldName]: string | null };

/** `haven.audit.entry.v2\n`: the version tag of the canonical entry encoding. */
const ENTRY_FORMAT_V2 = 'haven.audit.entry.v2\n';
/** The length written for an absent field, which no present field can have. */
const ABSENT_FIELD = 0xffff_ffff;

/**
 * The canonical bytes of an entry (`write_canonical_bytes`): the version tag, `seq` as a
 * big-endian u64, `at_ms` as a big-endian i64, then each field in `ENTRY_FIELD_NAMES`
 * order as a big-endian u32 byte length and its UTF-8 (`0xFFFFFFFF` when null).
 */
export function canonicalEntryBytes(entry: AuditLogEntry): Uint8Array<ArrayBuffer> {
  if (!Number.isSafeInteger(entry.seq) || entry.seq < 0) throw new TransparencyError('the entry has no valid seq');
  if (!Number.isSafeInteger(entry.at_ms)) throw new TransparencyError('the entry has no valid at_ms');
  const position = new DataView(new ArrayBuffer(16));
  position.setBigUint64(0, BigInt(entry.seq));
  position.setBigInt64(8, BigInt(entry.at_ms));
  const parts: Uint8Array[] = [utf8Bytes(ENTRY_FORMAT_V2), new Uint8Array(position.buffer)];
  for (const name of ENTRY_FIELD_NAMES) {
    const value = entry[name];
    const length = new DataView(new ArrayBuffer(4));
    if (value === null) {
      length.setUint32(0, ABSENT_FIELD);
      parts.push(new Uint8Array(length.buffer));
    } else if (typeof value === 'string') {
      const bytes = utf8Bytes(value);
      length.setUint32(0, bytes.length);
      parts.push(new Uint8Array(length.buffer), bytes);
    } else {
      throw new TransparencyError(`the entry's ${name} is neither text nor null`);
    }
  }
  return concatBytes(...parts);
}

/** The entry's Merkle leaf hash: SHA-256(0x00 ‖ canonical bytes) (RFC 9162 §2.1.1). */
export async function leafHash(entry: AuditLogEntry): Promise<Uint8Array<ArrayBuffer>> {
  return sha256(concatBytes(Uint8Array.of(0x00), canonicalEntryBytes(entry)));
}

/** An interior node: SHA-256(0x01 ‖ left ‖ right). */
function nodeHash(left: Uint8Array, right: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  return sha256(concatBytes(Uint8Array.of(0x01), left, right));
}

/**
 * Whether `leafHash` is the leaf at `leafIndex` (from 0) of the tree of `treeSize` leaves
 * whose root is `root`, by the audit path `path` (RFC 9162 §2.1.3.2; `verify_inclusion` in
 * crates/audit/src/merkle.rs). Indexes up to 2^53 - 1: the arithmetic is on doubles, not
 * on JavaScript's 32-bit bit operators.
 */
export async function verifyInclusion(
  leafIndex: number,
  treeSize: number,
  leafHash: Uint8Array,
  path: Uint8Array[],
  root: Uint8Array,
): Promise<boolean> {
  if (!Number.isSafeInteger(leafIndex) || !Number.isSafeInteger(treeSize) || leafIndex < 0 || leafIndex >= treeSize) {
    return false;
  }
  if (leafHash.length !== 32 || root.length !== 32 || path.some((p) => p.length !== 32)) return false;
  let fn = leafIndex;
  let sn = treeSize - 1;
  let r: Uint8Array = leafHash;
  for (const p of path) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      // Up past the levels where this node is a left child with no right sibling.
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && bytesEqual(r, root);
}

// ------------------------------------------------------------------------------------------
// Checkpoints
// ------------------------------------------------------------------------------------------

/** What a checkpoint commits to. */
export interface Checkpoint {
  /** Names the log, e.g. `haven.example.org/audit`. */
  origin: string;
  size: number;
  /** The SHA-256 tree root, 32 bytes. */
  root: Uint8Array<ArrayBuffer>;
}

export interface CheckpointVerification extends Checkpoint {
  /** The key name the signature was looked for under (the verifier key's name). */
  signedBy: string;
  /** Whether a signature by the log's key is on the note and every such signature verifies. */
  signatureValid: boolean;
}

/** The longest note parsed; checkpoints are a few hundred bytes. */
const NOTE_CHARS_MAX = 16 * 1024;
/** The signature algorithm byte of an Ed25519 key in C2SP signed notes. */
const ALGORITHM_ED25519 = 0x01;

/** The signed text of a note (up to and including the newline before the blank line) and its signature lines. */
function splitNote(note: string): { text: string; signatureLines: string[] } {
  if (note.length > NOTE_CHARS_MAX) throw new TransparencyError('the checkpoint is too long');
  // The text of a checkpoint has no blank line, so the first one ends it (as in crates/audit).
  const split = note.indexOf('\n\n');
  if (split < 0) throw new TransparencyError('the checkpoint is not a signed note');
  const signatureLines = note.slice(split + 2).split('\n');
  // A note ends with a newline, which leaves one empty string at the end.
  if (signatureLines[signatureLines.length - 1] === '') signatureLines.pop();
  return { text: note.slice(0, split + 1), signatureLines };
}

/**
 * What a C2SP checkpoint note says: origin, size and root, each on its own line of the
 * signed text (further lines are extensions, ignored). Checks the form, not the signature.
 */
export function parseCheckpoint(note: string): Checkpoint {
  const [origin, size, root] = splitNote(note).text.split('\n');
  if (!origin) throw new TransparencyError('the checkpoint has no origin');
  // Decimal without leading zeros, so that one size has one spelling.
  if (size === undefined || !/^(?:0|[1-9][0-9]*)$/.test(size) || !Number.isSafeInteger(Number(size))) {
    throw new TransparencyError('the checkpoint size is not a decimal number');
  }
  let rootBytes: Uint8Array<ArrayBuffer>;
  try {
    rootBytes = decodeBase64(root ?? '', 'checkpoint root');
  } catch {
    throw new TransparencyError('the checkpoint root is not base64');
  }
  if (rootBytes.length !== 32) throw new TransparencyError('the checkpoint root is not a SHA-256 hash');
  return { origin, size: Number(size), root: rootBytes };
}

/** A C2SP verifier key, `name+hex(key hash)+base64(0x01 ‖ Ed25519 public key)`, checked. */
interface VerifierKey {
  name: string;
  keyHash: Uint8Array<ArrayBuffer>;
  publicKey: CryptoKey;
}

async function parseVerifierKey(vkey: string): Promise<VerifierKey> {
  const text = vkey.trim();
  // The key is base64, which may itself hold '+': split off two fields only.
  const first = text.indexOf('+');
  const second = text.indexOf('+', first + 1);
  if (first <= 0 || second < 0) throw new TransparencyError('the log key is not a verifier key');
  const name = text.slice(0, first);
  const hash = text.slice(first + 1, second);
  let keyBytes: Uint8Array<ArrayBuffer>;
  try {
    keyBytes = decodeBase64(text.slice(second + 1), 'log key');
  } catch {
    throw new TransparencyError('the log key is not base64');
  }
  if (keyBytes[0] !== ALGORITHM_ED25519 || keyBytes.length !== 33) throw new TransparencyError('the log key is not an Ed25519 key');
  const keyHash = (await sha256(concatBytes(utf8Bytes(`${name}\n`), keyBytes))).slice(0, 4);
  if (!/^[0-9a-f]{8}$/.test(hash) || !bytesEqual(keyHash, Uint8Array.from(hash.match(/../g) ?? [], (h) => parseInt(h, 16)))) {
    throw new TransparencyError('the log key’s hash does not match the key');
  }
  const publicKey = await crypto.subtle.importKey('raw', keyBytes.slice(1), { name: 'Ed25519' }, false, ['verify']);
  return { name, keyHash, publicKey };
}

/**
 * Checks a checkpoint note against the log's verifier key. Throws `TransparencyError` when
 * the note or key is malformed or the note is of another log; otherwise says whether the
 * signature is valid, so a page can tell "forged" apart from "unreadable".
 */
export async function verifyCheckpoint(note: string, vkey: string): Promise<CheckpointVerification> {
  const key = await parseVerifierKey(vkey);
  const { text, signatureLines } = splitNote(note);
  if (text.split('\n')[0] !== key.name) throw new TransparencyError('the checkpoint is not of this log');
  const checkpoint = parseCheckpoint(note);
  let found = false;
  let allValid = true;
  for (const line of signatureLines) {
    const match = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!match) throw new TransparencyError('a checkpoint signature line is malformed');
    if (match[1] !== key.name) continue;
    let signed: Uint8Array<ArrayBuffer>;
    try {
      signed = decodeBase64(match[2]!, 'checkpoint signature');
    } catch {
      throw new TransparencyError('a checkpoint signature is not base64');
    }
    // Another key of the same name (a rotated one): not this verifier's signature.
    if (signed.length !== 4 + 64 || !bytesEqual(signed.subarray(0, 4), key.keyHash)) continue;
    found = true;
    if (!(await crypto.subtle.verify('Ed25519', key.publicKey, signed.slice(4), utf8Bytes(text)))) allValid = false;
  }
  return { ...checkpoint, signedBy: key.name, signatureValid: found && allValid };
}

// ------------------------------------------------------------------------------------------
// Devices in the log
// ------------------------------------------------------------------------------------------

/** An inclusion proof as Haven's API sends it (`ProofOutput` in crates/api). */
export interface InclusionProofWire {
  /** The entry's position in the tree, from 0. */
  leaf_index: number;
  /** Base64. */
  leaf_hash: string;
  /** Base64 hashes, from the leaf up. */
  path: string[];
}

/** A device as another device learns of it: whose it is and its public keys. */
export interface PublishedDevice extends DevicePublicKeys {
  /** The user the device belongs to: the actor of its `device_add` entry. */
  userId: string;
}

export type DeviceEntryVerdict = { verified: true; checkpoint: Checkpoint } | { verified: false; reason: string };

/**
 * Whether the log proves that `device` was added for its user: the entry is an allowed
 * `device_add` of a `Device` whose id is the fingerprint of exactly these keys, by the
 * device's user; the entry hashes to the proof's leaf; the leaf is in the tree the
 * checkpoint signs; and the checkpoint is signed by the log's key. On failure, `reason` says
 * which, in words for a warning. (The device's self-signature is `verifyDeviceSelfSignature`.)
 */
export async function verifyDeviceEntry(
  device: PublishedDevice,
  entry: AuditLogEntry,
  proof: InclusionProofWire | null,
  checkpointNote: string,
  vkey: string,
): Promise<DeviceEntryVerdict> {
  const refuse = (reason: string): DeviceEntryVerdict => ({ verified: false, reason });
  try {
    if (entry.action !== 'device_add') return refuse('the log entry is not a device registration');
    if (entry.outcome !== 'allowed') return refuse('the log entry records a registration that was refused');
    if (entry.resource_type !== 'Device') return refuse('the log entry is not about a device');
    if (entry.resource_id !== (await deviceFingerprint(device))) {
      return refuse('the log entry registered other keys than this device’s');
    }
    if (entry.actor !== device.userId) return refuse('the log entry registered the device for someone else');
    if (proof === null) return refuse('the registration is not yet in a signed checkpoint');
    const leaf = await leafHash(entry);
    if (!bytesEqual(leaf, decodeBase64(proof.leaf_hash, 'leaf hash'))) {
      return refuse('the log entry is not the one its proof is for');
    }
    const checkpoint = await verifyCheckpoint(checkpointNote, vkey);
    if (!checkpoint.signatureValid) return refuse('the log checkpoint is not signed by the log’s key');
    const path = proof.path.map((hash) => decodeBase64(hash, 'proof hash'));
    if (!(await verifyInclusion(proof.leaf_index, checkpoint.size, leaf, path, checkpoint.root))) {
      return refuse('the log entry is not in the signed log');
    }
    return { verified: true, checkpoint: { origin: checkpoint.origin, size: checkpoint.size, root: checkpoint.root } };
  } catch (e) {
    return refuse(`the registration could not be checked: ${e instanceof Error ? e.message : String(e)}`);
  }
}
