//! Passkeys (WebAuthn): a phishing-resistant factor and a passwordless sign-in.
//!
//! A signed-in user registers a passkey; afterwards it signs them in on its own, with no
//! login name typed (a discoverable credential names its user), and counts as both factors
//! (the authenticator checked possession and the user's PIN or biometric: user verification
//! is required). Ceremonies are verified by `haven_webauthn`; their challenges live in the
//! store, single-use and expiring after [`CEREMONY_TTL_MS`], so any instance can finish a
//! ceremony another began. The relying party (origin and id) is set once at start-up from
//! the public URL ([`App::configure_passkeys`]).

use haven_audit::{AuditAction, Outcome, RequestOrigin};
use haven_domain::{Principal, UserId};
use haven_store::{StoredChallenge, StoredPasskey};
use haven_webauthn::{
    AuthenticationResponse, Challenge, CreationOptions, CredentialDescriptor, RegistrationResponse,
    RelyingParty, RequestOptions, StoredCredential, UserHandle,
};

use super::{OpenedSession, SessionCaller, SessionState, invalid};
use crate::{App, AppError, AppResult};

/// How long a ceremony may take, from options to response.
pub const CEREMONY_TTL_MS: i64 = 5 * 60 * 1000;
pub const PASSKEY_NAME_CHARS_MAX: usize = 64;
const PURPOSE_REGISTER: &str = "register";
const PURPOSE_SIGN_IN: &str = "sign_in";

/// A ceremony begun: the id to send back with the response, and the browser's options.
#[derive(Debug)]
pub struct Ceremony<T> {
    pub id: uuid::Uuid,
    pub options: T,
}

fn handle_of(user: UserId) -> AppResult<UserHandle> {
    UserHandle::from_bytes(user.as_uuid().as_bytes())
        .map_err(|e| AppError::Unexpected(format!("a user handle: {e}")))
}

fn rejected(error: &haven_webauthn::WebauthnError) -> AppError {
    AppError::Unauthenticated {
        reason: match error.code() {
            "counter_regressed" => "passkey_counter_regressed",
            _ => "passkey_rejected",
        },
    }
}

impl App {
    /// Sets the relying party passkeys are bound to. Called once at start-up; later calls
    /// change nothing.
    pub fn configure_passkeys(&self, relying_party: RelyingParty) {
        let _ = self.passkeys.set(relying_party);
    }

    fn relying_party(&self) -> AppResult<&RelyingParty> {
        self.passkeys.get().ok_or(AppError::Conflict {
            code: "passkeys_unavailable",
            message: "passkeys need Haven's public address (the public_url setting)".into(),
        })
    }

    async fn begin(
        &self,
        user: Option<UserId>,
        purpose: &str,
    ) -> AppResult<(uuid::Uuid, Challenge)> {
        let challenge = Challenge::generate();
        let id = uuid::Uuid::now_v7();
        self.store
            .insert_challenge(StoredChallenge {
                id,
                challenge: challenge.as_bytes().to_vec(),
                user,
                purpose: purpose.to_owned(),
                expires_at_ms: self.clock.now_ms() + CEREMONY_TTL_MS,
            })
            .await?;
        Ok((id, challenge))
    }

    async fn take(&self, id: uuid::Uuid, purpose: &str) -> AppResult<StoredChallenge> {
        self.store
            .take_challenge(id, self.clock.now_ms())
            .await?
            .filter(|c| c.purpose == purpose)
            .ok_or(AppError::Unauthenticated {
                reason: "ceremony_expired",
            })
    }

    /// A new passkey signs in on its own, so adding one needs a fresh proof of identity,
    /// like any other sensitive change: a hijacked session cannot plant a way back in.
    fn require_fresh_session(&self, caller: &SessionCaller) -> AppResult<()> {
        if self.clock.now_ms() - caller.authenticated_at_ms > super::STEP_UP_FRESH_SECS * 1000 {
            return Err(AppError::Unauthenticated {
                reason: "step_up_required",
            });
        }
        Ok(())
    }

