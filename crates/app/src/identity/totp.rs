//! Time-based one-time passwords (RFC 6238): SHA-1, 6 digits, 30-second steps — what every
//! authenticator app understands. A code is accepted for its own step and one step either
//! side (clock drift), and never twice: the store keeps the last step used and only moves
//! it forward, so a code seen over someone's shoulder is worthless once used.

use totp_rs::{Algorithm, TOTP};

use crate::{AppError, AppResult};

pub const TOTP_DIGITS: usize = 6;
pub const TOTP_STEP_SECS: u64 = 30;
/// Steps accepted either side of the current one.
pub const TOTP_SKEW_STEPS: u8 = 1;
/// 160-bit secrets, as RFC 4226 recommends.
pub const TOTP_SECRET_BYTES: usize = 20;

fn totp(secret: &[u8]) -> AppResult<TOTP> {
    TOTP::new(
        Algorithm::SHA1,
        TOTP_DIGITS,
        TOTP_SKEW_STEPS,
        TOTP_STEP_SECS,
        secret.to_vec(),
    )
    .map_err(|e| AppError::Unexpected(format!("a TOTP secret: {e}")))
}

/// A fresh secret.
pub fn generate_secret() -> Vec<u8> {
    let mut secret = vec![0u8; TOTP_SECRET_BYTES];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    secret
}

/// The secret in base32 (what apps accept typed in) and the `otpauth://` URI (what a QR
/// code carries), for `account` (the login shown in the app).
pub fn provisioning(secret: &[u8], account: &str) -> AppResult<(String, String)> {
    let totp = totp(secret)?;
    let base32 = totp.get_secret_base32();
    // otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=…  (Key Uri Format)
    let label = format!("Haven:{account}");
    let uri = format!(
        "otpauth://totp/{}?secret={base32}&issuer=Haven&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_STEP_SECS}",
        percent_encode(&label)
    );
    Ok((base32, uri))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The time step a code matches at `now_secs`, if any (the current one, or one either side).
pub fn matching_step(secret: &[u8], code: &str, now_secs: u64) -> AppResult<Option<u64>> {
    if code.len() != TOTP_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let totp = totp(secret)?;
    let current = now_secs / TOTP_STEP_SECS;
    for step in [current, current.saturating_sub(1), current + 1] {
        let expected = totp.generate(step * TOTP_STEP_SECS);
        // Constant-time enough: both are 6 ASCII digits; compare every byte regardless.
        let same = expected
            .bytes()
            .zip(code.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        if same {
            return Ok(Some(step));
        }
    }
    Ok(None)
}

/// The code for `at_secs` from a base32 secret, as an authenticator app computes it.
pub fn code_at_base32(base32: &str, at_secs: u64) -> AppResult<String> {
    let secret = totp_rs::Secret::Encoded(base32.to_owned())
        .to_bytes()
        .map_err(|e| invalid_secret(&e.to_string()))?;
    code_at(&secret, at_secs)
}

fn invalid_secret(detail: &str) -> AppError {
    AppError::Unexpected(format!("a TOTP secret that is not base32: {detail}"))
}

/// The code for `at_secs` (tests, and showing a user what their app should say).
pub fn code_at(secret: &[u8], at_secs: u64) -> AppResult<String> {
    Ok(totp(secret)?.generate(at_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vectors_in_six_digits() {
        // RFC 6238 Appendix B, SHA-1 secret "12345678901234567890"; the RFC prints 8 digits,
        // of which a 6-digit code is the last six.
        let secret = b"12345678901234567890";
        for (at, eight) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
        ] {
            assert_eq!(code_at(secret, at).unwrap(), eight[2..], "at {at}");
        }
    }

    #[test]
    fn a_code_matches_its_step_and_its_neighbours_only() {
        let secret = generate_secret();
        let now = 1_800_000_000;
        let code = code_at(&secret, now).unwrap();
        let step = now / TOTP_STEP_SECS;
        assert_eq!(matching_step(&secret, &code, now).unwrap(), Some(step));
        assert_eq!(
            matching_step(&secret, &code, now + TOTP_STEP_SECS).unwrap(),
            Some(step)
        );
        assert_eq!(
            matching_step(&secret, &code, now + 3 * TOTP_STEP_SECS).unwrap(),
            None
        );
        assert_eq!(matching_step(&secret, "12345", now).unwrap(), None);
        assert_eq!(matching_step(&secret, "abcdef", now).unwrap(), None);
    }

    #[test]
    fn the_provisioning_uri_names_the_issuer_and_account() {
        let (base32, uri) = provisioning(b"12345678901234567890", "ada@north.example").unwrap();
        assert_eq!(base32, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            uri,
            "otpauth://totp/Haven:ada%40north.example?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Haven&algorithm=SHA1&digits=6&period=30"
        );
    }
}
