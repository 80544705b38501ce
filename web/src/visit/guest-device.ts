// A visit guest's device: keys this browser makes for one visit, kept in memory only (a
// guest has no account and nothing of them is stored, here or at Haven). The private keys
// are non-extractable `CryptoKey`s like a person's device; unlike one, the public keys are
// published nowhere, so the others in the call check only that the keys sign themselves,
// and the page shows their safety number for people to compare aloud.
import { type Device, deviceFingerprint, safetyNumber, signDevice } from '../e2e';

export interface GuestDevice {
  keys: Device;
  fingerprint: string;
  safetyNumber: string;
  /** The handshake's query: the public keys and their self-signature, base64url. */
  query: string;
}

function base64url(bytes: Uint8Array): string {
  let text = '';
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export async function makeGuestDevice(): Promise<GuestDevice> {
  // `false`: the private keys never leave WebCrypto.
  const hpke = (await crypto.subtle.generateKey({ name: 'X25519' }, false, ['deriveBits'])) as CryptoKeyPair;
  const signing = (await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])) as CryptoKeyPair;
  const hpkePublicKey = new Uint8Array(await crypto.subtle.exportKey('raw', hpke.publicKey));
  const signingPublicKey = new Uint8Array(await crypto.subtle.exportKey('raw', signing.publicKey));
  const publicKeys = { hpkePublicKey, signingPublicKey };
  const selfSignature = await signDevice(publicKeys, signing.privateKey);
  const fingerprint = await deviceFingerprint(publicKeys);
  const query = new URLSearchParams({
    hpke: base64url(hpkePublicKey),
    signing: base64url(signingPublicKey),
    signature: base64url(selfSignature),
  }).toString();
  return {
    keys: { userId: 'guest', hpke, signing, createdAtMs: Date.now() },
    fingerprint,
    safetyNumber: safetyNumber(fingerprint),
    query,
  };
}
