// Whom the app seals messages to, checked here rather than taken from Haven's word:
//
// - the audit log's verifier key is pinned in this browser the first time it is seen, and a
//   different key later is a loud warning (until the person accepts it);
// - every device of a conversation must sign its own keys and be published in the log: its
//   registration entry, the inclusion proof of that entry, and the checkpoint's signature by
//   the pinned key. A device that fails is withheld (named in `withheld_devices`), so Haven
//   cannot quietly add a key of its own to read along;
// - the devices of the people one writes to are remembered (per person signed in here), so
//   that a new one is shown with its safety number, to compare with its owner.
import { apiText } from '../api';
import {
  type TrustRecord,
  decodeBase64,
  deviceFingerprint,
  loadTrustRecord,
  saveTrustRecord,
  verifyDeviceEntry,
  verifyDeviceSelfSignature,
} from '../e2e';
import type { Role } from '../session';
import type { DeviceList, ListedDevice } from './device';

export type LogKey =
  | { state: 'pinned'; vkey: string }
  /** Haven serves another key than the one pinned here: nothing is verified with it. */
  | { state: 'changed'; pinned: string; served: string };

interface PinnedKey extends TrustRecord {
  vkey: string;
  pinnedAtMs: number;
}

const PINNED_KEY = 'audit-log-vkey';

/** The log's key, pinned on first use (per origin, as IndexedDB is). */
export async function logKey(background = false): Promise<LogKey> {
  const served = (await apiText('/api/v1/audit/vkey', !background)).trim();
  const pinned = await loadTrustRecord<PinnedKey>(PINNED_KEY);
  if (!pinned) {
    await saveTrustRecord({ key: PINNED_KEY, vkey: served, pinnedAtMs: Date.now() });
    return { state: 'pinned', vkey: served };
  }
  return pinned.vkey === served ? { state: 'pinned', vkey: served } : { state: 'changed', pinned: pinned.vkey, served };
}

/** Pins the key Haven serves now, in place of the old one: the person's informed choice. */
export async function trustServedLogKey(served: string): Promise<void> {
  await saveTrustRecord({ key: PINNED_KEY, vkey: served, pinnedAtMs: Date.now() });
}

/** A device of a conversation, checked. */
export interface CheckedDevice {
  device: ListedDevice;
  /** The owner's role, as the log recorded it when the device was published. */
  role: Role | null;
  verified: boolean;
  /** Why it is withheld, in words for a warning. */
  reason: string | null;
  hpkePublicKey: Uint8Array<ArrayBuffer> | null;
  signingPublicKey: Uint8Array<ArrayBuffer> | null;
}

const ROLES: Role[] = ['patient', 'clinician', 'nurse', 'front_desk', 'privacy_officer', 'auditor', 'administrator'];

async function check(device: ListedDevice, list: DeviceList, key: LogKey): Promise<CheckedDevice> {
  const role = ROLES.find((r) => r === device.log_entry?.role) ?? null;
  const refuse = (reason: string, keys: Partial<CheckedDevice> = {}): CheckedDevice => ({
    device,
    role,
    verified: false,
    reason,
    hpkePublicKey: null,
    signingPublicKey: null,
    ...keys,
  });
  let hpkePublicKey: Uint8Array<ArrayBuffer>;
  let signingPublicKey: Uint8Array<ArrayBuffer>;
  let selfSignature: Uint8Array<ArrayBuffer>;
  try {
    hpkePublicKey = decodeBase64(device.hpke_public_key, 'HPKE key');
    signingPublicKey = decodeBase64(device.signing_public_key, 'signing key');
    selfSignature = decodeBase64(device.self_signature, 'self-signature');
  } catch {
    return refuse('its keys are malformed');
  }
  const keys = { hpkePublicKey, signingPublicKey };
  let fingerprint: string;
  try {
    fingerprint = await deviceFingerprint(keys);
  } catch {
    return refuse('its keys are malformed');
  }
  if (fingerprint !== device.fingerprint) return refuse('its fingerprint is not that of its keys');
  if (!(await verifyDeviceSelfSignature(keys, selfSignature))) return refuse('it does not prove that it holds its keys');
  // From here on the keys are the device's own: kept to check what it signed, not to seal to.
  const signed = { signingPublicKey };
  if (key.state === 'changed') return refuse('the audit log’s key changed, so nothing can be checked against it', signed);
  if (!device.log_entry) return refuse('not in the transparency log', signed);
  if (!list.checkpoint) return refuse('not yet in a signed checkpoint of the transparency log', signed);
  const { proof, ...entry } = device.log_entry;
  const verdict = await verifyDeviceEntry({ userId: device.user, ...keys }, entry, proof, list.checkpoint.note, key.vkey);
  if (!verdict.verified) return refuse(`not proven by the transparency log: ${verdict.reason}`, signed);
  return { device, role, verified: true, reason: null, hpkePublicKey, signingPublicKey };
}

