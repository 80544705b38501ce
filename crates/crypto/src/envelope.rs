//! Envelope encryption of records.
//!
//! Three layers: the root key (in the [`KeyProvider`]) wraps one [`SubjectKey`] per data
//! subject (a patient); each subject key wraps a fresh data key per sealed record; the data
//! key encrypts the record. Rotating the root re-wraps subject keys without touching records;
//! destroying a subject key (crypto-shredding) makes every record of that subject unreadable,
//! wherever copies of the ciphertext live.
//!
//! The associated data of both the wrapped data key and the record ciphertext is the
//! [`RecordBinding`]: table, record id, version and subject key id. Ciphertext copied to
//! another row, another version or another patient fails authentication.
//!
//! Opening needs the unwrapped [`SubjectKey`], and only code holding the key provider can
//! unwrap one. In Haven that is the access gate in `app`, which records the access in the
//! audit log before it unwraps anything.

use std::fmt;
use std::marker::PhantomData;

use rand::RngCore;

use crate::CryptoError;
use crate::aead;
use crate::keyring::{KeyProvider, WrappedKey};
use crate::secret::{KeyMaterial, Secret};

/// Identifies one subject key, stored in front of every record it seals.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubjectKeyId([u8; SubjectKeyId::BYTES]);

impl SubjectKeyId {
    pub const BYTES: usize = 16;

    pub fn from_bytes(bytes: [u8; Self::BYTES]) -> Self {
        Self(bytes)
    }

    pub fn try_from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; Self::BYTES]>::try_from(bytes).ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; Self::BYTES] {
        &self.0
    }
}

impl fmt::Display for SubjectKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SubjectKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectKeyId({self})")
    }
}

/// A data subject's key-encryption key, unwrapped. Wiped from memory on drop.
pub struct SubjectKey {
    id: SubjectKeyId,
    material: KeyMaterial,
}

impl fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectKey({}, <redacted>)", self.id)
    }
}

impl SubjectKey {
    pub fn generate() -> Self {
        let mut id = [0u8; SubjectKeyId::BYTES];
        rand::rngs::OsRng.fill_bytes(&mut id);
        Self {
            id: SubjectKeyId(id),
            material: KeyMaterial::generate(),
        }
    }

    pub fn id(&self) -> SubjectKeyId {
        self.id
    }

    /// Wraps this key with the provider's active root key, bound to `subject`.
    pub fn wrap(
        &self,
        provider: &dyn KeyProvider,
        subject: &str,
    ) -> Result<WrappedKey, CryptoError> {
        provider.wrap(&self.material, &Self::context(subject, self.id))
    }

    /// Unwraps a subject key stored for `subject` under `id`.
    pub fn unwrap(
        provider: &dyn KeyProvider,
        subject: &str,
        id: SubjectKeyId,
        wrapped: &WrappedKey,
    ) -> Result<Self, CryptoError> {
        let material = provider.unwrap(wrapped, &Self::context(subject, id))?;
        Ok(Self { id, material })
    }

    fn context(subject: &str, id: SubjectKeyId) -> Vec<u8> {
        let mut context = Vec::with_capacity(32 + subject.len());
        context.extend_from_slice(b"haven/subject-key/v1\0");
        context.extend_from_slice(&id.0);
        context.extend_from_slice(subject.as_bytes());
        context
    }
}

/// Where a sealed record lives. All of it is authenticated with the ciphertext.
#[derive(Debug, Clone, Copy)]
pub struct RecordBinding<'a> {
    pub table: &'a str,
    pub record_id: &'a str,
    pub version: u64,
}

