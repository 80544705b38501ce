//! End-to-end message formats: device keys, and messages sealed on one device for others.
//!
//! Haven's server stores and relays what this module produces but never holds a key that
//! opens it. The same formats are written in the browser (`web/src/e2e/formats.ts`, with
//! `@hpke/core` and WebCrypto); the two must agree byte for byte, and interop tests check
//! both directions. Native clients, the benchmark and the tests use this side.
//!
//! - A **device** holds an HPKE key pair (RFC 9180: DHKEM(X25519, HKDF-SHA256),
//!   HKDF-SHA256, AES-128-GCM, base mode) and an Ed25519 signing key. It proves it holds
//!   both by signing `DEVICE_TAG ‖ hpke_public ‖ signing_public`; the SHA-256 of the same
//!   bytes is its **fingerprint**, which the transparency log records when the device is
//!   added, and which people compare as a safety number.
//! - A **message** is sealed once: a random 256-bit content key encrypts the body with
//!   AES-256-GCM (`nonce ‖ ciphertext ‖ tag`), bound by associated data to its thread and
//!   id; the content key is sealed with HPKE to every recipient device, with the message
//!   id as associated data so a sealed key cannot be moved to another message. The sender
//!   device signs the thread, the id and the ciphertext's hash, because HPKE's base mode
//!   says nothing about who sealed: without the signature the server could write messages
//!   in anyone's name.
//! - An **attachment** is sealed under its own random file key with the attachment's id as
//!   associated data; the key travels inside the (sealed) message body.
//!
//! AES-GCM rather than the XChaCha20-Poly1305 used at rest, because browsers only offer AES-GCM
//! in WebCrypto; each content and file key encrypts one plaintext, so random 96-bit nonces
//! are safe.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hpke::aead::AesGcm128;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::CryptoError;

/// The KEM of Haven's HPKE suite.
pub type DeviceKem = X25519HkdfSha256;

/// Prefix of what a device signs about itself, and of what its fingerprint hashes.
pub const DEVICE_TAG: &[u8] = b"haven.device.v1\n";
/// HPKE `info` when a content key is sealed to a device.
pub const MESSAGE_KEY_INFO: &[u8] = b"haven.message-key.v1";
/// Prefix of a message body's associated data and of what its sender signs.
pub const MESSAGE_TAG: &[u8] = b"haven.message.v1\n";
/// Prefix of an attachment's associated data.
pub const ATTACHMENT_TAG: &[u8] = b"haven.attachment.v1\n";

/// Length of an X25519 or Ed25519 public key, an HPKE `enc`, and a content key.
pub const KEY_BYTES: usize = 32;
/// Length of a content key sealed to one device: the key and AES-128-GCM's tag.
pub const SEALED_KEY_BYTES: usize = KEY_BYTES + 16;
/// AES-GCM nonce in front of every body and attachment.
pub const NONCE_BYTES: usize = 12;
/// An Ed25519 signature.
pub const SIGNATURE_BYTES: usize = 64;

/// A device's two public keys: all that other devices need to write to it and to check
/// what it signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevicePublicKeys {
    pub hpke: [u8; KEY_BYTES],
    pub signing: [u8; KEY_BYTES],
}

impl DevicePublicKeys {
    fn identity_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(DEVICE_TAG.len() + 2 * KEY_BYTES);
        bytes.extend_from_slice(DEVICE_TAG);
        bytes.extend_from_slice(&self.hpke);
        bytes.extend_from_slice(&self.signing);
        bytes
    }

    /// SHA-256 of the device's identity: what the transparency log records, in lowercase hex.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.identity_bytes()))
    }

    /// Checks the device's signature over its own keys: proof that whoever registers it
    /// holds the signing key, and that the HPKE key belongs with it. Also refuses an HPKE
    /// key that is not a usable X25519 point (all-zero shared secrets).
    pub fn verify_self_signature(&self, signature: &[u8]) -> Result<(), CryptoError> {
        let key = VerifyingKey::from_bytes(&self.signing)
            .map_err(|_| CryptoError::Malformed("the signing key is not an Ed25519 key"))?;
        let signature = Signature::from_slice(signature)
            .map_err(|_| CryptoError::Malformed("the signature is not 64 bytes"))?;
        key.verify_strict(&self.identity_bytes(), &signature)
            .map_err(|_| CryptoError::Integrity)?;
        if self.hpke == [0; KEY_BYTES] {
            return Err(CryptoError::Malformed("the HPKE key is not an X25519 key"));
        }
        Ok(())
    }
}

/// One device's private keys. Browsers keep theirs non-extractable in IndexedDB; this
/// type serves native clients, the benchmark and tests.
pub struct DeviceKeys {
    hpke_private: <DeviceKem as hpke::Kem>::PrivateKey,
    public: DevicePublicKeys,
    signing: SigningKey,
}

