//! Types for secrets: their `Debug` prints nothing of the value, and key material is wiped
//! from memory when dropped.

use std::fmt;

use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A value that must never be logged: tokens, passwords, decrypted health data.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// Deliberately long-winded, so every use is visible in review.
    pub fn expose_secret(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// 256 bits of key material.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyMaterial([u8; KeyMaterial::BYTES]);

impl KeyMaterial {
    pub const BYTES: usize = 32;

    /// Fresh key material from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; Self::BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn from_bytes(bytes: [u8; Self::BYTES]) -> Self {
        Self(bytes)
    }

    pub fn try_from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; Self::BYTES]>::try_from(bytes).ok().map(Self)
    }

    pub fn expose_secret(&self) -> &[u8; Self::BYTES] {
        &self.0
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let secret = Secret::new(String::from("hunter2"));
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        let key = KeyMaterial::from_bytes([7; 32]);
        assert!(!format!("{key:?}").contains('7'));
    }
}
