// What a visit's members send each other end to end through Haven's relay: media keys (the
// SFrame base key each member sends under) and chat lines. Each is sealed with HPKE to one
// recipient device (the device that member takes part from, checked against the
// transparency log) and signed by the sender's device, so Haven can neither read nor forge
// one.
//
// Wire form (the `payload` of a `key` or `chat` signal), JSON:
//   { v: 1, id, from_device, enc, sealed, signature }   binary values in standard base64
// The associated data binds it to its purpose, the visit, the sender's member number, the
// recipient device and its id (the key id, or the chat line's id):
//   "haven.visit-key.v1\n" | "haven.visit-chat.v1\n", then appointment "\n" from "\n"
//   recipient fingerprint "\n" id
// so a sealed key cannot be replayed into another visit, to another device, or as chat.
// The signature covers the associated data, `enc` and `sealed`.
import {
  E2eError,
  concatBytes,
  decodeBase64,
  encodeBase64,
  havenHpkeSuite,
  utf8Bytes,
} from '../e2e';

export type SealedPurpose = 'key' | 'chat';

const INFO: Record<SealedPurpose, string> = {
  key: 'haven.visit-key.v1',
  chat: 'haven.visit-chat.v1',
};

/** The longest chat line, in characters: a conversation, not a document. */
export const CHAT_LINE_CHARS_MAX = 2000;

interface SealedWire {
  v: 1;
  id: string;
  from_device: string;
  enc: string;
  sealed: string;
  signature: string;
}

export interface SealTarget {
  appointment: string;
  /** The sender's member number. */
  from: number;
  /** The recipient device: its fingerprint and X25519 public key. */
  recipientFingerprint: string;
  recipientHpkeKey: Uint8Array;
}

function aad(purpose: SealedPurpose, appointment: string, from: number, recipient: string, id: string): Uint8Array<ArrayBuffer> {
  return utf8Bytes(`${INFO[purpose]}\n${appointment}\n${from}\n${recipient}\n${id}`);
}

/** Seals `plaintext` to one recipient device and signs it as this device. */
export async function sealForMember(params: {
  purpose: SealedPurpose;
  target: SealTarget;
  id: string;
  plaintext: Uint8Array;
  myFingerprint: string;
  signer: CryptoKey;
}): Promise<string> {
  const { purpose, target, id } = params;
  const associated = aad(purpose, target.appointment, target.from, target.recipientFingerprint, id);
  const suite = havenHpkeSuite();
  const recipientPublicKey = await suite.kem.deserializePublicKey(new Uint8Array(target.recipientHpkeKey).buffer);
  const sealed = await suite.seal({ recipientPublicKey, info: utf8Bytes(INFO[purpose]) }, new Uint8Array(params.plaintext), associated);
  const enc = new Uint8Array(sealed.enc);
  const ciphertext = new Uint8Array(sealed.ct);
  const signature = new Uint8Array(await crypto.subtle.sign('Ed25519', params.signer, concatBytes(associated, enc, ciphertext)));
  const wire: SealedWire = {
    v: 1,
    id,
    from_device: params.myFingerprint,
    enc: encodeBase64(enc),
    sealed: encodeBase64(ciphertext),
    signature: encodeBase64(signature),
  };
  return JSON.stringify(wire);
}

/** What `openFromMember` found. */
export interface Opened {
  id: string;
  plaintext: Uint8Array<ArrayBuffer>;
}

/**
 * Checks that the sender's device (whose fingerprint and signing key the caller verified
 * against the log) signed this payload for this device, then opens it. Throws `E2eError`.
 */
export async function openFromMember(params: {
  purpose: SealedPurpose;
  payload: string;
  appointment: string;
  from: number;
  senderFingerprint: string;
  senderSigningKey: Uint8Array;
  myFingerprint: string;
  recipientKey: CryptoKeyPair;
}): Promise<Opened> {
  let wire: SealedWire;
  try {
    wire = JSON.parse(params.payload) as SealedWire;
  } catch {
    throw new E2eError('malformed', 'the sealed payload is not JSON');
  }
  if (wire.v !== 1 || typeof wire.id !== 'string' || wire.id.length === 0 || wire.id.length > 64) {
    throw new E2eError('malformed', 'the sealed payload has no valid version or id');
  }
  if (wire.from_device !== params.senderFingerprint) {
    throw new E2eError('bad_signature', 'the payload comes from another device than the member’s');
  }
  const associated = aad(params.purpose, params.appointment, params.from, params.myFingerprint, wire.id);
  const enc = decodeBase64(wire.enc, 'enc');
  const sealed = decodeBase64(wire.sealed, 'sealed payload');
  const signature = decodeBase64(wire.signature, 'signature');
  const signingKey = await crypto.subtle.importKey('raw', new Uint8Array(params.senderSigningKey), 'Ed25519', false, ['verify']);
  const signed = await crypto.subtle.verify('Ed25519', signingKey, signature, concatBytes(associated, enc, sealed));
  if (!signed) throw new E2eError('bad_signature', 'the member’s device did not sign this payload');
  try {
    const plaintext = await havenHpkeSuite().open(
      { recipientKey: params.recipientKey, enc: enc.buffer, info: utf8Bytes(INFO[params.purpose]) },
      sealed.buffer,
      associated,
    );
    return { id: wire.id, plaintext: new Uint8Array(plaintext) };
  } catch (e) {
    throw new E2eError('sealed_key_refused', `the payload does not open on this device (${String(e)})`);
  }
}
