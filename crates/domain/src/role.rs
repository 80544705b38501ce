//! The roles a user or API client can hold. Which role may do what is decided only in
//! [`crate::policy::decide`].

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Patient,
    Clinician,
    Nurse,
    FrontDesk,
    PrivacyOfficer,
    Auditor,
    Administrator,
    /// A system that loads records written elsewhere (a laboratory interface, a migration
    /// with `haven import`): an API token only, never a person.
    Integration,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Patient,
        Role::Clinician,
        Role::Nurse,
        Role::FrontDesk,
        Role::PrivacyOfficer,
        Role::Auditor,
        Role::Administrator,
        Role::Integration,
    ];

    /// The stable name used in storage, the CLI and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Clinician => "clinician",
            Role::Nurse => "nurse",
            Role::FrontDesk => "front_desk",
            Role::PrivacyOfficer => "privacy_officer",
            Role::Auditor => "auditor",
            Role::Administrator => "administrator",
            Role::Integration => "integration",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown role `{0}`; expected one of: patient, clinician, nurse, front_desk, privacy_officer, auditor, administrator, integration"
)]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