impl std::fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceKeys")
            .field("fingerprint", &self.public.fingerprint())
            .finish_non_exhaustive()
    }
}

impl DeviceKeys {
    /// Fresh keys from the operating system's generator.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 2 * KEY_BYTES]);
        OsRng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// Keys derived from 64 bytes: the first half is HPKE's `ikm` (RFC 9180 DeriveKeyPair),
    /// the second the Ed25519 secret key. For tests and interop fixtures.
    pub fn from_seed(seed: &[u8; 2 * KEY_BYTES]) -> Self {
        let (hpke_private, hpke_public) = DeviceKem::derive_keypair(&seed[..KEY_BYTES]);
        let mut signing_secret = [0u8; KEY_BYTES];
        signing_secret.copy_from_slice(&seed[KEY_BYTES..]);
        let signing = SigningKey::from_bytes(&signing_secret);
        let mut hpke = [0u8; KEY_BYTES];
        hpke.copy_from_slice(&hpke_public.to_bytes());
        Self {
            hpke_private,
            public: DevicePublicKeys {
                hpke,
                signing: signing.verifying_key().to_bytes(),
            },
            signing,
        }
    }

    pub fn public(&self) -> DevicePublicKeys {
        self.public
    }

    /// The device's signature over its own keys ([`DevicePublicKeys::verify_self_signature`]).
    pub fn self_signature(&self) -> [u8; SIGNATURE_BYTES] {
        self.signing.sign(&self.public.identity_bytes()).to_bytes()
    }

    /// Opens the content key sealed to this device and then the message. The sender's
    /// signature is checked first, so nothing unsigned is ever decrypted.
    pub fn open_message(
        &self,
        message: &MessageRef<'_>,
        sealed: &SealedKey,
        sender: &DevicePublicKeys,
    ) -> Result<Vec<u8>, CryptoError> {
        verify_message_signature(message, sender)?;
        let enc = <DeviceKem as hpke::Kem>::EncappedKey::from_bytes(&sealed.enc)
            .map_err(|_| CryptoError::Malformed("enc is not an X25519 public key"))?;
        let content_key = hpke::single_shot_open::<AesGcm128, HkdfSha256, DeviceKem>(
            &OpModeR::Base,
            &self.hpke_private,
            &enc,
            MESSAGE_KEY_INFO,
            &sealed.sealed_key,
            message.message_id.hyphenated().to_string().as_bytes(),
        )
        .map_err(|_| CryptoError::Integrity)?;
        let content_key = Zeroizing::new(content_key);
        open_body(
            &content_key,
            message.ciphertext,
            &message_aad(message.thread_id, message.message_id),
        )
    }
}

/// A message as it travels, without its sealed keys.
#[derive(Debug, Clone, Copy)]
pub struct MessageRef<'a> {
    pub thread_id: Uuid,
    pub message_id: Uuid,
    /// `nonce ‖ AES-256-GCM(body) ‖ tag`.
    pub ciphertext: &'a [u8],
    pub signature: &'a [u8],
}

/// The content key of one message, sealed to one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedKey {
    /// HPKE's encapsulated key (the sender's ephemeral X25519 public key).
    pub enc: [u8; KEY_BYTES],
    pub sealed_key: Vec<u8>,
}

/// A message sealed for its recipients: one ciphertext, one signature, one sealed key per
/// device in the order the devices were given.
#[derive(Debug, Clone)]
pub struct SealedMessage {
    pub ciphertext: Vec<u8>,
    pub signature: [u8; SIGNATURE_BYTES],
    pub keys: Vec<SealedKey>,
}

