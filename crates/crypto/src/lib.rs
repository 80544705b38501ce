//! Haven's cryptography, in one place so it can be reviewed in one sitting.
//!
//! - [`keyring`]: the root key behind the [`KeyProvider`] trait (a local file by default).
//! - [`envelope`]: per-subject key-encryption keys and [`Sealed`] records, each with a fresh
//!   data key, bound by associated data to their table, record id, version and key id.
//! - [`blind`]: keyed HMACs of normalised values, so sealed data can be searched without
//!   the database ever seeing the values.
//! - [`e2e`]: end-to-end message formats (device keys, HPKE-sealed content keys, signed
//!   messages, sealed attachments) that the server relays but cannot open.
//! - [`secret`]: wrappers whose `Debug` redacts and whose memory is wiped on drop.
//!
//! The AEAD for data at rest is XChaCha20-Poly1305: its 192-bit nonces can be drawn at random for
//! every message with no realistic collision risk, so no nonce state needs to be kept or
//! coordinated between instances. It is pure Rust (RustCrypto) and constant-time.
//!
//! This crate knows nothing of storage or HTTP.

#![forbid(unsafe_code)]

mod aead;
pub mod blind;
pub mod e2e;
pub mod envelope;
pub mod keyring;
pub mod secret;
pub mod turn;

pub use blind::{BlindIndexKey, BlindToken};
pub use envelope::{RecordBinding, Sealed, SubjectKey, SubjectKeyId};
pub use keyring::{KeyProvider, LocalKeyring, RootKeyId, WrappedKey};
pub use secret::{KeyMaterial, Secret};

/// Everything that can go wrong in this crate. None of the variants carries key material or
/// plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The ciphertext, its associated data or the key is wrong: tampering, a row moved to
    /// another place, or a key that was destroyed.
    #[error("authentication failed: the sealed data was altered, moved, or the key is wrong")]
    Integrity,
    #[error("the root key {0} is not in the keyring")]
    UnknownRootKey(RootKeyId),
    #[error("malformed sealed data: {0}")]
    Malformed(&'static str),
    #[error("keyring at {path}: {message}")]
    Keyring { path: String, message: String },
}
