//! Blind indexes: searchable tokens for sealed values.
//!
//! A token is HMAC-SHA256 over a field kind and the normalised value, under a key that lives
//! wrapped by the root key. The database can match equal tokens but learns nothing about the
//! values without the key. Normalisation (Unicode NFKC, lower case, collapsed whitespace)
//! makes "  José  " and "JOSÉ" find each other.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use unicode_normalization::UnicodeNormalization;

use crate::secret::KeyMaterial;

/// The key behind every blind index of one deployment.
pub struct BlindIndexKey(KeyMaterial);

impl fmt::Debug for BlindIndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindIndexKey(<redacted>)")
    }
}

/// A searchable token; equal inputs give equal tokens.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BlindToken([u8; 32]);

impl BlindToken {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for BlindToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlindToken({}…)", hex::encode(&self.0[..4]))
    }
}

impl BlindIndexKey {
    pub fn new(material: KeyMaterial) -> Self {
        Self(material)
    }

    pub fn generate() -> Self {
        Self(KeyMaterial::generate())
    }

    pub fn material(&self) -> &KeyMaterial {
        &self.0
    }

    /// The token for `value` in the index `kind` (e.g. `patient.family`). Tokens of
    /// different kinds never collide, even for the same value.
    pub fn token(&self, kind: &str, value: &str) -> BlindToken {
        let normalised = normalise(value);
        // HMAC accepts keys of any length; a 32-byte key never fails.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose_secret()) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC-SHA256 accepts a 32-byte key"),
        };
        mac.update(&(kind.len() as u32).to_be_bytes());
        mac.update(kind.as_bytes());
        mac.update(normalised.as_bytes());
        BlindToken(mac.finalize().into_bytes().into())
    }
}

/// NFKC, lower case, inner whitespace collapsed to one space, outer whitespace removed.
pub fn normalise(value: &str) -> String {
    let folded: String = value.nfkc().flat_map(char::to_lowercase).collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_after_normalisation() {
        let key = BlindIndexKey::generate();
        assert_eq!(
            key.token("family", "  José   Díaz "),
            key.token("family", "JOSÉ DÍAZ")
        );
        assert_ne!(key.token("family", "Smith"), key.token("given", "Smith"));
        assert_ne!(key.token("family", "Smith"), key.token("family", "Smyth"));
    }

    #[test]
    fn different_keys_give_unrelated_tokens() {
        let a = BlindIndexKey::generate();
        let b = BlindIndexKey::generate();
        assert_ne!(a.token("family", "Smith"), b.token("family", "Smith"));
    }
}
