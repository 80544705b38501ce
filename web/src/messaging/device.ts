// This browser's device for the signed-in person: found in IndexedDB, or made here and
// registered with Haven (which publishes it in the audit log). Its private keys never leave
// this browser, and survive signing out; what they decrypt lives only in the pages' memory.
import { ApiError, api, apiInBackground } from '../api';
import {
  type Device,
  type TrustRecord,
  DeviceStoreError,
  createDevice,
  deleteDevice,
  deleteTrustRecord,
  describeDevice,
  encodeBase64,
  loadDevice,
  loadTrustRecord,
  safetyNumber,
  saveTrustRecord,
} from '../e2e';
import type { AuditLogEntry, InclusionProofWire } from '../e2e';

/** A device as Haven lists it, with the audit entry that published it and its proof. */
export interface ListedDevice {
  id: string;
  user: string;
  label: string;
  hpke_public_key: string;
  signing_public_key: string;
  self_signature: string;
  fingerprint: string;
  safety_number: string;
  added_at: string;
  /** `null` when the log has no entry for it: a device nobody registered through Haven. */
  log_entry: (AuditLogEntry & { proof: InclusionProofWire | null }) | null;
}

export interface CheckpointWire {
  size: number;
  root: string;
  note: string;
  created_at_ms: number;
}

export interface DeviceList {
  checkpoint: CheckpointWire | null;
  devices: ListedDevice[];
}

export type ThisDevice =
  | { state: 'checking' }
  | { state: 'ready'; keys: Device; id: string; fingerprint: string; safetyNumber: string }
  /** This browser has keys, but Haven no longer lists them: the device was removed. */
  | { state: 'removed' }
  | { state: 'unavailable'; message: string };

/** Which device this browser registered for a person: to tell "removed" from "never registered". */
interface Registration extends TrustRecord {
  deviceId: string;
  fingerprint: string;
}

const registrationKey = (user: string) => `registration:${user}`;

/** The longest label Haven keeps. */
const LABEL_CHARS_MAX = 64;

/** "Chromium on Linux": what a person recognises among their devices. */
export function deviceLabel(): string {
  const hints = (navigator as Navigator & { userAgentData?: { brands?: { brand: string }[]; platform?: string } })
    .userAgentData;
  const brands = hints?.brands?.map((b) => b.brand).filter((b) => !/not.?a.?brand/i.test(b)) ?? [];
  let browser = brands.find((b) => b !== 'Chromium') ?? brands[0];
  let platform = hints?.platform;
  const agent = navigator.userAgent;
  if (!browser) {
    browser = /Firefox\//.test(agent)
      ? 'Firefox'
      : /Edg\//.test(agent)
        ? 'Edge'
        : /Chrome\//.test(agent)
          ? 'Chrome'
          : /Safari\//.test(agent)
            ? 'Safari'
            : 'A browser';
  }
  if (!platform) {
    platform = /Android/.test(agent)
      ? 'Android'
      : /iPhone|iPad/.test(agent)
        ? 'iOS'
        : /Mac OS X/.test(agent)
          ? 'macOS'
          : /Windows/.test(agent)
            ? 'Windows'
            : /Linux/.test(agent)
              ? 'Linux'
              : '';
  }
  const label = platform ? `${browser} on ${platform}` : browser;
  return label.slice(0, LABEL_CHARS_MAX);
}

function unavailable(error: unknown): ThisDevice {
  if (error instanceof DeviceStoreError && error.code === 'unsupported') {
    return { state: 'unavailable', message: 'This browser cannot keep the keys secure messages need. Try an up-to-date Chrome, Edge, Firefox or Safari.' };
  }
  if (error instanceof DeviceStoreError) {
    return {
      state: 'unavailable',
      message: 'This browser could not store the keys secure messages need (private browsing, or storage is full).',
    };
  }
  if (error instanceof ApiError && error.code === 'too_many_devices') {
    return { state: 'unavailable', message: `${error.message} Remove a device you no longer use under Account.` };
  }
  if (error instanceof ApiError) return { state: 'unavailable', message: error.message };
  return { state: 'unavailable', message: 'Secure messages could not be set up in this browser.' };
}

async function ready(keys: Device, id: string, fingerprint: string): Promise<ThisDevice> {
  return { state: 'ready', keys, id, fingerprint, safetyNumber: safetyNumber(fingerprint) };
}

async function register(user: string, keys: Device): Promise<ThisDevice> {
  const description = await describeDevice(keys);
  try {
    const registered = await api<ListedDevice>('POST', '/api/v1/devices', {
      label: deviceLabel(),
      hpke_public_key: encodeBase64(description.hpkePublicKey),
      signing_public_key: encodeBase64(description.signingPublicKey),
      self_signature: encodeBase64(description.selfSignature),
    });
    await saveTrustRecord({ key: registrationKey(user), deviceId: registered.id, fingerprint: description.fingerprint });
    return ready(keys, registered.id, description.fingerprint);
  } catch (error) {
    if (error instanceof ApiError && error.code === 'device_exists') {
      // Registered already: by another tab just now, or long ago and since removed.
      const mine = await api<DeviceList>('GET', '/api/v1/devices');
      const listed = mine.devices.find((d) => d.fingerprint === description.fingerprint);
      if (listed) return ready(keys, listed.id, description.fingerprint);
      return { state: 'removed' };
    }
    throw error;
  }
}

/**
 * Finds or makes this browser's device for `user`. `background`: a re-check the app makes
 * by itself (someone's devices changed), which is not the person's activity.
 */
export async function setUpThisDevice(user: string, background = false): Promise<ThisDevice> {
  try {
    let keys = await loadDevice(user);
    const mine = await (background ? apiInBackground<DeviceList> : api<DeviceList>)('GET', '/api/v1/devices');
    if (keys) {
      const description = await describeDevice(keys);
      const listed = mine.devices.find((d) => d.fingerprint === description.fingerprint);
      if (listed) return ready(keys, listed.id, description.fingerprint);
      const registration = await loadTrustRecord<Registration>(registrationKey(user));
      if (registration?.fingerprint === description.fingerprint) return { state: 'removed' };
      // Made here, but the page closed before Haven had it: finish the registration.
      return await register(user, keys);
    }
    try {
      keys = await createDevice(user);
    } catch (error) {
      // Another tab made it a moment ago: use that one.
      if (error instanceof DeviceStoreError && error.code === 'device_exists') return setUpThisDevice(user, background);
      throw error;
    }
    return await register(user, keys);
  } catch (error) {
    return unavailable(error);
  }
}

/** Forgets this browser's removed device for `user` and makes and registers a new one. */
export async function setUpAgain(user: string): Promise<ThisDevice> {
  try {
    await deleteDevice(user);
    await deleteTrustRecord(registrationKey(user));
  } catch (error) {
    return unavailable(error);
  }
  return setUpThisDevice(user);
}
