//! What outlasts a video visit's call: that it ended, when, and by whom.
//!
//! The call itself (who waits, who is admitted, what peers relay) lives in memory on the
//! instance that holds the room; it holds nothing worth keeping and no health data. That a
//! visit is over must outlive a restart, though: nobody may join an ended visit again, on
//! this instance or another.

use haven_domain::{OrganisationId, PatientId};

/// A visit that is over. Visits are named by the FHIR `Appointment` they were booked as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitEnding {
    /// The appointment's logical id.
    pub appointment: String,
    pub organisation: OrganisationId,
    pub patient: PatientId,
    /// The audit actor id of whoever ended it (a host, or `system:…`).
    pub ended_by: String,
    pub ended_at_ms: i64,
}

/// A guest of one visit (an interpreter, a relative), invited by a clinician of it. The
/// invitation is a secret shown once (only its hash is kept), redeemed once; redeeming it
/// gives the guest a session of their own for this visit only, until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGuest {
    pub id: haven_domain::GuestId,
    pub appointment: String,
    pub organisation: OrganisationId,
    pub patient: PatientId,
    /// What the guest is to the visit (`interpreter`, `family`, `caregiver`, `other`): a
    /// word from a fixed list, so no name or health data is kept.
    pub kind: String,
    /// SHA-256 of the invitation's secret.
    pub invitation_hash: Vec<u8>,
    /// SHA-256 of the guest's session secret, once redeemed.
    pub session_hash: Option<Vec<u8>>,
    /// The audit actor id of the clinician who invited them.
    pub invited_by: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub redeemed_at_ms: Option<i64>,
}
