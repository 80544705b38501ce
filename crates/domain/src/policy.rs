//! The one policy decision function. Every access in Haven is decided here, with a reason
//! that goes into the audit trail; anything not explicitly allowed is denied.
//!
//! `decide(actor, action, resource, context)` is pure. The [`Context`] carries the facts
//! about the actor's relationship to the patient that the caller looked up beforehand (is
//! the actor on the patient's care team, do they hold a break-the-glass grant), so the rules
//! stay in one place and the lookup stays in the application. An allowed decision carries
//! [`Obligations`]: how much of the record may be shown ([`Mask`]) and whether the access
//! must wait in the privacy officer's review queue.
//!
//! A proxy's delegation (a parent, guardian or caregiver acting for a patient, within the
//! scopes the patient or the front desk granted) is one more fact of the [`Context`];
//! consent will be another, here, rather than checks scattered across handlers.

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
    Delete,
    /// Emergency access to a record outside the actor's care relationships.
    BreakGlass,
    /// A copy of a whole chart taken out (`Patient/$everything`, the right of access).
    Export,
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
    /// The staff on one patient's care team (FHIR `CareTeam`): who may open their record.
    CareTeam(PatientId),
    /// The break-the-glass accesses of an organisation and their review.
    BreakGlassReviews,
    /// The proxy delegations one patient has granted (parent, guardian, caregiver).
    Delegations(PatientId),
    /// Accepting a delegation offered by link: the caller becomes the proxy.
    DelegationOffer,
    /// One part of a patient's chart (FHIR resources in the patient's compartment).
    Chart(PatientId, ChartPart),
    /// The shared directory: practitioners, their roles, organisations, questionnaires.
    Directory,
    /// A patient's secure conversation with their care team: taking part means reading
    /// and writing its end-to-end sealed messages.
    Conversation(PatientId),
    /// A conversation within an organisation's clinical staff, about no one patient.
    TeamConversation,
    /// The end-to-end device keys of people: one's own to add and remove, one's
    /// correspondents' to read.
    DeviceKeys,
    /// A video visit with a patient: joining its call (`Create`), and for its clinicians
    /// admitting, declining and ending (`Update`).
    Visit(PatientId),
}

/// Which part of the chart a resource is, for minimum necessary: the front desk books
/// visits but does not read results, and a patient writes their own intake forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartPart {
    /// Diagnoses, results, medications, notes: the clinical record.
    Clinical,
    /// Appointments: booked by the front desk, seen by the care team and the patient.
    Scheduling,
    /// What the patient tells the clinic themselves (intake forms, questionnaires).
    PatientAuthored,
    /// A result the organisation's release policy holds back from the patient until a
    /// clinician has reviewed it: clinical record for the care team, not yet the patient's
    /// to read.
    HeldResult,
}

impl Resource {
    pub fn patient(&self) -> Option<PatientId> {
        match self {
            Resource::Patient(id)
            | Resource::PatientAccessLog(id)
            | Resource::CareTeam(id)
            | Resource::Delegations(id)
            | Resource::Conversation(id)
            | Resource::Visit(id)
            | Resource::Chart(id, _) => Some(*id),
            Resource::PatientDirectory
            | Resource::Directory
            | Resource::AuditCheckpoints
            | Resource::AuditLog
            | Resource::Users
            | Resource::BreakGlassReviews
            | Resource::DelegationOffer
            | Resource::TeamConversation
            | Resource::DeviceKeys => None,
        }
    }
}

/// What the caller knows about the actor's relationship to the resource's patient. Looked
/// up only where a rule depends on it (clinical staff and a patient's record); the default
/// is "no relationship", so a lookup that was skipped can only deny.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Context {
    /// The actor is a member of the patient's care team.
    pub care_team: bool,
    /// The actor holds an unexpired break-the-glass grant for the patient.
    pub break_glass: bool,
    /// The actor is the patient's proxy, by an accepted, unexpired delegation with these
    /// scopes.
    pub proxy: Option<ProxyScopes>,
}

/// What a proxy may see of the patient they act for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyScopes {
    /// The record itself (today: demographics and the care team).
    pub record: bool,
    /// Who accessed the record.
    pub access_log: bool,
}

impl ProxyScopes {
    /// The names used on the wire and in storage.
    pub const NAMES: [&'static str; 2] = ["record", "access_log"];

    /// Parses a list of scope names; an unknown name is an error, so a typo never grants
    /// less (or more) than meant.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut scopes = ProxyScopes::default();
        for name in names {
            match name.trim() {
                "record" => scopes.record = true,
                "access_log" => scopes.access_log = true,
                other => return Err(format!("unknown scope `{other}`")),
            }
        }
        Ok(scopes)
    }

    pub fn names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.record {
            names.push("record");
        }
        if self.access_log {
            names.push("access_log");
        }
        names
    }

    pub fn is_empty(self) -> bool {
        !self.record && !self.access_log
    }
}

