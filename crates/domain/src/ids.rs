//! Typed identifiers, so a patient id can never be passed where a token id is expected.
//!
//! Ids are UUIDv7: random enough to be unguessable (74 random bits) and time-ordered so that
//! B-tree inserts stay at the right edge of the index, which keeps sustained write throughput
//! high on both SQLite and PostgreSQL.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered, unguessable id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            /// Accepts only the canonical hyphenated form, so one id has one spelling in URLs,
            /// logs and the audit trail.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.len() != 36 {
                    return Err(InvalidId);
                }
                Uuid::parse_str(s).map(Self).map_err(|_| InvalidId)
            }
        }
    };
}

typed_id!(
    /// A patient: the data subject whose key seals their records.
    PatientId
);
typed_id!(
    /// An API token issued by `haven admin token`.
    TokenId
);
typed_id!(
    /// A person who signs in: staff or a patient.
    UserId
);
typed_id!(
    /// An organisation (a clinic, a department): users, policies and time-outs belong to one.
    OrganisationId
);
typed_id!(
    /// A signed-in session of a user.
    SessionId
);
typed_id!(
    /// An invitation to enrol, redeemed once.
    InvitationId
);
typed_id!(
    /// One break-the-glass access: a clinician's time-limited emergency grant to one
    /// patient's record, awaiting the privacy officer's review.
    BreakGlassId
);
typed_id!(
    /// A proxy delegation: someone acting for a patient, within scopes, until a time.
    DelegationId
);
typed_id!(
    /// A notice for one user (an account locked, an access awaiting review).
    NotificationId
);
typed_id!(
    /// A guest of one video visit (an interpreter, a relative), invited by its clinician.
    GuestId
);

/// The text is not a canonical, hyphenated UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id: expected a hyphenated UUID such as 0190f3a2-7c1e-7b3a-9d1e-2f4a5b6c7d8e")]
pub struct InvalidId;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let id = PatientId::generate();
        assert_eq!(id.to_string().parse::<PatientId>(), Ok(id));
    }

    #[test]
    fn rejects_non_canonical_forms() {
        let id = PatientId::generate();
        let simple = id.as_uuid().simple().to_string();
        assert_eq!(simple.parse::<PatientId>(), Err(InvalidId));
        assert_eq!("abc".parse::<PatientId>(), Err(InvalidId));
        assert_eq!("12".parse::<PatientId>(), Err(InvalidId));
    }
}
