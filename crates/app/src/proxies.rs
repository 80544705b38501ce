//! Proxy access: a parent, guardian or caregiver acting for a patient.
//!
//! A delegation is explicit, scoped and expiring. The patient (or the front desk, who checks
//! a parent's or guardian's papers in person) offers it with a single-use link, valid for
//! [`OFFER_TTL_HOURS`]; the proxy, signed in with their own patient account, accepts it and
//! from then until it expires or is revoked sees what its scopes allow (the record; who
//! accessed it), audited with purpose `FAMRQT`. Only a live delegation counts: the gate
//! looks it up for every decision, so a revocation takes effect on the next request.

use haven_domain::{Action, DelegationId, PatientId, Principal, ProxyScopes, Resource, Role};
use haven_store::care::StoredDelegation;
use haven_store::limits;

use crate::gate::AuditedResource;
use crate::identity::{invalid, random_token, secret_hash};
use crate::{App, AppError, AppResult, RequestContext, Secret};

/// How long an offered delegation may wait to be accepted.
pub const OFFER_TTL_HOURS: i64 = 72;
/// How long a delegation lasts when the grantor does not say, and at most.
pub const DELEGATION_DAYS_DEFAULT: u32 = 365;
pub const DELEGATION_DAYS_MAX: u32 = 10 * 365;
/// Who a proxy is to the patient.
pub const RELATIONSHIPS: [&str; 3] = ["parent", "guardian", "caregiver"];

const OFFER_PREFIX: &str = "hvp_";
/// `hvp_` + 43 base64url characters.
const OFFER_CHARS: usize = 4 + 43;

/// A delegation just offered: the link's secret is shown once.
#[derive(Debug)]
pub struct OfferedDelegation {
    pub id: DelegationId,
    pub offer: Secret<String>,
    pub offer_expires_at_ms: i64,
    pub expires_at_ms: i64,
}

/// Where a delegation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelegationState {
    /// Offered, waiting for its proxy.
    Offered,
    Active,
    /// Never accepted in time.
    Lapsed,
    Expired,
    Revoked,
}

impl DelegationState {
    pub fn as_str(self) -> &'static str {
        match self {
            DelegationState::Offered => "offered",
            DelegationState::Active => "active",
            DelegationState::Lapsed => "lapsed",
            DelegationState::Expired => "expired",
            DelegationState::Revoked => "revoked",
        }
    }
}

/// A delegation as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationView {
    pub id: DelegationId,
    pub patient: PatientId,
    pub proxy: Option<haven_domain::UserId>,
    pub relationship: String,
    pub scopes: ProxyScopes,
    pub state: DelegationState,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

fn view(stored: StoredDelegation, now_ms: i64) -> DelegationView {
    let state = if stored.revoked_at_ms.is_some() {
        DelegationState::Revoked
    } else if stored.expires_at_ms <= now_ms {
        DelegationState::Expired
    } else if stored.accepted_at_ms.is_some() {
        DelegationState::Active
    } else if stored.offer_expires_at_ms <= now_ms {
        DelegationState::Lapsed
    } else {
        DelegationState::Offered
    };
    DelegationView {
        id: stored.id,
        patient: stored.patient,
        proxy: stored.proxy,
        relationship: stored.relationship,
        scopes: ProxyScopes::parse(stored.scopes.split(',')).unwrap_or_default(),
        state,
        created_at_ms: stored.created_at_ms,
        expires_at_ms: stored.expires_at_ms,
    }
}

fn delegations_resource(patient: PatientId, id: Option<DelegationId>) -> AuditedResource {
    AuditedResource {
        resource: Resource::Delegations(patient),
        patient: None,
        resource_type: "Delegation",
        resource_id: id.map(|d| d.to_string()),
    }
}

fn is_live(d: &DelegationView) -> bool {
    matches!(d.state, DelegationState::Offered | DelegationState::Active)
}

