//! The one policy decision function. Every access in Haven is decided here, with a reason
//! that goes into the audit trail; anything not explicitly allowed is denied.
//!
//! This first version covers patient demographics, the audit log, and a patient's own record
//! and access log. Care relationships, consent, break-glass
//! and field-level minimum-necessary filtering extend the `Resource` and `Actor` context here,
//! in one place, rather than as checks scattered across handlers.

use crate::ids::{OrganisationId, PatientId, SessionId, TokenId, UserId};
use crate::role::Role;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub principal: Principal,
    pub role: Role,
    /// The organisation a signed-in user belongs to (API tokens are deployment-wide).
    pub organisation: Option<OrganisationId>,
    /// For a patient: the one record they are the subject of.
    pub patient: Option<PatientId>,
}

/// The credential behind a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// An API client holding a token minted by an operator.
    ApiToken(TokenId),
    /// A person, signed in, in one of their sessions.
    User { user: UserId, session: SessionId },
}

impl Principal {
    /// The id recorded as the actor in the audit trail.
    pub fn actor_id(&self) -> String {
        match self {
            Principal::ApiToken(token) => token.to_string(),
            Principal::User { user, .. } => user.to_string(),
        }
    }

    pub fn session(&self) -> Option<SessionId> {
        match self {
            Principal::ApiToken(_) => None,
            Principal::User { session, .. } => Some(*session),
        }
    }
}

/// What they want to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Search,
    Create,
    Update,
}

/// What they want to do it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// One patient's demographics.
    Patient(PatientId),
    /// The list of all patients (search and listing).
    PatientDirectory,
    /// The audit log's signed checkpoints: sizes and root hashes, no entries.
    AuditCheckpoints,
    /// The whole audit log's entries (reports).
    AuditLog,
    /// The entries of the audit log about one patient: who accessed their record.
    PatientAccessLog(PatientId),
    /// Users and invitations of an organisation.
    Users,
}

impl Resource {
    pub fn patient(&self) -> Option<PatientId> {
        match self {
            Resource::Patient(id) | Resource::PatientAccessLog(id) => Some(*id),
            Resource::PatientDirectory
            | Resource::AuditCheckpoints
            | Resource::AuditLog
            | Resource::Users => None,
        }
    }
}

/// Why an access was denied, recorded in the audit trail and reported to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The role has no permission for this action on this kind of resource.
    RoleNotPermitted,
    /// A patient asked for a record that is not theirs.
    NotTheirRecord,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::RoleNotPermitted => "role_not_permitted",
            DenyReason::NotTheirRecord => "not_their_record",
        }
    }
}

/// Why data is accessed, recorded with every allowed access (HL7 v3 PurposeOfUse codes,
/// as FHIR `AuditEvent.purposeOfEvent` and IHE ATNA use them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurposeOfUse {
    /// Care of the patient (`TREAT`).
    Treatment,
    /// Emergency care, as under break-the-glass (`ETREAT`).
    EmergencyTreatment,
    /// Registration, scheduling, demographics (`PATADMIN`).
    PatientAdministration,
    /// The patient asking for their own data (`PATRQT`).
    PatientRequest,
    /// Oversight of access: audit review, witnesses (`HCOMPL`).
    Compliance,
    /// Running the system itself: keys, tokens, configuration (`HSYSADMIN`).
    SystemAdministration,
}

impl PurposeOfUse {
    pub fn code(self) -> &'static str {
        match self {
            PurposeOfUse::Treatment => "TREAT",
            PurposeOfUse::EmergencyTreatment => "ETREAT",
            PurposeOfUse::PatientAdministration => "PATADMIN",
            PurposeOfUse::PatientRequest => "PATRQT",
            PurposeOfUse::Compliance => "HCOMPL",
            PurposeOfUse::SystemAdministration => "HSYSADMIN",
        }
    }
}

