//! Time-limited TURN credentials, as coturn checks them with `use-auth-secret` (the "TURN
//! REST API" of draft-uberti-behave-turn-rest-00): the username is the expiry time in Unix
//! seconds and an opaque name, `"<expiry>:<name>"`, and the password is the standard base64
//! of HMAC-SHA1 over the username, keyed with the secret Haven shares with coturn.
//!
//! The relay learns nothing about who calls whom (the name is opaque) and a credential is
//! worthless after its expiry, so it can be handed to a browser; the shared secret never
//! leaves the server. SHA-1 is what coturn fixes for this scheme; as an HMAC it has no known
//! weakness that matters here.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// One credential for the relay.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnCredential {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for TurnCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnCredential")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// The password coturn expects for `username` under `secret`.
pub fn turn_password(secret: &[u8], username: &str) -> String {
    // HMAC accepts a key of any length: this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(username.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// A credential valid until `expires_at_secs` (Unix seconds) for the opaque `name`.
pub fn turn_credential(secret: &[u8], name: &str, expires_at_secs: i64) -> TurnCredential {
    let username = format!("{expires_at_secs}:{name}");
    let password = turn_password(secret, &username);
    TurnCredential { username, password }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_rfc_2202s_hmac_sha1_in_base64() {
        // RFC 2202, test case 2: HMAC-SHA1 with key "Jefe".
        let expected = STANDARD.encode(hex_bytes("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"));
        assert_eq!(
            turn_password(b"Jefe", "what do ya want for nothing?"),
            expected
        );
    }

    #[test]
    fn the_username_carries_the_expiry_and_the_password_depends_on_both() {
        let credential = turn_credential(b"secret", "member-1", 1_800_000_000);
        assert_eq!(credential.username, "1800000000:member-1");
        assert_eq!(
            credential.password,
            turn_password(b"secret", "1800000000:member-1")
        );
        assert_ne!(
            credential.password,
            turn_credential(b"secret", "member-1", 1_800_000_001).password
        );
        assert_ne!(
            credential.password,
            turn_credential(b"other", "member-1", 1_800_000_000).password
        );
        assert!(!format!("{credential:?}").contains(&credential.password));
    }

    fn hex_bytes(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }
}