/// Why an access was denied, recorded in the audit trail and reported to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The role has no permission for this action on this kind of resource.
    RoleNotPermitted,
    /// A patient asked for a record that is not theirs.
    NotTheirRecord,
    /// Clinical staff asked for a record of a patient they do not care for; break-the-glass
    /// is the way in, in an emergency.
    NoCareRelationship,
    /// The action is a person's own (it carries their stated reason): an API token cannot.
    PersonalCredentialRequired,
    /// A patient (or their proxy) asked for a result that waits for a clinician's review
    /// before it is released to them.
    ResultNotReleased,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::RoleNotPermitted => "role_not_permitted",
            DenyReason::NotTheirRecord => "not_their_record",
            DenyReason::NoCareRelationship => "no_care_relationship",
            DenyReason::PersonalCredentialRequired => "personal_credential_required",
            DenyReason::ResultNotReleased => "result_not_released",
        }
    }
}

/// How much of a patient's record an allowed access may show (minimum necessary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    /// Everything the resource holds.
    None,
    /// Only what identifies the person (name and birth date): enough to pick the right
    /// patient from a list, nothing more.
    Identification,
}

/// What the application must do when it acts on an allowed decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Obligations {
    pub mask: Mask,
    /// The access waits in the privacy officer's review queue, and they are alerted.
    pub review: bool,
}

impl Obligations {
    pub const NONE: Obligations = Obligations {
        mask: Mask::None,
        review: false,
    };
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
    /// A family member or caregiver asking, as the patient's proxy (`FAMRQT`).
    FamilyRequest,
    /// Oversight of access: audit review, witnesses (`HCOMPL`).
    Compliance,
    /// Running the system itself: keys, tokens, configuration (`HSYSADMIN`).
    SystemAdministration,
    /// The clinic's operations, such as loading records kept elsewhere (`HOPERAT`).
    Operations,
}

impl PurposeOfUse {
    pub fn code(self) -> &'static str {
        match self {
            PurposeOfUse::Treatment => "TREAT",
            PurposeOfUse::EmergencyTreatment => "ETREAT",
            PurposeOfUse::PatientAdministration => "PATADMIN",
            PurposeOfUse::PatientRequest => "PATRQT",
            PurposeOfUse::FamilyRequest => "FAMRQT",
            PurposeOfUse::Compliance => "HCOMPL",
            PurposeOfUse::Operations => "HOPERAT",
            PurposeOfUse::SystemAdministration => "HSYSADMIN",
        }
    }
}

/// The outcome of [`decide`]: allowed with the rule that allowed it, the purpose it serves
/// and what must be done alongside, or denied with why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow {
        rule: &'static str,
        purpose: PurposeOfUse,
        obligations: Obligations,
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

    /// What an allowed access must do; a denial has nothing to do.
    pub fn obligations(&self) -> Option<Obligations> {
        match self {
            Decision::Allow { obligations, .. } => Some(*obligations),
            Decision::Deny(_) => None,
        }
    }
}

const fn allow(rule: &'static str, purpose: PurposeOfUse) -> Decision {
    Decision::Allow {
        rule,
        purpose,
        obligations: Obligations::NONE,
    }
}

