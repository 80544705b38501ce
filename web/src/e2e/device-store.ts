// This browser's device for end-to-end messaging: its X25519 (HPKE) and Ed25519 (signing)
// key pairs, made here and kept here.
//
// The private keys are generated non-extractable: script on the page, including Haven's own,
// can use them but never read them, so a cross-site-scripting flaw cannot copy them out for
// later use elsewhere. The CryptoKey objects themselves are stored in IndexedDB (which keeps
// them by structured clone, still non-extractable), one device per user id, because two
// people may share a browser. Whether a sign-out wipes the device is the caller's decision:
// `deleteDevice` is the only way keys leave.
//
// Beside the devices, the same database keeps what this browser has learnt to trust (public
// data only, never message content): the audit log's verifier key, pinned on first use, and
// for each person signed in here the devices of the people they write to, so that a new
// one is noticed.
import { type DevicePublicKeys, deviceFingerprint, signDevice } from './formats';

/** This browser's device for one user. */
export interface Device {
  userId: string;
  /** X25519; the private key is non-extractable. Pass the pair as `recipientKey`. */
  hpke: CryptoKeyPair;
  /** Ed25519; the private key is non-extractable. Pass `signing.privateKey` as `signer`. */
  signing: CryptoKeyPair;
  createdAtMs: number;
}

/** What the server and other devices are told about a device. */
export interface DeviceDescription extends DevicePublicKeys {
  hpkePublicKey: Uint8Array<ArrayBuffer>;
  signingPublicKey: Uint8Array<ArrayBuffer>;
  /** Ed25519 over `DEVICE_TAG ‖ hpke ‖ signing`, 64 bytes. */
  selfSignature: Uint8Array<ArrayBuffer>;
  /** Lowercase hex SHA-256 of the same bytes: what the audit log records. */
  fingerprint: string;
}

export type DeviceStoreErrorCode =
  /** This browser lacks IndexedDB, or X25519 or Ed25519 in WebCrypto. */
  | 'unsupported'
  /** The user already has a device in this browser; it is never replaced silently. */
  | 'device_exists'
  /** IndexedDB failed (private browsing, a full disk, storage cleared under us). */
  | 'storage_failed'
  /** What is stored is not a device this code wrote. */
  | 'corrupt';

export class DeviceStoreError extends Error {
  constructor(
    readonly code: DeviceStoreErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'DeviceStoreError';
  }
}

const DATABASE = 'haven-device';
const DATABASE_VERSION = 2;
const STORE = 'devices';
/** Trust records, `{ key, ... }`: public keys, fingerprints and ids only. */
const TRUST_STORE = 'trust';
/** User ids are UUIDs; the bound only keeps a wrong argument from becoming a huge key. */
const USER_ID_CHARS_MAX = 200;

function requireUserId(userId: string): void {
  if (typeof userId !== 'string' || userId.length === 0 || userId.length > USER_ID_CHARS_MAX) {
    // A caller's bug, not an operating error.
    throw new TypeError(`a device belongs to a user id of 1 to ${USER_ID_CHARS_MAX} characters`);
  }
}

/**
 * Makes a device for `userId` and stores it. Refuses (`device_exists`) if the user already
 * has one here, even when two tabs race: the store's `add` admits only the first.
 */
export async function createDevice(userId: string): Promise<Device> {
  requireUserId(userId);
  let hpke: CryptoKeyPair;
  let signing: CryptoKeyPair;
  try {
    // `false` makes the private keys non-extractable; public keys are always extractable.
    hpke = (await crypto.subtle.generateKey({ name: 'X25519' }, false, ['deriveBits'])) as CryptoKeyPair;
    signing = (await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])) as CryptoKeyPair;
  } catch (e) {
    throw new DeviceStoreError('unsupported', `this browser cannot make X25519 and Ed25519 keys (${String(e)})`);
  }
  // An invariant, not an operating error: an extractable private key here is a bug.
  if (hpke.privateKey.extractable || signing.privateKey.extractable) {
    throw new Error('a device private key came out extractable');
  }
  const device: Device = { userId, hpke, signing, createdAtMs: Date.now() };
  await withStore(STORE, 'readwrite', (store) => store.add(device));
  return device;
}

/** The user's device in this browser, or null if there is none. */
export async function loadDevice(userId: string): Promise<Device | null> {
  requireUserId(userId);
  const stored = await withStore(STORE, 'readonly', (store) => store.get(userId));
  if (stored === undefined) return null;
  if (!isDevice(stored, userId)) {
    throw new DeviceStoreError('corrupt', 'the stored device is not one this app wrote');
  }
  return stored;
}