impl App {
    /// Offers a delegation of `patient`'s record: who the proxy is to them, what they may
    /// see, for how many days. Returns the single-use link secret to hand to the proxy.
    pub async fn offer_delegation(
        &self,
        context: &RequestContext,
        patient: PatientId,
        relationship: &str,
        scopes: &[String],
        days: Option<u32>,
    ) -> AppResult<OfferedDelegation> {
        if !RELATIONSHIPS.contains(&relationship) {
            return Err(invalid("relationship", "parent, guardian or caregiver"));
        }
        let scopes = ProxyScopes::parse(scopes.iter().map(String::as_str))
            .map_err(|message| invalid("scopes", message))?;
        if scopes.is_empty() {
            return Err(invalid(
                "scopes",
                format!("one or more of {}", ProxyScopes::NAMES.join(", ")),
            ));
        }
        let days = days.unwrap_or(DELEGATION_DAYS_DEFAULT);
        if days == 0 || days > DELEGATION_DAYS_MAX {
            return Err(invalid(
                "days",
                format!("between 1 and {DELEGATION_DAYS_MAX}"),
            ));
        }
        let id = DelegationId::generate();
        self.gate
            .authorize_resource(
                context,
                Action::Create,
                delegations_resource(patient, Some(id)),
                true,
            )
            .await?;
        let now_ms = self.clock.now_ms();
        let live = self
            .store
            .patient_delegations(patient, now_ms)
            .await?
            .into_iter()
            .map(|d| view(d, now_ms))
            .filter(is_live)
            .count();
        if live >= limits::DELEGATIONS_PER_PATIENT_MAX as usize {
            return Err(AppError::Conflict {
                code: "too_many_delegations",
                message: format!(
                    "a patient may have at most {} live delegations; revoke one first",
                    limits::DELEGATIONS_PER_PATIENT_MAX
                ),
            });
        }
        let offer = random_token(OFFER_PREFIX);
        let stored = StoredDelegation {
            id,
            patient,
            proxy: None,
            offer_hash: secret_hash(&offer),
            relationship: relationship.to_owned(),
            scopes: scopes.names().join(","),
            created_by: context.actor.principal.actor_id(),
            created_at_ms: now_ms,
            offer_expires_at_ms: now_ms + OFFER_TTL_HOURS * 3_600_000,
            expires_at_ms: now_ms + i64::from(days) * 86_400_000,
            accepted_at_ms: None,
            revoked_at_ms: None,
        };
        self.store.insert_delegation(stored.clone()).await?;
        Ok(OfferedDelegation {
            id,
            offer: Secret::new(offer),
            offer_expires_at_ms: stored.offer_expires_at_ms,
            expires_at_ms: stored.expires_at_ms,
        })
    }

    /// Accepts an offered delegation: the caller, a patient-role person, becomes the proxy.
    /// Every way an offer can be unusable (unknown, used, revoked, lapsed) answers the same.
    pub async fn accept_delegation(
        &self,
        context: &RequestContext,
        offer: &str,
    ) -> AppResult<DelegationView> {
        let unusable = || invalid("offer", "this link is not valid (used, revoked or expired)");
        let stored = if offer.len() == OFFER_CHARS && offer.starts_with(OFFER_PREFIX) {
            self.store.delegation_by_offer(&secret_hash(offer)).await?
        } else {
            None
        };
        self.gate
            .authorize_resource(
                context,
                Action::Create,
                AuditedResource {
                    resource: Resource::DelegationOffer,
                    patient: stored.as_ref().map(|d| d.patient),
                    resource_type: "Delegation",
                    resource_id: stored.as_ref().map(|d| d.id.to_string()),
                },
                false,
            )
            .await?;
        let stored = stored.ok_or_else(unusable)?;
        let Principal::User { user, .. } = context.actor.principal else {
            return Err(AppError::Unexpected(
                "the policy let a token accept a delegation".into(),
            ));
        };
        if context.actor.patient == Some(stored.patient) {
            return Err(invalid("offer", "this is your own record"));
        }
        let now_ms = self.clock.now_ms();
        if self
            .store
            .proxy_delegations(user, now_ms)
            .await?
            .iter()
            .any(|d| d.patient == stored.patient)
        {
            return Err(AppError::Conflict {
                code: "already_a_proxy",
                message: "you already act for this patient".into(),
            });
        }
        if !self
            .store
            .accept_delegation(stored.id, user, now_ms)
            .await?
        {
            return Err(unusable());
        }
        let accepted = self
            .store
            .delegation_by_offer(&stored.offer_hash)
            .await?
            .ok_or(AppError::NotFound)?;
        Ok(view(accepted, now_ms))
    }

    /// A patient's delegations: live ones first, then ended ones, newest first.
    pub async fn delegations(
        &self,
        context: &RequestContext,
        patient: PatientId,
    ) -> AppResult<Vec<DelegationView>> {
        self.gate
            .authorize_resource(
                context,
                Action::Read,
                delegations_resource(patient, None),
                true,
            )
            .await?;
        let now_ms = self.clock.now_ms();
        Ok(self
            .store
            .patient_delegations(patient, now_ms)
            .await?
            .into_iter()
            .map(|d| view(d, now_ms))
            .collect())
    }

    /// Revokes one of a patient's delegations: the proxy loses access on their next request.
    pub async fn revoke_delegation(
        &self,
        context: &RequestContext,
        patient: PatientId,
        id: DelegationId,
    ) -> AppResult<()> {
        self.gate
            .authorize_resource(
                context,
                Action::Delete,
                delegations_resource(patient, Some(id)),
                true,
            )
            .await?;
        if self
            .store
            .revoke_delegation(patient, id, self.clock.now_ms())
            .await?
        {
            Ok(())
        } else {
            Err(AppError::NotFound)
        }
    }

    /// The patients the caller acts for, for a signed-in patient-role person.
    pub async fn acting_for(&self, context: &RequestContext) -> AppResult<Vec<DelegationView>> {
        let (Role::Patient, Principal::User { user, .. }) =
            (context.actor.role, context.actor.principal)
        else {
            return Ok(Vec::new());
        };
        let now_ms = self.clock.now_ms();
        Ok(self
            .store
            .proxy_delegations(user, now_ms)
            .await?
            .into_iter()
            .map(|d| view(d, now_ms))
            .collect())
    }
}