    /// Options for registering a passkey to the signed-in caller.
    pub async fn passkey_registration_options(
        &self,
        caller: &SessionCaller,
    ) -> AppResult<Ceremony<CreationOptions>> {
        let relying_party = self.relying_party()?;
        self.require_fresh_session(caller)?;
        let user = self.session_user(caller).await?;
        let existing = self.store.user_passkeys(user.id).await?;
        if existing.len() >= haven_store::limits::PASSKEYS_PER_USER_MAX as usize {
            return Err(AppError::Conflict {
                code: "too_many_passkeys",
                message: "remove a passkey before adding another".into(),
            });
        }
        let login = self.open_login(&user)?;
        let (id, challenge) = self.begin(Some(user.id), PURPOSE_REGISTER).await?;
        let exclude = existing
            .iter()
            .map(|p| CredentialDescriptor::new(&p.credential_id, &[]))
            .collect();
        Ok(Ceremony {
            id,
            options: relying_party.creation_options(
                &challenge,
                &handle_of(user.id)?,
                &login,
                &login,
                exclude,
            ),
        })
    }

    /// Verifies and stores a new passkey of the caller.
    pub async fn passkey_register(
        &self,
        caller: &SessionCaller,
        ceremony: uuid::Uuid,
        response: &RegistrationResponse,
        name: &str,
        origin: &RequestOrigin,
    ) -> AppResult<()> {
        let relying_party = self.relying_party()?;
        self.require_fresh_session(caller)?;
        let user = self.session_user(caller).await?;
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > PASSKEY_NAME_CHARS_MAX
            || name.chars().any(char::is_control)
        {
            return Err(invalid(
                "name",
                format!("1 to {PASSKEY_NAME_CHARS_MAX} printable characters"),
            ));
        }
        let challenge = self.take(ceremony, PURPOSE_REGISTER).await?;
        if challenge.user != Some(user.id) {
            return Err(AppError::Unauthenticated {
                reason: "ceremony_expired",
            });
        }
        let expected = Challenge::from_bytes(&challenge.challenge)
            .map_err(|e| AppError::Unexpected(format!("a stored challenge: {e}")))?;
        let registered = match relying_party.finish_registration(response, &expected, true) {
            Ok(registered) => registered,
            Err(error) => {
                let event = self.identity_event(
                    AuditAction::MfaChange,
                    Some(&user),
                    Some(caller.session),
                    Outcome::Denied,
                    &format!("passkey_rejected_{}", error.code()),
                    origin,
                );
                self.audit_identity(event).await?;
                return Err(invalid("credential", error.to_string()));
            }
        };
        let event = self.identity_event(
            AuditAction::MfaChange,
            Some(&user),
            Some(caller.session),
            Outcome::Allowed,
            "passkey_added",
            origin,
        );
        self.audit_identity(event).await?;
        match self
            .store
            .insert_passkey(StoredPasskey {
                credential_id: registered.id.clone(),
                user: user.id,
                public_key_cose: registered.public_key_cose.clone(),
                sign_count: i64::from(registered.sign_count),
                backup_eligible: registered.backup_eligible,
                name: name.to_owned(),
                created_at_ms: self.clock.now_ms(),
                last_used_ms: None,
            })
            .await
        {
            Err(haven_store::StoreError::AlreadyExists) => Err(AppError::Conflict {
                code: "passkey_exists",
                message: "this passkey is already registered".into(),
            }),
            other => other.map_err(AppError::from),
        }
    }

    /// Options for signing in with a passkey: no login needed, the passkey names its user.
    ///
    /// Anyone may ask, so each address may begin at most
    /// [`super::throttle::CEREMONIES_PER_WINDOW_MAX`] a minute: every ceremony stores a
    /// challenge until it expires.
    pub async fn passkey_sign_in_options(
        &self,
        origin: &RequestOrigin,
    ) -> AppResult<Ceremony<RequestOptions>> {
        let relying_party = self.relying_party()?;
        if let Some(ip) = origin
            .source_ip
            .as_deref()
            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        {
            let now_ms = self.clock.now_ms();
            self.ceremonies
                .check(ip, now_ms)
                .map_err(|retry_after_secs| AppError::Throttled { retry_after_secs })?;
            self.ceremonies.record(ip, now_ms);
        }
        let (id, challenge) = self.begin(None, PURPOSE_SIGN_IN).await?;
        Ok(Ceremony {
            id,
            options: relying_party.request_options(&challenge, Vec::new()),
        })
    }