/** Forgets the user's device in this browser (its private keys are then gone for good). */
export async function deleteDevice(userId: string): Promise<void> {
  requireUserId(userId);
  await withStore(STORE, 'readwrite', (store) => store.delete(userId));
}

/** A record of what this browser trusts: public data under a key of the caller's choosing. */
export interface TrustRecord {
  key: string;
  [field: string]: unknown;
}

/** The trust record under `key`, or null. */
export async function loadTrustRecord<T extends TrustRecord>(key: string): Promise<T | null> {
  const stored = await withStore(TRUST_STORE, 'readonly', (store) => store.get(key));
  return (stored as T | undefined) ?? null;
}

/** Writes (or replaces) a trust record. */
export async function saveTrustRecord(record: TrustRecord): Promise<void> {
  await withStore(TRUST_STORE, 'readwrite', (store) => store.put(record));
}

/** Forgets a trust record. */
export async function deleteTrustRecord(key: string): Promise<void> {
  await withStore(TRUST_STORE, 'readwrite', (store) => store.delete(key));
}

/** The device's raw public keys, self-signature and fingerprint, to register or show it. */
export async function describeDevice(device: Device): Promise<DeviceDescription> {
  const keys = {
    hpkePublicKey: new Uint8Array(await crypto.subtle.exportKey('raw', device.hpke.publicKey)),
    signingPublicKey: new Uint8Array(await crypto.subtle.exportKey('raw', device.signing.publicKey)),
  };
  return {
    ...keys,
    selfSignature: await signDevice(keys, device.signing.privateKey),
    fingerprint: await deviceFingerprint(keys),
  };
}

function isKey(value: unknown, algorithm: string, type: KeyType): value is CryptoKey {
  return value instanceof CryptoKey && value.algorithm.name === algorithm && value.type === type;
}

function isDevice(value: unknown, userId: string): value is Device {
  if (typeof value !== 'object' || value === null) return false;
  const device = value as Partial<Device>;
  return (
    device.userId === userId &&
    typeof device.createdAtMs === 'number' &&
    isKey(device.hpke?.privateKey, 'X25519', 'private') &&
    isKey(device.hpke?.publicKey, 'X25519', 'public') &&
    isKey(device.signing?.privateKey, 'Ed25519', 'private') &&
    isKey(device.signing?.publicKey, 'Ed25519', 'public')
  );
}

/**
 * Runs one request in a transaction and resolves once the transaction has committed, so a
 * created device is on disk before anyone registers it. The connection is closed after each
 * use, so that it never blocks another tab's upgrade or deletion of the database.
 */
async function withStore<T>(
  name: string,
  mode: IDBTransactionMode,
  request: (store: IDBObjectStore) => IDBRequest<T>,
): Promise<T> {
  const db = await openDatabase();
  try {
    return await new Promise<T>((resolve, reject) => {
      const transaction = db.transaction(name, mode);
      const pending = request(transaction.objectStore(name));
      transaction.oncomplete = () => resolve(pending.result);
      // A failed request aborts the transaction; its own error says more than the abort's.
      transaction.onabort = () => {
        const error = pending.error ?? transaction.error;
        // Only `add` meets an existing key: the user already has a device here.
        if (error?.name === 'ConstraintError' && name === STORE) {
          reject(new DeviceStoreError('device_exists', 'this user already has a device in this browser'));
        } else {
          reject(storageFailed(`the device database refused the change (${String(error)})`));
        }
      };
    });
  } finally {
    db.close();
  }
}

function openDatabase(): Promise<IDBDatabase> {
  if (typeof indexedDB === 'undefined') {
    return Promise.reject(new DeviceStoreError('unsupported', 'this browser has no IndexedDB'));
  }
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DATABASE, DATABASE_VERSION);
    request.onupgradeneeded = () => {
      if (!request.result.objectStoreNames.contains(STORE)) {
        request.result.createObjectStore(STORE, { keyPath: 'userId' });
      }
      if (!request.result.objectStoreNames.contains(TRUST_STORE)) {
        request.result.createObjectStore(TRUST_STORE, { keyPath: 'key' });
      }
    };
    request.onsuccess = () => {
      // Another tab deleting or upgrading the database should not wait for this one.
      request.result.onversionchange = () => request.result.close();
      resolve(request.result);
    };
    request.onerror = () => reject(storageFailed(`the device database did not open (${String(request.error)})`));
  });
}

function storageFailed(message: string): DeviceStoreError {
  return new DeviceStoreError('storage_failed', message);
}