/** Checks every device of a list against the log. */
export function checkDevices(list: DeviceList, key: LogKey): Promise<CheckedDevice[]> {
  return Promise.all(list.devices.map((device) => check(device, list, key)));
}

/** A device remembered for a correspondent: public data only. */
interface KnownDevice {
  fingerprint: string;
  label: string;
  /** Base64 Ed25519 key, to check messages from it after it is removed. */
  signingPublicKey: string;
  firstSeenMs: number;
}

interface KnownDevices extends TrustRecord {
  /** user id → device id → what was seen. */
  users: Record<string, Record<string, KnownDevice>>;
}

const knownKey = (me: string) => `known-devices:${me}`;

/** A verified device of someone already known here that this browser has not seen before. */
export interface NewDevice {
  checked: CheckedDevice;
}

/**
 * Compares a conversation's verified devices with those remembered for `me`. The devices of
 * someone seen for the first time are remembered at once (trust on first use); a new device
 * of someone already known is returned, to be shown until the person acknowledges it.
 * `thisDevice` (this browser's own) is left out.
 */
export async function newDevices(me: string, thisDevice: string, checked: CheckedDevice[]): Promise<NewDevice[]> {
  const record = (await loadTrustRecord<KnownDevices>(knownKey(me))) ?? { key: knownKey(me), users: {} };
  const found: NewDevice[] = [];
  let changed = false;
  const byUser = new Map<string, CheckedDevice[]>();
  for (const c of checked) {
    if (!c.verified || c.device.id === thisDevice) continue;
    byUser.set(c.device.user, [...(byUser.get(c.device.user) ?? []), c]);
  }
  for (const [user, devices] of byUser) {
    const known = record.users[user];
    if (!known) {
      record.users[user] = Object.fromEntries(devices.map((c) => [c.device.id, remember(c)]));
      changed = true;
      continue;
    }
    for (const c of devices) {
      const seen = known[c.device.id];
      if (!seen || seen.fingerprint !== c.device.fingerprint) found.push({ checked: c });
    }
  }
  if (changed) await saveTrustRecord(record);
  return found;
}

function remember(c: CheckedDevice): KnownDevice {
  return {
    fingerprint: c.device.fingerprint,
    label: c.device.label,
    signingPublicKey: c.device.signing_public_key,
    firstSeenMs: Date.now(),
  };
}

/** Remembers devices the person has been shown, so they are no longer new. */
export async function acknowledgeDevices(me: string, devices: CheckedDevice[]): Promise<void> {
  const record = (await loadTrustRecord<KnownDevices>(knownKey(me))) ?? { key: knownKey(me), users: {} };
  for (const c of devices) {
    record.users[c.device.user] = { ...(record.users[c.device.user] ?? {}), [c.device.id]: remember(c) };
  }
  await saveTrustRecord(record);
}

/** The signing keys of devices remembered for `me`, by device id: to check older messages. */
export async function rememberedSigningKeys(me: string): Promise<Map<string, Uint8Array<ArrayBuffer>>> {
  const record = await loadTrustRecord<KnownDevices>(knownKey(me));
  const keys = new Map<string, Uint8Array<ArrayBuffer>>();
  for (const devices of Object.values(record?.users ?? {})) {
    for (const [id, device] of Object.entries(devices)) {
      try {
        keys.set(id, decodeBase64(device.signingPublicKey, 'signing key'));
      } catch {
        // Not written by this code: ignored.
      }
    }
  }
  return keys;
}