/// Decides whether `actor` may perform `action` on `resource`, given what is known of their
/// relationship to its patient. Pure: same inputs, same answer.
pub fn decide(actor: &Actor, action: Action, resource: &Resource, context: &Context) -> Decision {
    use Action::*;
    use PurposeOfUse::*;
    match (actor.role, resource) {
        // Every person holds device keys of their own and reads those of the people they
        // write to. A key is a person's: an API token has none.
        (_, Resource::DeviceKeys) if matches!(action, Read | Create | Delete) => {
            match actor.principal {
                Principal::User { .. } => allow("device_keys", Operations),
                Principal::ApiToken(_) => Decision::Deny(DenyReason::PersonalCredentialRequired),
            }
        }
        // Registration and demographics are the work of the front desk and of the
        // administrator who runs the clinic's directory, and so is keeping each patient's
        // care team, which decides who may open the record.
        (
            Role::Administrator | Role::FrontDesk,
            Resource::Patient(_) | Resource::PatientDirectory,
        ) if action != BreakGlass => allow("demographics_staff", PatientAdministration),
        (Role::Administrator | Role::FrontDesk, Resource::CareTeam(_))
            if matches!(action, Read | Update | Delete) =>
        {
            allow("care_team_administration", PatientAdministration)
        }
        (Role::Clinician | Role::Nurse, resource) => {
            clinical_staff(actor, action, resource, context)
        }
        // Those who answer for the audit trail, and the administrator who sets up an
        // outside witness, may follow its checkpoints.
        (
            Role::Auditor | Role::PrivacyOfficer | Role::Administrator,
            Resource::AuditCheckpoints,
        ) if action == Read => allow("audit_oversight", Compliance),
        // The whole log, with who looked at whom, is for those who review access: the
        // administrator runs the system but does not audit its users.
        (Role::Auditor | Role::PrivacyOfficer, Resource::AuditLog)
            if matches!(action, Read | Search) =>
        {
            allow("audit_review", Compliance)
        }
        // Both reviewers see the break-the-glass queue; the privacy officer, who answers for
        // access to patients' records, closes its items.
        (Role::Auditor | Role::PrivacyOfficer, Resource::BreakGlassReviews)
            if matches!(action, Read | Search) =>
        {
            allow("audit_review", Compliance)
        }
        // A review is a person's judgement, signed with their name.
        (Role::PrivacyOfficer, Resource::BreakGlassReviews) if action == Update => {
            match actor.principal {
                Principal::User { .. } => allow("break_glass_review", Compliance),
                Principal::ApiToken(_) => Decision::Deny(DenyReason::PersonalCredentialRequired),
            }
        }
        // A patient sees their own record, who accessed it (HIPAA right of access; ONC
        // (d)(2) accounting of disclosures) and who is on their care team — and only their
        // own, or that of someone who made them their proxy, within the scopes granted.
        (
            Role::Patient,
            Resource::Patient(id) | Resource::PatientAccessLog(id) | Resource::CareTeam(id),
        ) if action == Read => {
            let scoped = match resource {
                Resource::PatientAccessLog(_) => context.proxy.is_some_and(|p| p.access_log),
                _ => context.proxy.is_some_and(|p| p.record),
            };
            if actor.patient == Some(*id) {
                allow("patient_own_record", PatientRequest)
            } else if scoped {
                allow("proxy_delegation", FamilyRequest)
            } else {
                Decision::Deny(DenyReason::NotTheirRecord)
            }
        }
        // Who may act for a patient is the patient's to decide, or the front desk's, who
        // checks a parent's or guardian's papers in person. A proxy cannot pass it on.
        (Role::Patient, Resource::Delegations(id)) if matches!(action, Read | Create | Delete) => {
            if actor.patient == Some(*id) {
                allow("patient_own_record", PatientRequest)
            } else {
                Decision::Deny(DenyReason::NotTheirRecord)
            }
        }
        (Role::Administrator | Role::FrontDesk, Resource::Delegations(_))
            if matches!(action, Read | Create | Delete) =>
        {
            allow("delegation_administration", PatientAdministration)
        }
        // Accepting an offered delegation makes the caller a proxy: a person's own act.
        (Role::Patient, Resource::DelegationOffer) if action == Create => match actor.principal {
            Principal::User { .. } => allow("proxy_acceptance", FamilyRequest),
            Principal::ApiToken(_) => Decision::Deny(DenyReason::PersonalCredentialRequired),
        },
        // Reviewers may read any patient's access log, as part of the whole log.
        (Role::Auditor | Role::PrivacyOfficer, Resource::PatientAccessLog(_)) if action == Read => {
            allow("audit_review", Compliance)
        }
        // Administrators run the organisation's accounts: invitations, roles.
        (Role::Administrator, Resource::Users) if matches!(action, Read | Create | Update) => {
            allow("user_administration", SystemAdministration)
        }
        (Role::Patient, Resource::Chart(id, part)) => {
            patient_chart(actor, action, *id, *part, context)
        }
        // An interface or a migration adds patients and what their charts hold, written
        // elsewhere; it reads no patient's data back. Only a token: no person signs in as a system.
        (Role::Integration, Resource::Patient(_) | Resource::Chart(..)) if action == Create => {
            match actor.principal {
                Principal::ApiToken(_) => allow("records_import", Operations),
                Principal::User { .. } => Decision::Deny(DenyReason::RoleNotPermitted),
            }
        }
        // The front desk books and changes visits; the clinical record is not theirs to see.
        (Role::FrontDesk | Role::Administrator, Resource::Chart(_, ChartPart::Scheduling))
            if action != BreakGlass =>
        {
            allow("scheduling_staff", PatientAdministration)
        }
        // The directory (who works here, which forms exist) is open to everyone signed in;
        // administrators keep it.
        (_, Resource::Directory) if matches!(action, Read | Search) => {
            allow("directory", PatientAdministration)
        }
        (Role::Administrator, Resource::Directory)
            if matches!(action, Create | Update | Delete) =>
        {
            allow("directory_administration", SystemAdministration)
        }
        // A patient writes to their own care team. Proxies do not yet: a conversation's
        // participants are decided one person at a time, and a delegation says nothing about
        // messages.
        (Role::Patient, Resource::Conversation(id)) if matches!(action, Read | Create) => {
            if actor.patient == Some(*id) {
                allow("patient_own_record", PatientRequest)
            } else {
                Decision::Deny(DenyReason::NotTheirRecord)
            }
        }
        // A patient joins their own visits and waits to be admitted. Proxies do not yet: a
        // clinician invites a relative as a guest of the one visit instead.
        (Role::Patient, Resource::Visit(id)) if matches!(action, Read | Create) => {
            if actor.patient == Some(*id) {
                allow("patient_own_record", PatientRequest)
            } else {
                Decision::Deny(DenyReason::NotTheirRecord)
            }
        }
        // Auditors and privacy officers review the audit log, not the chart.
        _ => Decision::Deny(DenyReason::RoleNotPermitted),
    }
}