/// The outcome of [`decide`]: allowed with the rule that allowed it and the purpose it
/// serves, or denied with why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow {
        rule: &'static str,
        purpose: PurposeOfUse,
    },
    Deny(DenyReason),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// The purpose of an allowed access; a denied one accessed nothing.
    pub fn purpose(&self) -> Option<PurposeOfUse> {
        match self {
            Decision::Allow { purpose, .. } => Some(*purpose),
            Decision::Deny(_) => None,
        }
    }

    /// The reason as recorded in the audit trail.
    pub fn reason(&self) -> &'static str {
        match self {
            Decision::Allow { rule, .. } => rule,
            Decision::Deny(reason) => reason.as_str(),
        }
    }
}

/// Decides whether `actor` may perform `action` on `resource`. Pure: same inputs, same answer.
pub fn decide(actor: &Actor, action: Action, resource: &Resource) -> Decision {
    match (actor.role, resource) {
        // Registration and demographics are the work of the front desk and of the
        // administrator who runs the clinic's directory; clinicians and nurses need
        // demographics to identify the patient in front of them.
        (
            Role::Administrator | Role::FrontDesk,
            Resource::Patient(_) | Resource::PatientDirectory,
        ) => Decision::Allow {
            rule: "demographics_staff",
            purpose: PurposeOfUse::PatientAdministration,
        },
        (Role::Clinician | Role::Nurse, Resource::Patient(_) | Resource::PatientDirectory)
            if matches!(action, Action::Read | Action::Search) =>
        {
            Decision::Allow {
                rule: "clinical_staff_demographics_read",
                purpose: PurposeOfUse::Treatment,
            }
        }
        // Those who answer for the audit trail, and the administrator who sets up an
        // outside witness, may follow its checkpoints.
        (
            Role::Auditor | Role::PrivacyOfficer | Role::Administrator,
            Resource::AuditCheckpoints,
        ) if action == Action::Read => Decision::Allow {
            rule: "audit_oversight",
            purpose: PurposeOfUse::Compliance,
        },
        // The whole log, with who looked at whom, is for those who review access: the
        // administrator runs the system but does not audit its users.
        (Role::Auditor | Role::PrivacyOfficer, Resource::AuditLog)
            if matches!(action, Action::Read | Action::Search) =>
        {
            Decision::Allow {
                rule: "audit_review",
                purpose: PurposeOfUse::Compliance,
            }
        }
        // A patient sees their own record and who accessed it (HIPAA right of access; ONC
        // (d)(2) accounting of disclosures) — and only their own.
        (Role::Patient, Resource::Patient(id) | Resource::PatientAccessLog(id))
            if action == Action::Read =>
        {
            if actor.patient == Some(*id) {
                Decision::Allow {
                    rule: "patient_own_record",
                    purpose: PurposeOfUse::PatientRequest,
                }
            } else {
                Decision::Deny(DenyReason::NotTheirRecord)
            }
        }
        // Reviewers may read any patient's access log, as part of the whole log.
        (Role::Auditor | Role::PrivacyOfficer, Resource::PatientAccessLog(_))
            if action == Action::Read =>
        {
            Decision::Allow {
                rule: "audit_review",
                purpose: PurposeOfUse::Compliance,
            }
        }
        // Administrators run the organisation's accounts: invitations, roles.
        (Role::Administrator, Resource::Users)
            if matches!(action, Action::Read | Action::Create | Action::Update) =>
        {
            Decision::Allow {
                rule: "user_administration",
                purpose: PurposeOfUse::SystemAdministration,
            }
        }
        // Auditors and privacy officers review the audit log, not the chart.
        _ => Decision::Deny(DenyReason::RoleNotPermitted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(role: Role) -> Actor {
        Actor {
            principal: Principal::ApiToken(TokenId::generate()),
            role,
            organisation: None,
            patient: None,
        }
    }

    #[test]
    fn a_patient_reads_only_their_own_record_and_access_log() {
        let own = PatientId::generate();
        let other = PatientId::generate();
        let patient = Actor {
            patient: Some(own),
            ..actor(Role::Patient)
        };
        for resource in [Resource::Patient(own), Resource::PatientAccessLog(own)] {
            assert!(decide(&patient, Action::Read, &resource).is_allowed());
            assert!(!decide(&patient, Action::Update, &resource).is_allowed());
        }
        for resource in [Resource::Patient(other), Resource::PatientAccessLog(other)] {
            assert_eq!(
                decide(&patient, Action::Read, &resource),
                Decision::Deny(DenyReason::NotTheirRecord)
            );
        }
        // A patient-role actor linked to no record sees nothing.
        assert!(!decide(&actor(Role::Patient), Action::Read, &Resource::Patient(own)).is_allowed());
        assert!(!decide(&patient, Action::Search, &Resource::PatientDirectory).is_allowed());
    }

    #[test]
    fn staff_other_than_reviewers_do_not_read_a_patients_access_log() {
        let resource = Resource::PatientAccessLog(PatientId::generate());
        for role in [Role::Auditor, Role::PrivacyOfficer] {
            assert!(decide(&actor(role), Action::Read, &resource).is_allowed());
        }
        for role in [
            Role::Administrator,
            Role::Clinician,
            Role::Nurse,
            Role::FrontDesk,
        ] {
            assert!(!decide(&actor(role), Action::Read, &resource).is_allowed());
        }
    }

    #[test]
    fn administrators_and_front_desk_manage_demographics() {
        for role in [Role::Administrator, Role::FrontDesk] {
            for action in [Action::Read, Action::Search, Action::Create, Action::Update] {
                let resource = Resource::Patient(PatientId::generate());
                assert!(decide(&actor(role), action, &resource).is_allowed());
            }
        }
    }

    #[test]
    fn clinical_staff_read_but_do_not_register() {
        let resource = Resource::Patient(PatientId::generate());
        assert!(decide(&actor(Role::Nurse), Action::Read, &resource).is_allowed());
        assert_eq!(
            decide(&actor(Role::Clinician), Action::Create, &resource),
            Decision::Deny(DenyReason::RoleNotPermitted)
        );
    }

    #[test]
    fn audit_checkpoints_are_for_oversight_roles() {
        for role in [Role::Auditor, Role::PrivacyOfficer, Role::Administrator] {
            assert!(decide(&actor(role), Action::Read, &Resource::AuditCheckpoints).is_allowed());
            assert!(
                !decide(&actor(role), Action::Update, &Resource::AuditCheckpoints).is_allowed()
            );
        }
        for role in [Role::Patient, Role::Clinician, Role::Nurse, Role::FrontDesk] {
            assert!(!decide(&actor(role), Action::Read, &Resource::AuditCheckpoints).is_allowed());
        }
    }

    #[test]
    fn only_reviewers_query_the_whole_audit_log() {
        for role in [Role::Auditor, Role::PrivacyOfficer] {
            assert!(decide(&actor(role), Action::Search, &Resource::AuditLog).is_allowed());
        }
        for role in [
            Role::Administrator,
            Role::Clinician,
            Role::Nurse,
            Role::FrontDesk,
            Role::Patient,
        ] {
            assert!(!decide(&actor(role), Action::Search, &Resource::AuditLog).is_allowed());
        }
    }

    #[test]
    fn only_administrators_manage_users() {
        assert!(
            decide(
                &actor(Role::Administrator),
                Action::Create,
                &Resource::Users
            )
            .is_allowed()
        );
        for role in Role::ALL.into_iter().filter(|r| *r != Role::Administrator) {
            assert!(!decide(&actor(role), Action::Create, &Resource::Users).is_allowed());
        }
    }

    #[test]
    fn everything_else_is_denied_by_default() {
        for role in [Role::Patient, Role::Auditor, Role::PrivacyOfficer] {
            for action in [Action::Read, Action::Search, Action::Create, Action::Update] {
                let decision = decide(&actor(role), action, &Resource::PatientDirectory);
                assert_eq!(decision.reason(), "role_not_permitted");
            }
        }
    }
}