/// Seals `plaintext` for `recipients` and signs it as `sender`.
pub fn seal_message(
    thread_id: Uuid,
    message_id: Uuid,
    plaintext: &[u8],
    recipients: &[DevicePublicKeys],
    sender: &DeviceKeys,
) -> Result<SealedMessage, CryptoError> {
    let mut content_key = Zeroizing::new([0u8; KEY_BYTES]);
    OsRng.fill_bytes(content_key.as_mut());
    let ciphertext = seal_body(
        content_key.as_ref(),
        plaintext,
        &message_aad(thread_id, message_id),
    )?;
    let id_text = message_id.hyphenated().to_string();
    let keys = recipients
        .iter()
        .map(|recipient| seal_key(recipient, id_text.as_bytes(), content_key.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let signature = sender
        .signing
        .sign(&signed_bytes(thread_id, message_id, &ciphertext))
        .to_bytes();
    Ok(SealedMessage {
        ciphertext,
        signature,
        keys,
    })
}

fn seal_key(
    recipient: &DevicePublicKeys,
    aad: &[u8],
    content_key: &[u8],
) -> Result<SealedKey, CryptoError> {
    let public = <DeviceKem as hpke::Kem>::PublicKey::from_bytes(&recipient.hpke)
        .map_err(|_| CryptoError::Malformed("the HPKE key is not an X25519 key"))?;
    let (enc, sealed_key) = hpke::single_shot_seal::<AesGcm128, HkdfSha256, DeviceKem, _>(
        &OpModeS::Base,
        &public,
        MESSAGE_KEY_INFO,
        content_key,
        aad,
        &mut OsRng,
    )
    .map_err(|_| CryptoError::Malformed("the HPKE key is not an X25519 key"))?;
    let mut enc_bytes = [0u8; KEY_BYTES];
    enc_bytes.copy_from_slice(&enc.to_bytes());
    Ok(SealedKey {
        enc: enc_bytes,
        sealed_key,
    })
}

/// Checks that `sender` signed this message. Recipients call it before opening anything.
pub fn verify_message_signature(
    message: &MessageRef<'_>,
    sender: &DevicePublicKeys,
) -> Result<(), CryptoError> {
    let key = VerifyingKey::from_bytes(&sender.signing)
        .map_err(|_| CryptoError::Malformed("the signing key is not an Ed25519 key"))?;
    let signature = Signature::from_slice(message.signature)
        .map_err(|_| CryptoError::Malformed("the signature is not 64 bytes"))?;
    key.verify_strict(
        &signed_bytes(message.thread_id, message.message_id, message.ciphertext),
        &signature,
    )
    .map_err(|_| CryptoError::Integrity)
}

/// `MESSAGE_TAG ‖ thread ‖ "\n" ‖ message`, with ids as lowercase hyphenated UUIDs.
fn message_aad(thread_id: Uuid, message_id: Uuid) -> Vec<u8> {
    let mut aad = Vec::with_capacity(MESSAGE_TAG.len() + 73);
    aad.extend_from_slice(MESSAGE_TAG);
    aad.extend_from_slice(thread_id.hyphenated().to_string().as_bytes());
    aad.push(b'\n');
    aad.extend_from_slice(message_id.hyphenated().to_string().as_bytes());
    aad
}

/// What a sender signs: the body's associated data, `"\n"`, and SHA-256 of the ciphertext.
fn signed_bytes(thread_id: Uuid, message_id: Uuid, ciphertext: &[u8]) -> Vec<u8> {
    let mut bytes = message_aad(thread_id, message_id);
    bytes.push(b'\n');
    bytes.extend_from_slice(&Sha256::digest(ciphertext));
    bytes
}

/// Seals a file with a fresh key: returns the key (to put in the message body) and
/// `nonce ‖ ciphertext ‖ tag` (to upload).
pub fn seal_attachment(
    attachment_id: Uuid,
    file: &[u8],
) -> Result<(Zeroizing<[u8; KEY_BYTES]>, Vec<u8>), CryptoError> {
    let mut file_key = Zeroizing::new([0u8; KEY_BYTES]);
    OsRng.fill_bytes(file_key.as_mut());
    let blob = seal_body(file_key.as_ref(), file, &attachment_aad(attachment_id))?;
    Ok((file_key, blob))
}

pub fn open_attachment(
    attachment_id: Uuid,
    file_key: &[u8],
    blob: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    open_body(file_key, blob, &attachment_aad(attachment_id))
}

fn attachment_aad(attachment_id: Uuid) -> Vec<u8> {
    let mut aad = ATTACHMENT_TAG.to_vec();
    aad.extend_from_slice(attachment_id.hyphenated().to_string().as_bytes());
    aad
}

fn seal_body(key: &[u8], plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let cipher =
        Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::Malformed("key length"))?;
    let mut nonce = [0u8; NONCE_BYTES];
    OsRng.fill_bytes(&mut nonce);
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Malformed("plaintext too long"))?;
    let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

fn open_body(key: &[u8], sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let cipher =
        Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::Malformed("key length"))?;
    if sealed.len() < NONCE_BYTES + 16 {
        return Err(CryptoError::Malformed(
            "ciphertext shorter than nonce and tag",
        ));
    }
    let (nonce, body) = sealed.split_at(NONCE_BYTES);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
        .map_err(|_| CryptoError::Integrity)
}

