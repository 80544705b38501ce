//! Passwords: Argon2id hashing behind a bounded gate, and NIST SP 800-63B rules.
//!
//! Hashing costs ~19 MiB and tens of milliseconds of one core by design, so a flood of
//! sign-in attempts could otherwise take every core and every request with it. Hashes run on
//! dedicated threads, half the cores (at most [`HASHES_IN_FLIGHT_MAX`]); at most
//! [`HASHES_WAITING_MAX`] more wait their turn, and beyond that a sign-in is refused at once
//! as busy, so ordinary requests keep the other half of the machine.
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
/// The most hashing threads, whatever the number of cores (see [`hashing_workers`]).
pub const HASHES_IN_FLIGHT_MAX: usize = 8;
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

/// One hashing job for a worker: the work, and where to send its result.
type Job = Box<dyn FnOnce() + Send>;

/// Hashes and verifies passwords on a few dedicated worker threads.
///
/// Dedicated threads, not tokio's blocking pool: each Argon2 hash allocates its 19 MiB on the
/// thread that runs it, and the allocator keeps that memory with the thread; a pool that
/// spreads hashes over dozens of short-lived threads kept hundreds of MiB under a flood.
/// Here memory is bounded by the number of workers.
#[derive(Debug, Clone)]
pub struct PasswordHasherPool {
    jobs: std::sync::mpsc::SyncSender<Job>,
    /// The workers' end of the queue, also held here so the queue outlives a pool without
    /// workers (the tests fill it to see `Busy`).
    _queue: Arc<std::sync::Mutex<std::sync::mpsc::Receiver<Job>>>,
    /// A real hash of a random password, verified against when a sign-in names no user, so
    /// that an unknown user costs what a wrong password costs (no account enumeration by
    /// timing).
    decoy: Arc<String>,
}

/// Workers: half the cores, at least one, so a flood of sign-ins leaves the other half to
/// everyone else.
pub fn hashing_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get() / 2)
        .clamp(1, HASHES_IN_FLIGHT_MAX)
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
        Self::with_workers(hashing_workers())
    }

    fn with_workers(workers: usize) -> AppResult<Self> {
        // Jobs queue in a bounded channel shared by the workers; a full queue is `Busy`.
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(HASHES_WAITING_MAX);
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for n in 0..workers {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("haven-argon2-{n}"))
                .spawn(move || {
                    loop {
                        let job = {
                            let queue = queue.lock().unwrap_or_else(|p| p.into_inner());
                            queue.recv()
                        };
                        match job {
                            Ok(job) => job(),
                            // Every sender is gone: the application is shutting down.
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| AppError::Unexpected(format!("starting a hashing thread: {e}")))?;
        }
        let mut random = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random);
        Ok(Self {
            jobs,
            _queue: queue,
            decoy: Arc::new(hash_now(&random)?),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> AppResult<T> + Send + 'static,
    ) -> AppResult<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(work());
        });
        self.jobs.try_send(job).map_err(|error| match error {
            std::sync::mpsc::TrySendError::Full(_) => AppError::Busy,
            std::sync::mpsc::TrySendError::Disconnected(_) => {
                AppError::Unexpected("the password hashers have stopped".into())
            }
        })?;
        answer
            .await
            .map_err(|_| AppError::Unexpected("a password hash was dropped".into()))?
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
        // No workers: nothing is taken off the queue, so it fills deterministically.
        let pool = PasswordHasherPool::with_workers(0).unwrap();
        let password = Secret::new("tangerine orbit cello".to_owned());
        let waiting: Vec<_> = (0..HASHES_WAITING_MAX)
            .map(|_| {
                let pool = pool.clone();
                let password = password.clone();
                tokio::spawn(async move { pool.verify(&password, None).await })
            })
            .collect();
        tokio::task::yield_now().await;
        // Let every spawned verify enqueue its job.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            pool.verify(&password, None).await,
            Err(AppError::Busy)
        ));
        for task in waiting {
            task.abort();
        }
    }
}