impl RecordBinding<'_> {
    fn associated_data(&self, key: SubjectKeyId, layer: &[u8]) -> Vec<u8> {
        // Length-prefixed fields, so no two different bindings encode to the same bytes.
        let mut aad = Vec::with_capacity(64 + self.table.len() + self.record_id.len());
        aad.extend_from_slice(b"haven/record/v1\0");
        aad.extend_from_slice(layer);
        for field in [self.table.as_bytes(), self.record_id.as_bytes()] {
            aad.extend_from_slice(&(field.len() as u32).to_be_bytes());
            aad.extend_from_slice(field);
        }
        aad.extend_from_slice(&self.version.to_be_bytes());
        aad.extend_from_slice(&key.0);
        aad
    }
}

const SEALED_FORMAT_V1: u8 = 1;
/// `nonce ‖ 32-byte data key ‖ tag`.
const WRAPPED_DATA_KEY_BYTES: usize = aead::NONCE_BYTES + KeyMaterial::BYTES + aead::TAG_BYTES;
const HEADER_BYTES: usize = 1 + SubjectKeyId::BYTES + WRAPPED_DATA_KEY_BYTES;

/// A sealed record of type `T`: `version(1) ‖ subject key id(16) ‖ wrapped data key ‖
/// nonce ‖ ciphertext ‖ tag`. The type parameter records what is inside; encoding `T` to
/// bytes is the caller's business.
pub struct Sealed<T> {
    bytes: Vec<u8>,
    _content: PhantomData<fn() -> T>,
}

impl<T> Clone for Sealed<T> {
    fn clone(&self) -> Self {
        Self {
            bytes: self.bytes.clone(),
            _content: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Sealed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.bytes.len())
    }
}

impl<T> Sealed<T> {
    /// Seals `plaintext` with a fresh data key wrapped by `key`.
    pub fn seal(key: &SubjectKey, binding: &RecordBinding<'_>, plaintext: &[u8]) -> Self {
        let data_key = KeyMaterial::generate();
        let wrapped = aead::seal(
            &key.material,
            &binding.associated_data(key.id, b"dek"),
            data_key.expose_secret(),
        );
        let ciphertext = aead::seal(
            &data_key,
            &binding.associated_data(key.id, b"body"),
            plaintext,
        );
        let mut bytes = Vec::with_capacity(HEADER_BYTES + ciphertext.len());
        bytes.push(SEALED_FORMAT_V1);
        bytes.extend_from_slice(&key.id.0);
        bytes.extend_from_slice(&wrapped);
        bytes.extend_from_slice(&ciphertext);
        Self {
            bytes,
            _content: PhantomData,
        }
    }

