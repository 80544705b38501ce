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