/// A patient reads their whole chart and writes what is theirs to write (intake forms,
/// questionnaires); a proxy reads it within the delegation's `record` scope.
fn patient_chart(
    actor: &Actor,
    action: Action,
    patient: PatientId,
    part: ChartPart,
    context: &Context,
) -> Decision {
    use Action::*;
    use PurposeOfUse::*;
    let own = actor.patient == Some(patient);
    let proxy = context.proxy.is_some_and(|p| p.record);
    match action {
        // Held back until a clinician has reviewed it, whoever asks on the patient's side.
        _ if (own || proxy) && part == ChartPart::HeldResult => {
            Decision::Deny(DenyReason::ResultNotReleased)
        }
        Read | Search | Export if own => allow("patient_own_record", PatientRequest),
        Read | Search | Export if proxy => allow("proxy_delegation", FamilyRequest),
        // A patient adds what they author; changing what is in their chart (possibly
        // written by staff) is not theirs to do.
        Create if own && part == ChartPart::PatientAuthored => {
            allow("patient_own_record", PatientRequest)
        }
        _ if own || proxy => Decision::Deny(DenyReason::RoleNotPermitted),
        _ => Decision::Deny(DenyReason::NotTheirRecord),
    }
}

/// Clinicians and nurses: a record is open to the patient's care team, and to anyone who
/// broke the glass for it; the directory shows everyone else only enough to identify them.
fn clinical_staff(
    actor: &Actor,
    action: Action,
    resource: &Resource,
    context: &Context,
) -> Decision {
    use Action::*;
    use PurposeOfUse::*;
    match (action, resource) {
        (Read | Search, Resource::Patient(_) | Resource::CareTeam(_)) if context.care_team => {
            allow("care_team", Treatment)
        }
        // The care team keeps the chart; a clinician who broke the glass may write what the
        // emergency needs, under the same review.
        (Read | Search | Create | Update | Export, Resource::Chart(..)) if context.care_team => {
            allow("care_team", Treatment)
        }
        // Removing an entry (rather than marking it entered-in-error) is a clinician's call.
        (Delete, Resource::Chart(..))
            if context.care_team && actor.role == crate::Role::Clinician =>
        {
            allow("care_team", Treatment)
        }
        (Read | Search | Create | Update, Resource::Chart(..)) if context.break_glass => {
            allow("break_glass", EmergencyTreatment)
        }
        // The care team talks with the patient and among itself, and decides who else of
        // the team joins (`Update`). Break-the-glass opens a record in an emergency; it does
        // not make its holder one of the patient's correspondents.
        (Read | Create | Update, Resource::Conversation(_)) if context.care_team => {
            allow("care_team", Treatment)
        }
        (Read | Create | Update, Resource::Conversation(_)) => {
            Decision::Deny(DenyReason::NoCareRelationship)
        }
        // The care team holds the patient's visits: joins them at once, admits the patient
        // and guests, ends them. Break-the-glass reads a record; it does not open a call.
        (Read | Create | Update, Resource::Visit(_)) if context.care_team => {
            allow("care_team", Treatment)
        }
        (Read | Create | Update, Resource::Visit(_)) => {
            Decision::Deny(DenyReason::NoCareRelationship)
        }
        (Read | Create | Update, Resource::TeamConversation) => {
            allow("care_team_conversation", Treatment)
        }
        (Read | Search, Resource::Patient(_) | Resource::CareTeam(_)) if context.break_glass => {
            allow("break_glass", EmergencyTreatment)
        }
        // Finding a patient (to book them, to break the glass for them) shows who they are
        // and nothing of their record.
        (Search, Resource::PatientDirectory) => allow("patient_lookup", Treatment),
        (Read | Search, Resource::Directory) => allow("directory", PatientAdministration),
        (Search, Resource::Patient(_)) => Decision::Allow {
            rule: "patient_lookup",
            purpose: Treatment,
            obligations: Obligations {
                mask: Mask::Identification,
                review: false,
            },
        },
        (Read, Resource::Patient(_) | Resource::CareTeam(_)) => {
            Decision::Deny(DenyReason::NoCareRelationship)
        }
        (Read | Search | Create | Update | Delete | Export, Resource::Chart(..)) => {
            Decision::Deny(DenyReason::NoCareRelationship)
        }
        // Emergency access carries a person's stated reason and their accountability.
        (BreakGlass, Resource::Patient(_)) => match actor.principal {
            Principal::User { .. } => Decision::Allow {
                rule: "break_glass",
                purpose: EmergencyTreatment,
                obligations: Obligations {
                    mask: Mask::None,
                    review: true,
                },
            },
            Principal::ApiToken(_) => Decision::Deny(DenyReason::PersonalCredentialRequired),
        },
        _ => Decision::Deny(DenyReason::RoleNotPermitted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decision with no relationship to the patient.
    fn decide_alone(actor: &Actor, action: Action, resource: &Resource) -> Decision {
        decide(actor, action, resource, &Context::default())
    }

    fn user(role: Role) -> Actor {
        Actor {
            principal: Principal::User {
                user: UserId::generate(),
                session: SessionId::generate(),
            },
            ..actor(role)
        }
    }

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
            assert!(decide_alone(&patient, Action::Read, &resource).is_allowed());
            assert!(!decide_alone(&patient, Action::Update, &resource).is_allowed());
        }
        for resource in [Resource::Patient(other), Resource::PatientAccessLog(other)] {
            assert_eq!(
                decide_alone(&patient, Action::Read, &resource),
                Decision::Deny(DenyReason::NotTheirRecord)
            );
        }
        // A patient-role actor linked to no record sees nothing.
        assert!(
            !decide_alone(&actor(Role::Patient), Action::Read, &Resource::Patient(own))
                .is_allowed()
        );
        assert!(!decide_alone(&patient, Action::Search, &Resource::PatientDirectory).is_allowed());
    }

    #[test]
    fn a_held_result_is_the_care_teams_to_read_and_not_yet_the_patients() {
        let own = PatientId::generate();
        let held = Resource::Chart(own, ChartPart::HeldResult);
        let patient = Actor {
            patient: Some(own),
            ..user(Role::Patient)
        };
        let as_proxy = Context {
            proxy: Some(ProxyScopes {
                record: true,
                access_log: false,
            }),
            ..Context::default()
        };
        for action in [Action::Read, Action::Search, Action::Export, Action::Update] {
            assert_eq!(
                decide_alone(&patient, action, &held),
                Decision::Deny(DenyReason::ResultNotReleased),
                "{action:?}"
            );
            assert_eq!(
                decide(&user(Role::Patient), action, &held, &as_proxy),
                Decision::Deny(DenyReason::ResultNotReleased),
                "{action:?} as a proxy"
            );
        }
        // The same result, released, is theirs to read.
        let released = Resource::Chart(own, ChartPart::Clinical);
        assert!(decide_alone(&patient, Action::Read, &released).is_allowed());
        // A stranger learns nothing about the result's state: refused as any other record.
        let stranger = Actor {
            patient: Some(PatientId::generate()),
            ..user(Role::Patient)
        };
        assert_eq!(
            decide_alone(&stranger, Action::Read, &held),
            Decision::Deny(DenyReason::NotTheirRecord)
        );
        let on_team = Context {
            care_team: true,
            ..Context::default()
        };
        for role in [Role::Clinician, Role::Nurse] {
            assert_eq!(
                decide(&user(role), Action::Read, &held, &on_team).reason(),
                "care_team"
            );
        }
        assert!(!decide_alone(&user(Role::FrontDesk), Action::Read, &held).is_allowed());
    }

    #[test]
    fn staff_other_than_reviewers_do_not_read_a_patients_access_log() {
        let resource = Resource::PatientAccessLog(PatientId::generate());
        for role in [Role::Auditor, Role::PrivacyOfficer] {
            assert!(decide_alone(&actor(role), Action::Read, &resource).is_allowed());
        }
        for role in [
            Role::Administrator,
            Role::Clinician,
            Role::Nurse,
            Role::FrontDesk,
        ] {
            assert!(!decide_alone(&actor(role), Action::Read, &resource).is_allowed());
        }
    }

    #[test]
    fn administrators_and_front_desk_manage_demographics() {
        for role in [Role::Administrator, Role::FrontDesk] {
            for action in [Action::Read, Action::Search, Action::Create, Action::Update] {
                let resource = Resource::Patient(PatientId::generate());
                assert!(decide_alone(&actor(role), action, &resource).is_allowed());
            }
        }
    }

    #[test]
    fn a_conversation_is_between_a_patient_and_their_care_team() {
        let patient_id = PatientId::generate();
        let conversation = Resource::Conversation(patient_id);
        let patient = Actor {
            patient: Some(patient_id),
            ..user(Role::Patient)
        };
        let someone_else = Actor {
            patient: Some(PatientId::generate()),
            ..user(Role::Patient)
        };
        let on_team = Context {
            care_team: true,
            ..Context::default()
        };
        let glass = Context {
            break_glass: true,
            ..Context::default()
        };
        let proxy = Context {
            proxy: Some(ProxyScopes {
                record: true,
                access_log: true,
            }),
            ..Context::default()
        };
        for action in [Action::Read, Action::Create] {
            assert!(decide_alone(&patient, action, &conversation).is_allowed());
            assert_eq!(
                decide(&someone_else, action, &conversation, &proxy),
                Decision::Deny(DenyReason::NotTheirRecord)
            );
            for role in [Role::Clinician, Role::Nurse] {
                assert_eq!(
                    decide(&user(role), action, &conversation, &on_team).reason(),
                    "care_team"
                );
                assert_eq!(
                    decide(&user(role), action, &conversation, &glass),
                    Decision::Deny(DenyReason::NoCareRelationship)
                );
                assert!(
                    decide_alone(&user(role), action, &Resource::TeamConversation).is_allowed()
                );
            }
            for role in [
                Role::FrontDesk,
                Role::Administrator,
                Role::PrivacyOfficer,
                Role::Auditor,
            ] {
                assert!(!decide(&user(role), action, &conversation, &on_team).is_allowed());
                assert!(
                    !decide_alone(&user(role), action, &Resource::TeamConversation).is_allowed()
                );
            }
            assert!(!decide_alone(&patient, action, &Resource::TeamConversation).is_allowed());
        }
        assert!(!decide(&patient, Action::Delete, &conversation, &on_team).is_allowed());
        // Who takes part is the care team's to change, not the patient's.
        assert!(!decide_alone(&patient, Action::Update, &conversation).is_allowed());
        assert!(decide(&user(Role::Nurse), Action::Update, &conversation, &on_team).is_allowed());
    }

    #[test]
    fn a_visit_is_joined_by_its_patient_and_held_by_the_care_team() {
        let patient_id = PatientId::generate();
        let visit = Resource::Visit(patient_id);
        let patient = Actor {
            patient: Some(patient_id),
            ..user(Role::Patient)
        };
        let someone_else = Actor {
            patient: Some(PatientId::generate()),
            ..user(Role::Patient)
        };
        let on_team = Context {
            care_team: true,
            ..Context::default()
        };
        let glass = Context {
            break_glass: true,
            ..Context::default()
        };
        for action in [Action::Read, Action::Create] {
            assert!(decide_alone(&patient, action, &visit).is_allowed());
            assert_eq!(
                decide_alone(&someone_else, action, &visit),
                Decision::Deny(DenyReason::NotTheirRecord)
            );
        }
        // Admitting and ending are the clinicians'.
        assert!(!decide_alone(&patient, Action::Update, &visit).is_allowed());
        for role in [Role::Clinician, Role::Nurse] {
            for action in [Action::Read, Action::Create, Action::Update] {
                assert!(decide(&user(role), action, &visit, &on_team).is_allowed());
                assert_eq!(
                    decide(&user(role), action, &visit, &glass),
                    Decision::Deny(DenyReason::NoCareRelationship)
                );
            }
        }
        for role in [
            Role::FrontDesk,
            Role::Administrator,
            Role::PrivacyOfficer,
            Role::Auditor,
            Role::Integration,
        ] {
            for action in [Action::Read, Action::Create, Action::Update] {
                assert!(!decide(&user(role), action, &visit, &on_team).is_allowed());
            }
        }
    }

    #[test]
    fn device_keys_belong_to_people_not_tokens() {
        for role in [Role::Patient, Role::Clinician, Role::Administrator] {
            for action in [Action::Read, Action::Create, Action::Delete] {
                assert!(decide_alone(&user(role), action, &Resource::DeviceKeys).is_allowed());
                assert_eq!(
                    decide_alone(&actor(role), action, &Resource::DeviceKeys),
                    Decision::Deny(DenyReason::PersonalCredentialRequired)
                );
            }
        }
    }

    #[test]
    fn clinical_staff_read_the_records_of_their_care_team_and_do_not_register() {
        let resource = Resource::Patient(PatientId::generate());
        let on_team = Context {
            care_team: true,
            ..Context::default()
        };
        for role in [Role::Clinician, Role::Nurse] {
            let decision = decide(&user(role), Action::Read, &resource, &on_team);
            assert_eq!(decision.reason(), "care_team");
            assert_eq!(decision.purpose(), Some(PurposeOfUse::Treatment));
            assert_eq!(decision.obligations(), Some(Obligations::NONE));
            assert_eq!(
                decide_alone(&user(role), Action::Read, &resource),
                Decision::Deny(DenyReason::NoCareRelationship)
            );
            for action in [Action::Create, Action::Update, Action::Delete] {
                assert_eq!(
                    decide(&user(role), action, &resource, &on_team),
                    Decision::Deny(DenyReason::RoleNotPermitted)
                );
            }
        }
    }

    #[test]
    fn a_directory_search_shows_strangers_only_enough_to_identify_them() {
        let clinician = user(Role::Clinician);
        assert!(decide_alone(&clinician, Action::Search, &Resource::PatientDirectory).is_allowed());
        let stranger = decide_alone(
            &clinician,
            Action::Search,
            &Resource::Patient(PatientId::generate()),
        );
        assert_eq!(
            stranger.obligations().map(|o| o.mask),
            Some(Mask::Identification)
        );
        let own = decide(
            &clinician,
            Action::Search,
            &Resource::Patient(PatientId::generate()),
            &Context {
                care_team: true,
                ..Context::default()
            },
        );
        assert_eq!(own.obligations().map(|o| o.mask), Some(Mask::None));
        // The front desk registers patients: it sees their demographics in full.
        let desk = decide_alone(
            &user(Role::FrontDesk),
            Action::Search,
            &Resource::Patient(PatientId::generate()),
        );
        assert_eq!(desk.obligations().map(|o| o.mask), Some(Mask::None));
    }

    #[test]
    fn breaking_the_glass_is_for_clinical_staff_in_person_and_is_reviewed() {
        let resource = Resource::Patient(PatientId::generate());
        for role in [Role::Clinician, Role::Nurse] {
            let decision = decide_alone(&user(role), Action::BreakGlass, &resource);
            assert_eq!(decision.reason(), "break_glass");
            assert_eq!(decision.purpose(), Some(PurposeOfUse::EmergencyTreatment));
            assert_eq!(decision.obligations().map(|o| o.review), Some(true));
            assert_eq!(
                decide_alone(&actor(role), Action::BreakGlass, &resource),
                Decision::Deny(DenyReason::PersonalCredentialRequired)
            );
        }
        for role in Role::ALL
            .into_iter()
            .filter(|r| !matches!(r, Role::Clinician | Role::Nurse))
        {
            assert!(!decide_alone(&user(role), Action::BreakGlass, &resource).is_allowed());
        }
        // Once granted, the record opens as emergency treatment, and only that record.
        let glass = Context {
            break_glass: true,
            ..Context::default()
        };
        let read = decide(&user(Role::Clinician), Action::Read, &resource, &glass);
        assert_eq!(read.reason(), "break_glass");
        assert_eq!(read.purpose(), Some(PurposeOfUse::EmergencyTreatment));
        assert!(!decide(&user(Role::Clinician), Action::Update, &resource, &glass).is_allowed());
        assert!(
            !decide(
                &user(Role::FrontDesk),
                Action::Read,
                &Resource::AuditLog,
                &glass
            )
            .is_allowed()
        );
    }

    #[test]
    fn care_teams_are_kept_by_the_front_desk_and_seen_by_the_team_and_the_patient() {
        let patient = PatientId::generate();
        let resource = Resource::CareTeam(patient);
        for role in [Role::Administrator, Role::FrontDesk] {
            for action in [Action::Read, Action::Update, Action::Delete] {
                assert!(decide_alone(&user(role), action, &resource).is_allowed());
            }
        }
        let on_team = Context {
            care_team: true,
            ..Context::default()
        };
        assert!(decide(&user(Role::Nurse), Action::Read, &resource, &on_team).is_allowed());
        assert!(!decide(&user(Role::Nurse), Action::Update, &resource, &on_team).is_allowed());
        assert!(!decide_alone(&user(Role::Nurse), Action::Read, &resource).is_allowed());
        let own = Actor {
            patient: Some(patient),
            ..user(Role::Patient)
        };
        assert!(decide_alone(&own, Action::Read, &resource).is_allowed());
        assert!(!decide_alone(&own, Action::Update, &resource).is_allowed());
        for role in [Role::Auditor, Role::PrivacyOfficer] {
            assert!(!decide_alone(&user(role), Action::Read, &resource).is_allowed());
        }
    }

    #[test]
    fn a_proxy_sees_what_the_delegation_scopes_and_nothing_else() {
        let child = PatientId::generate();
        let parent = user(Role::Patient);
        let record_only = Context {
            proxy: Some(ProxyScopes {
                record: true,
                access_log: false,
            }),
            ..Context::default()
        };
        let read = decide(
            &parent,
            Action::Read,
            &Resource::Patient(child),
            &record_only,
        );
        assert_eq!(read.reason(), "proxy_delegation");
        assert_eq!(read.purpose(), Some(PurposeOfUse::FamilyRequest));
        assert!(
            decide(
                &parent,
                Action::Read,
                &Resource::CareTeam(child),
                &record_only
            )
            .is_allowed()
        );
        assert_eq!(
            decide(
                &parent,
                Action::Read,
                &Resource::PatientAccessLog(child),
                &record_only
            ),
            Decision::Deny(DenyReason::NotTheirRecord)
        );
        assert!(
            !decide(
                &parent,
                Action::Update,
                &Resource::Patient(child),
                &record_only
            )
            .is_allowed()
        );
        // A proxy cannot hand the access on.
        assert!(
            !decide(
                &parent,
                Action::Create,
                &Resource::Delegations(child),
                &record_only
            )
            .is_allowed()
        );
        // Without the delegation, nothing.
        assert!(!decide_alone(&parent, Action::Read, &Resource::Patient(child)).is_allowed());
        // A delegation is a patient's, never a clinician's, way in.
        assert!(
            !decide(
                &user(Role::Nurse),
                Action::Read,
                &Resource::Patient(child),
                &record_only
            )
            .is_allowed()
        );
    }

    #[test]
    fn delegations_are_granted_by_the_patient_or_the_front_desk_and_accepted_in_person() {
        let patient = PatientId::generate();
        let own = Actor {
            patient: Some(patient),
            ..user(Role::Patient)
        };
        for action in [Action::Read, Action::Create, Action::Delete] {
            assert!(decide_alone(&own, action, &Resource::Delegations(patient)).is_allowed());
            assert!(
                decide_alone(
                    &user(Role::FrontDesk),
                    action,
                    &Resource::Delegations(patient)
                )
                .is_allowed()
            );
            assert!(
                !decide_alone(
                    &user(Role::Clinician),
                    action,
                    &Resource::Delegations(patient)
                )
                .is_allowed()
            );
        }
        assert!(
            !decide_alone(
                &own,
                Action::Read,
                &Resource::Delegations(PatientId::generate())
            )
            .is_allowed()
        );
        assert!(
            decide_alone(
                &user(Role::Patient),
                Action::Create,
                &Resource::DelegationOffer
            )
            .is_allowed()
        );
        assert_eq!(
            decide_alone(
                &actor(Role::Patient),
                Action::Create,
                &Resource::DelegationOffer
            ),
            Decision::Deny(DenyReason::PersonalCredentialRequired)
        );
        assert!(
            !decide_alone(
                &user(Role::Nurse),
                Action::Create,
                &Resource::DelegationOffer
            )
            .is_allowed()
        );
    }

    #[test]
    fn proxy_scopes_parse_strictly() {
        assert_eq!(
            ProxyScopes::parse(["record", "access_log"]),
            Ok(ProxyScopes {
                record: true,
                access_log: true
            })
        );
        assert!(ProxyScopes::parse(["records"]).is_err());
        assert!(ProxyScopes::parse([]).unwrap().is_empty());
        assert_eq!(
            ProxyScopes::parse(["access_log"]).unwrap().names(),
            ["access_log"]
        );
    }

    #[test]
    fn the_privacy_officer_reviews_break_glass_and_the_auditor_sees_the_queue() {
        let queue = Resource::BreakGlassReviews;
        for role in [Role::Auditor, Role::PrivacyOfficer] {
            assert!(decide_alone(&user(role), Action::Search, &queue).is_allowed());
        }
        assert!(decide_alone(&user(Role::PrivacyOfficer), Action::Update, &queue).is_allowed());
        assert_eq!(
            decide_alone(&actor(Role::PrivacyOfficer), Action::Update, &queue),
            Decision::Deny(DenyReason::PersonalCredentialRequired)
        );
        assert!(!decide_alone(&user(Role::Auditor), Action::Update, &queue).is_allowed());
        for role in [
            Role::Administrator,
            Role::Clinician,
            Role::Nurse,
            Role::FrontDesk,
            Role::Patient,
        ] {
            assert!(!decide_alone(&user(role), Action::Search, &queue).is_allowed());
        }
    }

    #[test]
    fn audit_checkpoints_are_for_oversight_roles() {
        for role in [Role::Auditor, Role::PrivacyOfficer, Role::Administrator] {
            assert!(
                decide_alone(&actor(role), Action::Read, &Resource::AuditCheckpoints).is_allowed()
            );
            assert!(
                !decide_alone(&actor(role), Action::Update, &Resource::AuditCheckpoints)
                    .is_allowed()
            );
        }
        for role in [Role::Patient, Role::Clinician, Role::Nurse, Role::FrontDesk] {
            assert!(
                !decide_alone(&actor(role), Action::Read, &Resource::AuditCheckpoints).is_allowed()
            );
        }
    }

    #[test]
    fn only_reviewers_query_the_whole_audit_log() {
        for role in [Role::Auditor, Role::PrivacyOfficer] {
            assert!(decide_alone(&actor(role), Action::Search, &Resource::AuditLog).is_allowed());
        }
        for role in [
            Role::Administrator,
            Role::Clinician,
            Role::Nurse,
            Role::FrontDesk,
            Role::Patient,
        ] {
            assert!(!decide_alone(&actor(role), Action::Search, &Resource::AuditLog).is_allowed());
        }
    }

    #[test]
    fn only_administrators_manage_users() {
        assert!(
            decide_alone(
                &actor(Role::Administrator),
                Action::Create,
                &Resource::Users
            )
            .is_allowed()
        );
        for role in Role::ALL.into_iter().filter(|r| *r != Role::Administrator) {
            assert!(!decide_alone(&actor(role), Action::Create, &Resource::Users).is_allowed());
        }
    }

    #[test]
    fn everything_else_is_denied_by_default() {
        for role in [Role::Patient, Role::Auditor, Role::PrivacyOfficer] {
            for action in [Action::Read, Action::Search, Action::Create, Action::Update] {
                let decision = decide_alone(&actor(role), action, &Resource::PatientDirectory);
                assert_eq!(decision.reason(), "role_not_permitted");
            }
        }
    }

    #[test]
    fn an_integration_token_adds_records_and_reads_no_patients_data() {
        let patient = PatientId::generate();
        let integration = actor(Role::Integration);
        let writes = [
            Resource::Patient(patient),
            Resource::Chart(patient, ChartPart::Clinical),
            Resource::Chart(patient, ChartPart::Scheduling),
            Resource::Chart(patient, ChartPart::PatientAuthored),
            Resource::Chart(patient, ChartPart::HeldResult),
        ];
        for resource in writes {
            let decision = decide_alone(&integration, Action::Create, &resource);
            assert_eq!(decision.reason(), "records_import", "{resource:?}");
            for action in [
                Action::Read,
                Action::Search,
                Action::Update,
                Action::Delete,
                Action::Export,
                Action::BreakGlass,
            ] {
                assert!(
                    !decide_alone(&integration, action, &resource).is_allowed(),
                    "{action:?} {resource:?}"
                );
            }
            // A person holding the role is refused: it is for systems.
            assert!(
                !decide_alone(&user(Role::Integration), Action::Create, &resource).is_allowed()
            );
        }
        // The shared directory (who works here, which forms exist) is read by everyone
        // signed in and holds no patient's data; it is kept by administrators.
        assert!(decide_alone(&integration, Action::Read, &Resource::Directory).is_allowed());
        assert!(!decide_alone(&integration, Action::Create, &Resource::Directory).is_allowed());
        for resource in [
            Resource::PatientDirectory,
            Resource::AuditLog,
            Resource::Users,
            Resource::CareTeam(patient),
            Resource::PatientAccessLog(patient),
        ] {
            for action in [Action::Read, Action::Search, Action::Create] {
                assert!(
                    !decide_alone(&integration, action, &resource).is_allowed(),
                    "{action:?} {resource:?}"
                );
            }
        }
    }
}