    /// Accepts stored bytes after a structural check; authenticity is checked on open.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, CryptoError> {
        if bytes.len() < HEADER_BYTES + aead::NONCE_BYTES + aead::TAG_BYTES {
            return Err(CryptoError::Malformed("sealed record too short"));
        }
        if bytes[0] != SEALED_FORMAT_V1 {
            return Err(CryptoError::Malformed("unknown sealed record format"));
        }
        Ok(Self {
            bytes,
            _content: PhantomData,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The subject key this record was sealed with.
    pub fn key_id(&self) -> SubjectKeyId {
        let mut id = [0u8; SubjectKeyId::BYTES];
        id.copy_from_slice(&self.bytes[1..1 + SubjectKeyId::BYTES]);
        SubjectKeyId(id)
    }

    /// Opens the record. Fails with [`CryptoError::Integrity`] when anything (ciphertext,
    /// binding, key) is not exactly what was sealed.
    pub fn open(
        &self,
        key: &SubjectKey,
        binding: &RecordBinding<'_>,
    ) -> Result<Secret<Vec<u8>>, CryptoError> {
        if self.key_id() != key.id {
            return Err(CryptoError::Integrity);
        }
        let wrapped = &self.bytes[1 + SubjectKeyId::BYTES..HEADER_BYTES];
        let data_key = aead::open(
            &key.material,
            &binding.associated_data(key.id, b"dek"),
            wrapped,
        )?;
        let data_key = Secret::new(data_key);
        let data_key = KeyMaterial::try_from_slice(data_key.expose_secret())
            .ok_or(CryptoError::Malformed("data key length"))?;
        let plaintext = aead::open(
            &data_key,
            &binding.associated_data(key.id, b"body"),
            &self.bytes[HEADER_BYTES..],
        )?;
        Ok(Secret::new(plaintext))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::keyring::LocalKeyring;

    fn binding<'a>(record_id: &'a str, version: u64) -> RecordBinding<'a> {
        RecordBinding {
            table: "patients",
            record_id,
            version,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn round_trips(plaintext in proptest::collection::vec(any::<u8>(), 0..2048), version in any::<u64>()) {
            let key = SubjectKey::generate();
            let sealed = Sealed::<()>::seal(&key, &binding("r1", version), &plaintext);
            let reloaded = Sealed::<()>::from_bytes(sealed.into_bytes()).unwrap();
            let opened = reloaded.open(&key, &binding("r1", version)).unwrap();
            prop_assert_eq!(opened.expose_secret(), &plaintext);
        }

        #[test]
        fn any_flipped_bit_fails(plaintext in proptest::collection::vec(any::<u8>(), 1..512), bit in any::<prop::sample::Index>()) {
            let key = SubjectKey::generate();
            let sealed = Sealed::<()>::seal(&key, &binding("r1", 1), &plaintext);
            let mut bytes = sealed.into_bytes();
            let bit = bit.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            // A flip in the format byte is caught structurally, anywhere else by the AEAD.
            let opened = Sealed::<()>::from_bytes(bytes).and_then(|s| s.open(&key, &binding("r1", 1)));
            prop_assert!(opened.is_err());
        }

        #[test]
        fn ciphertext_moved_to_another_row_or_version_fails(plaintext in proptest::collection::vec(any::<u8>(), 0..256), version in 0u64..1000) {
            let key = SubjectKey::generate();
            let sealed = Sealed::<()>::seal(&key, &binding("r1", version), &plaintext);
            prop_assert!(matches!(sealed.open(&key, &binding("r2", version)), Err(CryptoError::Integrity)));
            prop_assert!(matches!(sealed.open(&key, &binding("r1", version + 1)), Err(CryptoError::Integrity)));
            let other_table = RecordBinding { table: "notes", record_id: "r1", version };
            prop_assert!(matches!(sealed.open(&key, &other_table), Err(CryptoError::Integrity)));
        }

        #[test]
        fn shredded_subject_key_cannot_open(plaintext in proptest::collection::vec(any::<u8>(), 0..256)) {
            // Crypto-shredding destroys the wrapped subject key. Whatever key an attacker
            // later substitutes under the same id, the data stays sealed.
            let dir = tempfile::tempdir().unwrap();
            let keyring = LocalKeyring::open_or_create(&dir.path().join("k")).unwrap();
            let key = SubjectKey::generate();
            let wrapped = key.wrap(&keyring, "patient-1").unwrap();
            let sealed = Sealed::<()>::seal(&key, &binding("r1", 1), &plaintext);
            drop(wrapped);
            drop(key);
            let impostor = SubjectKey::generate();
            let impostor = SubjectKey { id: sealed.key_id(), material: impostor.material };
            prop_assert!(matches!(sealed.open(&impostor, &binding("r1", 1)), Err(CryptoError::Integrity)));
        }
    }

    #[test]
    fn subject_keys_survive_a_wrap_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = LocalKeyring::open_or_create(&dir.path().join("k")).unwrap();
        let key = SubjectKey::generate();
        let wrapped = key.wrap(&keyring, "patient-1").unwrap();
        let sealed = Sealed::<()>::seal(&key, &binding("r1", 1), b"hello");
        let unwrapped = SubjectKey::unwrap(&keyring, "patient-1", key.id(), &wrapped).unwrap();
        assert_eq!(
            sealed
                .open(&unwrapped, &binding("r1", 1))
                .unwrap()
                .expose_secret(),
            b"hello"
        );
        assert!(SubjectKey::unwrap(&keyring, "patient-2", key.id(), &wrapped).is_err());
    }
}