/// People compare devices by safety number: the first 30 bytes of the fingerprint as 6
/// groups of 5 digits (each group a big-endian 40-bit integer modulo 100 000), the half
/// that one side of a Signal safety number shows.
pub fn safety_number(fingerprint_hex: &str) -> Option<String> {
    let digest = hex::decode(fingerprint_hex).ok()?;
    if digest.len() != 32 {
        return None;
    }
    let groups: Vec<String> = digest[..30]
        .chunks(5)
        .map(|chunk| {
            let value = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:05}", value % 100_000)
        })
        .collect();
    Some(groups.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (Uuid, Uuid) {
        (Uuid::new_v4(), Uuid::new_v4())
    }

    #[test]
    fn every_recipient_device_opens_what_was_sealed_for_it() {
        let sender = DeviceKeys::generate();
        let alice = DeviceKeys::generate();
        let bob = DeviceKeys::generate();
        let (thread, message) = ids();
        let sealed = seal_message(
            thread,
            message,
            b"hello",
            &[alice.public(), bob.public()],
            &sender,
        )
        .unwrap();
        let reference = MessageRef {
            thread_id: thread,
            message_id: message,
            ciphertext: &sealed.ciphertext,
            signature: &sealed.signature,
        };
        for (device, key) in [&alice, &bob].into_iter().zip(&sealed.keys) {
            assert_eq!(
                device
                    .open_message(&reference, key, &sender.public())
                    .unwrap(),
                b"hello"
            );
        }
        assert_eq!(sealed.keys[0].sealed_key.len(), SEALED_KEY_BYTES);
    }

    #[test]
    fn a_device_that_was_not_a_recipient_opens_nothing() {
        let sender = DeviceKeys::generate();
        let alice = DeviceKeys::generate();
        let eve = DeviceKeys::generate();
        let (thread, message) = ids();
        let sealed = seal_message(thread, message, b"x", &[alice.public()], &sender).unwrap();
        let reference = MessageRef {
            thread_id: thread,
            message_id: message,
            ciphertext: &sealed.ciphertext,
            signature: &sealed.signature,
        };
        assert!(matches!(
            eve.open_message(&reference, &sealed.keys[0], &sender.public()),
            Err(CryptoError::Integrity)
        ));
    }

    #[test]
    fn a_moved_key_a_moved_body_or_a_forged_sender_is_refused() {
        let sender = DeviceKeys::generate();
        let forger = DeviceKeys::generate();
        let alice = DeviceKeys::generate();
        let (thread, message) = ids();
        let sealed = seal_message(thread, message, b"x", &[alice.public()], &sender).unwrap();
        let good = MessageRef {
            thread_id: thread,
            message_id: message,
            ciphertext: &sealed.ciphertext,
            signature: &sealed.signature,
        };
        // Another thread or message id: the signature, then the AEAD, no longer match.
        for moved in [
            MessageRef {
                thread_id: Uuid::new_v4(),
                ..good
            },
            MessageRef {
                message_id: Uuid::new_v4(),
                ..good
            },
        ] {
            assert!(
                alice
                    .open_message(&moved, &sealed.keys[0], &sender.public())
                    .is_err()
            );
        }
        // Signed by a device that is not the claimed sender.
        assert!(
            alice
                .open_message(&good, &sealed.keys[0], &forger.public())
                .is_err()
        );
        // One flipped ciphertext bit.
        let mut altered = sealed.ciphertext.clone();
        altered[20] ^= 1;
        let altered_ref = MessageRef {
            ciphertext: &altered,
            ..good
        };
        assert!(
            alice
                .open_message(&altered_ref, &sealed.keys[0], &sender.public())
                .is_err()
        );
    }

    #[test]
    fn a_device_proves_it_holds_its_keys() {
        let device = DeviceKeys::generate();
        let public = device.public();
        public
            .verify_self_signature(&device.self_signature())
            .unwrap();
        let other = DeviceKeys::generate();
        // Someone else's HPKE key under this signing key is not this device.
        let mixed = DevicePublicKeys {
            hpke: other.public().hpke,
            ..public
        };
        assert!(
            mixed
                .verify_self_signature(&device.self_signature())
                .is_err()
        );
        assert_eq!(public.fingerprint().len(), 64);
        assert_ne!(public.fingerprint(), other.public().fingerprint());
    }

    #[test]
    fn attachments_open_only_under_their_own_id() {
        let id = Uuid::new_v4();
        let (key, blob) = seal_attachment(id, b"%PDF-1.7 scan").unwrap();
        assert_eq!(
            open_attachment(id, key.as_ref(), &blob).unwrap(),
            b"%PDF-1.7 scan"
        );
        assert!(open_attachment(Uuid::new_v4(), key.as_ref(), &blob).is_err());
    }

    #[test]
    fn safety_numbers_are_six_groups_of_five_digits() {
        let number = safety_number(&"ff".repeat(32)).unwrap();
        // 0xFFFFFFFFFF = 1_099_511_627_775; modulo 100 000 that is 27 775.
        assert_eq!(number, ["27775"; 6].join(" "));
        assert!(safety_number("abc").is_none());
    }
}
