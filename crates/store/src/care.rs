//! Rows of care relationships, break-the-glass grants and notifications.
//!
//! What the access gate looks up before a clinical decision ([`Relations`]), what the
//! break-the-glass review queue holds ([`StoredBreakGlass`]), and the notices that tell a
//! person something needs them ([`StoredNotification`]). Reasons and review notes arrive
//! sealed; a notice carries a kind and an id, never health data.

use haven_domain::{BreakGlassId, DelegationId, NotificationId, OrganisationId, PatientId, UserId};
use uuid::Uuid;

/// One member of a patient's care team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CareTeamMember {
    pub patient: PatientId,
    pub user: UserId,
    /// The actor id of whoever added them (a user id, or a token id).
    pub added_by: String,
    pub added_at_ms: i64,
}

/// What ties one user to one patient at a moment: the facts of a policy [`Context`].
///
/// [`Context`]: haven_domain::Context
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relations {
    pub patient: PatientId,
    pub care_team: bool,
    pub break_glass: bool,
    /// The scopes of an accepted, unrevoked, unexpired delegation to the user, as stored.
    pub proxy_scopes: Option<String>,
}

/// Where a break-the-glass access stands in the privacy officer's review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewState {
    Pending,
    /// The emergency was real: the access stands.
    Justified,
    /// The access was not justified: a matter for the organisation's sanctions policy.
    Unjustified,
}

impl ReviewState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewState::Pending => "pending",
            ReviewState::Justified => "justified",
            ReviewState::Unjustified => "unjustified",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            ReviewState::Pending,
            ReviewState::Justified,
            ReviewState::Unjustified,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// One break-the-glass grant and its review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBreakGlass {
    pub id: BreakGlassId,
    pub organisation: OrganisationId,
    pub user: UserId,
    pub patient: PatientId,
    /// The stated reason, sealed under the patient's key.
    pub reason_sealed: Vec<u8>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub review_state: ReviewState,
    pub reviewed_by: Option<UserId>,
    pub reviewed_at_ms: Option<i64>,
    /// The reviewer's note, sealed under the patient's key.
    pub review_note_sealed: Option<Vec<u8>>,
}

/// A page of an organisation's break-the-glass grants, newest first.
#[derive(Debug, Clone)]
pub struct BreakGlassQuery {
    pub organisation: OrganisationId,
    /// Only those still waiting for review.
    pub pending_only: bool,
    /// Only those created before this one (the previous page's last), for paging.
    pub before: Option<(i64, BreakGlassId)>,
    pub limit: u32,
}

/// The privacy officer's decision on a pending grant.
#[derive(Debug, Clone)]
pub struct BreakGlassReview {
    pub id: BreakGlassId,
    pub reviewer: UserId,
    pub state: ReviewState,
    pub note_sealed: Option<Vec<u8>>,
    pub now_ms: i64,
}

/// A notice for one user: its kind names what happened, its subject what it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNotification {
    pub id: NotificationId,
    pub user: UserId,
    pub kind: String,
    pub subject: Option<Uuid>,
    pub created_at_ms: i64,
    pub read_at_ms: Option<i64>,
}

/// A proxy delegation, offered by link and, once accepted, naming its proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelegation {
    pub id: DelegationId,
    pub patient: PatientId,
    /// `None` until someone accepts the offer.
    pub proxy: Option<UserId>,
    /// SHA-256 of the offer's secret.
    pub offer_hash: Vec<u8>,
    /// `parent`, `guardian` or `caregiver`.
    pub relationship: String,
    /// Comma-separated scope names.
    pub scopes: String,
    pub created_by: String,
    pub created_at_ms: i64,
    pub offer_expires_at_ms: i64,
    pub expires_at_ms: i64,
    pub accepted_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

/// A relationship look-up covers at most one page of patients.
pub(crate) fn check_lookup(patients: &[PatientId]) -> crate::StoreResult<()> {
    if patients.len() > crate::limits::RELATIONS_LOOKUP_MAX {
        return Err(crate::StoreError::Invalid(
            "a relationship look-up covers at most one page of patients",
        ));
    }
    Ok(())
}