    /// Signs in with a passkey: a session with both factors satisfied.
    pub async fn passkey_sign_in(
        &self,
        ceremony: uuid::Uuid,
        response: &AuthenticationResponse,
        origin: &RequestOrigin,
    ) -> AppResult<OpenedSession> {
        let relying_party = self.relying_party()?;
        let challenge = self.take(ceremony, PURPOSE_SIGN_IN).await?;
        let expected = Challenge::from_bytes(&challenge.challenge)
            .map_err(|e| AppError::Unexpected(format!("a stored challenge: {e}")))?;
        let refused = || AppError::Unauthenticated {
            reason: "passkey_rejected",
        };
        let credential_id = response.credential_id().map_err(|_| refused())?;
        let Some(passkey) = self.store.passkey(&credential_id).await? else {
            let event = self.identity_event(
                AuditAction::FailedLogin,
                None,
                None,
                Outcome::Denied,
                "passkey_unknown",
                origin,
            );
            self.audit_identity(event).await?;
            return Err(refused());
        };
        let user = self.store.user(passkey.user).await?.ok_or_else(refused)?;
        let stored = StoredCredential {
            id: passkey.credential_id.clone(),
            public_key_cose: passkey.public_key_cose.clone(),
            sign_count: u32::try_from(passkey.sign_count).unwrap_or(u32::MAX),
            backup_eligible: passkey.backup_eligible,
            user_handle: handle_of(user.id)?,
        };
        let now_ms = self.clock.now_ms();
        let verified = relying_party.finish_authentication(response, &expected, &stored, true);
        let authenticated = match verified {
            Ok(authenticated)
                if user.disabled_at_ms.is_none() && user.locked_until_ms <= now_ms =>
            {
                authenticated
            }
            outcome => {
                let reason = match &outcome {
                    Err(error) => format!("passkey_rejected_{}", error.code()),
                    Ok(_) => "account_locked_or_disabled".to_owned(),
                };
                let event = self.identity_event(
                    AuditAction::FailedLogin,
                    Some(&user),
                    None,
                    Outcome::Denied,
                    &reason,
                    origin,
                );
                self.audit_identity(event).await?;
                return Err(match outcome {
                    Err(error) => rejected(&error),
                    Ok(_) => refused(),
                });
            }
        };
        // The counter moves only from the value verified against; a clone racing the
        // original loses here.
        if !self
            .store
            .record_passkey_use(
                &passkey.credential_id,
                passkey.sign_count,
                i64::from(authenticated.new_sign_count),
                now_ms,
            )
            .await?
        {
            return Err(AppError::Unauthenticated {
                reason: "passkey_counter_regressed",
            });
        }
        let organisation = self
            .store
            .organisation(user.organisation)
            .await?
            .ok_or_else(|| AppError::Unexpected("a user's organisation is gone".into()))?;
        let opened = self
            .open_session(&user, &organisation, true, "signed_in_passkey", origin)
            .await?;
        debug_assert_eq!(opened.state, SessionState::Complete);
        Ok(opened)
    }

    /// Removes one of the caller's passkeys (a fresh proof needed, like adding one).
    pub async fn remove_passkey(
        &self,
        caller: &SessionCaller,
        credential_id: &[u8],
        origin: &RequestOrigin,
    ) -> AppResult<()> {
        self.require_fresh_session(caller)?;
        let user = self.session_user(caller).await?;
        let theirs = self
            .store
            .passkey(credential_id)
            .await?
            .is_some_and(|p| p.user == user.id);
        if !theirs {
            return Err(AppError::NotFound);
        }
        let event = self.identity_event(
            AuditAction::MfaChange,
            Some(&user),
            Some(caller.session),
            Outcome::Allowed,
            "passkey_removed",
            origin,
        );
        self.audit_identity(event).await?;
        self.store.delete_passkey(user.id, credential_id).await?;
        Ok(())
    }

    /// The caller's passkeys (names and dates only).
    pub async fn my_passkeys(&self, caller: &SessionCaller) -> AppResult<Vec<StoredPasskey>> {
        let Principal::User { user, .. } = caller.actor.principal else {
            return Err(AppError::Unexpected(
                "a session caller that is not a user".into(),
            ));
        };
        Ok(self.store.user_passkeys(user).await?)
    }
}
