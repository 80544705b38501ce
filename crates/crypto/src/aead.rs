//! The single AEAD primitive used by every layer: XChaCha20-Poly1305 with a random nonce
//! stored in front of the ciphertext (`nonce ‖ ciphertext ‖ tag`).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::CryptoError;
use crate::secret::KeyMaterial;

pub(crate) const NONCE_BYTES: usize = 24;
pub(crate) const TAG_BYTES: usize = 16;

pub(crate) fn seal(key: &KeyMaterial, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.expose_secret().into());
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut out = Vec::with_capacity(NONCE_BYTES + plaintext.len() + TAG_BYTES);
    out.extend_from_slice(&nonce);
    // Encryption with a valid key and in-memory buffers cannot fail; the error type exists
    // for buffer-size limits far beyond anything we seal.
    match cipher.encrypt(
        XNonce::from_slice(&nonce),
        Payload {
            msg: plaintext,
            aad,
        },
    ) {
        Ok(ciphertext) => out.extend_from_slice(&ciphertext),
        Err(_) => unreachable!("XChaCha20-Poly1305 encryption of an in-memory buffer"),
    }
    out
}

pub(crate) fn open(key: &KeyMaterial, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < NONCE_BYTES + TAG_BYTES {
        return Err(CryptoError::Malformed(
            "ciphertext shorter than nonce and tag",
        ));
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
    let cipher = XChaCha20Poly1305::new(key.expose_secret().into());
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Integrity)
}
