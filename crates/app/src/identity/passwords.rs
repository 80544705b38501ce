//! Passwords: Argon2id hashing behind a bounded gate, and NIST SP 800-63B rules.
//!
//! Hashing costs ~19 MiB and tens of milliseconds of one core by design, so a flood of
//! sign-in attempts could otherwise take every core and every request with it. Hashes run on
//! blocking threads, at most [`HASHES_IN_FLIGHT_MAX`] at once; at most
//! [`HASHES_WAITING_MAX`] more wait their turn, and beyond that a sign-in is refused at once
//! as busy, so ordinary requests keep their share of the machine.
//!
//! Rules (SP 800-63B §5.1.1.2): at least [`PASSWORD_CHARS_MIN`] characters, no composition
//! rules, at most [`PASSWORD_CHARS_MAX`] (a bound, not a rule: long passphrases are
//! welcome), and refused when common or easy to guess (zxcvbn, with the user's own login
//! among the words it tries).

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use haven_crypto::Secret;
use tokio::sync::Semaphore;

use crate::{AppError, AppResult};

pub const PASSWORD_CHARS_MIN: usize = 12;
pub const PASSWORD_CHARS_MAX: usize = 256;
/// zxcvbn's score (0–4) a password must reach: 3 is "safely unguessable: moderate
/// protection from offline slow-hash scenario".
pub const PASSWORD_SCORE_MIN: u8 = 3;
/// Argon2id parameters: OWASP's first recommendation (19 MiB, 2 passes, 1 lane).
pub const ARGON2_MEMORY_KIB: u32 = 19_456;
pub const ARGON2_PASSES: u32 = 2;
pub const ARGON2_LANES: u32 = 1;
/// Concurrent hashes: one per core of the reference machine.
pub const HASHES_IN_FLIGHT_MAX: usize = 2;
/// Hashes allowed to queue behind those in flight before sign-ins are refused as busy.
pub const HASHES_WAITING_MAX: usize = 64;

/// Why a new password was refused; the message is for the person choosing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeakPassword(pub String);

/// Checks a new password against the rules, with `context` (the login, the name of the
/// organisation) as words a guesser would try first.
pub fn check_new_password(password: &str, context: &[&str]) -> Result<(), WeakPassword> {
    let chars = password.chars().count();
    if chars < PASSWORD_CHARS_MIN {
        return Err(WeakPassword(format!(
            "use at least {PASSWORD_CHARS_MIN} characters; a few words together make a good password"
        )));
    }
    if chars > PASSWORD_CHARS_MAX {
        return Err(WeakPassword(format!(
            "use at most {PASSWORD_CHARS_MAX} characters"
        )));
    }
    let estimate = zxcvbn::zxcvbn(password, context);
    if u8::from(estimate.score()) < PASSWORD_SCORE_MIN {
        let hint = estimate
            .feedback()
            .and_then(|f| f.warning())
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        return Err(WeakPassword(format!(
            "this password is too easy to guess{hint}; add more words or make it less common"
        )));
    }
    Ok(())
}

/// Hashes and verifies passwords, a bounded number at a time.
#[derive(Debug, Clone)]
pub struct PasswordHasherPool {
    in_flight: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    /// A real hash of a random password, verified against when a sign-in names no user, so
    /// that an unknown user costs what a wrong password costs (no account enumeration by
    /// timing).
    decoy: Arc<String>,
}

fn argon2() -> AppResult<Argon2<'static>> {
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, ARGON2_LANES, None)
        .map_err(|e| AppError::Unexpected(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_now(password: &[u8]) -> AppResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()?
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AppError::Unexpected(format!("hashing a password: {e}")))
}

fn verify_now(password: &[u8], phc: &str) -> AppResult<bool> {
    let parsed = PasswordHash::new(phc)
        .map_err(|e| AppError::Unexpected(format!("a stored password hash: {e}")))?;
    // The parameters come from the stored hash, so older hashes keep verifying.
    Ok(argon2()?.verify_password(password, &parsed).is_ok())
}

impl PasswordHasherPool {
    pub fn new() -> AppResult<Self> {
        let mut random = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random);
        Ok(Self {
            in_flight: Arc::new(Semaphore::new(HASHES_IN_FLIGHT_MAX)),
            waiting: Arc::new(Semaphore::new(HASHES_IN_FLIGHT_MAX + HASHES_WAITING_MAX)),
            decoy: Arc::new(hash_now(&random)?),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> AppResult<T> + Send + 'static,
    ) -> AppResult<T> {
        let _queued = self.waiting.try_acquire().map_err(|_| AppError::Busy)?;
        let _running = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| AppError::Unexpected("the password hasher is closed".into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| AppError::Unexpected(format!("a password hash task failed: {e}")))?
    }

    pub async fn hash(&self, password: &Secret<String>) -> AppResult<String> {
        let password = password.expose_secret().as_bytes().to_vec();
        self.run(move || hash_now(&password)).await
    }

    /// Whether `password` matches `phc`; with `None` (no such user) it checks against the
    /// decoy and answers false, taking as long as a real check.
    pub async fn verify(&self, password: &Secret<String>, phc: Option<&str>) -> AppResult<bool> {
        let password = password.expose_secret().as_bytes().to_vec();
        let known = phc.is_some();
        let phc = phc.map_or_else(|| (*self.decoy).clone(), str::to_owned);
        let matches = self.run(move || verify_now(&password, &phc)).await?;
        Ok(known && matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_common_and_personal_passwords_are_refused() {
        assert!(check_new_password("short", &[]).is_err());
        assert!(check_new_password("passwordpassword", &[]).is_err());
        assert!(check_new_password("123456789012", &[]).is_err());
        assert!(
            check_new_password("alice.smith@north.example", &["alice.smith@north.example"])
                .is_err()
        );
        assert!(check_new_password(&"x".repeat(PASSWORD_CHARS_MAX + 1), &[]).is_err());
        // No composition rules: a long passphrase of plain words is fine.
        assert_eq!(
            check_new_password("correct horse battery staple", &[]),
            Ok(())
        );
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let pool = PasswordHasherPool::new().unwrap();
        let password = Secret::new("tangerine orbit cello".to_owned());
        let hash = pool.hash(&password).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(pool.verify(&password, Some(&hash)).await.unwrap());
        let wrong = Secret::new("tangerine orbit cellos".to_owned());
        assert!(!pool.verify(&wrong, Some(&hash)).await.unwrap());
        // No user: never a match, even for the decoy's own inputs.
        assert!(!pool.verify(&password, None).await.unwrap());
    }

    #[tokio::test]
    async fn beyond_the_queue_a_sign_in_is_refused_as_busy() {
        let pool = PasswordHasherPool::new().unwrap();
        let password = Secret::new("tangerine orbit cello".to_owned());
        // Every place in the queue taken, as by a flood of attempts.
        let taken = pool
            .waiting
            .try_acquire_many(u32::try_from(HASHES_IN_FLIGHT_MAX + HASHES_WAITING_MAX).unwrap())
            .unwrap();
        assert!(matches!(
            pool.verify(&password, None).await,
            Err(AppError::Busy)
        ));
        drop(taken);
        assert!(!pool.verify(&password, None).await.unwrap());
    }
}
