//! The random challenge a ceremony answers.

use std::fmt;

use rand::RngCore;

use crate::limits::{CHALLENGE_BYTES, CHALLENGE_BYTES_MAX, CHALLENGE_BYTES_MIN};
use crate::{WebauthnError, base64url};

/// Random bytes issued for one ceremony: [`CHALLENGE_BYTES`] from the operating system
/// when made here, 16 to 64 when read back.
///
/// This crate is stateless: the caller keeps the challenge (in its text form, for
/// instance) with an expiry of about [`crate::limits::CEREMONY_TIMEOUT_MS`], passes it
/// back to `finish_registration` or `finish_authentication`, and deletes it **before**
/// acting on the result, whatever the result. A challenge accepted twice would let a
/// captured response be replayed; making it single-use is the caller's job.
#[derive(Clone, PartialEq, Eq)]
pub struct Challenge(Vec<u8>);

impl Challenge {
    pub fn generate() -> Self {
        let mut bytes = vec![0; CHALLENGE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Reads back a stored challenge. The specification asks for at least 16 random
    /// bytes; more than 64 would only be a mistake.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WebauthnError> {
        if !(CHALLENGE_BYTES_MIN..=CHALLENGE_BYTES_MAX).contains(&bytes.len()) {
            return Err(WebauthnError::Malformed("challenge length"));
        }
        Ok(Self(bytes.to_vec()))
    }

    /// Reads back the text form made by [`Challenge::to_base64url`].
    pub fn from_base64url(text: &str) -> Result<Self, WebauthnError> {
        Self::from_bytes(&base64url::decode_bounded(
            "challenge",
            text,
            CHALLENGE_BYTES_MAX,
        )?)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The form sent in the options and echoed in clientDataJSON.
    pub fn to_base64url(&self) -> String {
        base64url::encode(&self.0)
    }
}

/// A challenge is public (it travels to the browser), so it is shown, in its text form.
impl fmt::Debug for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Challenge")
            .field(&self.to_base64url())
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generated_challenges_differ_and_round_trip_through_text() {
        let a = Challenge::generate();
        let b = Challenge::generate();
        assert_ne!(a, b);
        assert_eq!(Challenge::from_base64url(&a.to_base64url()).unwrap(), a);
        assert_eq!(a.to_base64url().len(), 43);
    }

    #[test]
    fn stored_challenges_of_16_to_64_bytes_are_read_back() {
        assert!(Challenge::from_bytes(&[7; 15]).is_err());
        assert!(Challenge::from_bytes(&[7; 16]).is_ok());
        assert!(Challenge::from_bytes(&[7; 64]).is_ok());
        assert!(Challenge::from_bytes(&[7; 65]).is_err());
        assert!(Challenge::from_base64url("AAAA").is_err());
    }
}
