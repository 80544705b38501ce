//! The access gate: the only way to open sealed health data.
//!
//! `authorize` asks the policy function, appends the decision to the audit log and waits
//! until the entry is durable, and only then issues a [`Grant`]. If the append fails, the
//! access is refused: no health data is opened without an audit entry (fail closed).
//!
//! A `Grant` can only be made here (its field is private to this module) and names the one
//! patient it covers and how much of their record it shows (the decision's [`Mask`]);
//! opening a subject key for any other patient fails. The gate is also the only holder of
//! the [`KeyProvider`], so no other code can unwrap a subject key at all.
//!
//! Before deciding about a patient for a signed-in clinician, nurse or patient, the gate
//! looks up the facts the policy needs (care-team membership, a live break-the-glass grant,
//! a proxy delegation) as a [`Context`]; for everyone else, and for a patient's own record,
//! the context stays empty and costs nothing.

use std::fmt;
use std::sync::Arc;

use haven_audit::{AuditAction, AuditEvent, AuditSink, Outcome};
use haven_crypto::{KeyMaterial, KeyProvider, SubjectKey, SubjectKeyId, WrappedKey};
use haven_domain::{
    Action, Actor, ChartPart, Context, Decision, Mask, PatientId, Principal, ProxyScopes, Resource,
    Role, UserId, decide,
};
use haven_store::{Store, StoredSubjectKey};

use crate::clock::Clock;
use crate::{AppError, AppResult, RequestContext};

/// Permission to open one patient's sealed data, issued after the access was audited.
#[derive(Debug)]
pub struct Grant {
    patient: PatientId,
    mask: Mask,
}

impl Grant {
    pub fn patient(&self) -> PatientId {
        self.patient
    }

    /// How much of the record the access may show.
    pub fn mask(&self) -> Mask {
        self.mask
    }
}

fn grant(patient: PatientId, decision: Decision) -> Option<Grant> {
    decision.obligations().map(|obligations| Grant {
        patient,
        mask: obligations.mask,
    })
}

/// How far a caller's access to one part of the chart reaches ([`AccessGate::chart_scope`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartScope {
    /// Every patient's, whatever the relationship.
    Everyone,
    /// Only patients the caller is related to, decided patient by patient.
    Related,
}

/// One access to a chart resource in a batch ([`AccessGate::authorize_chart_batch`]).
#[derive(Debug, Clone)]
pub struct ChartAccess {
    pub action: Action,
    /// The patient whose chart it is, or `None` when there is no such resource or patient.
    pub patient: Option<PatientId>,
    pub part: ChartPart,
    pub resource_type: &'static str,
    pub resource_id: Option<String>,
}

/// How an access to something other than a patient's demographics is named in the audit
/// trail.
#[derive(Debug, Clone)]
pub struct AuditedResource {
    pub resource: Resource,
    /// The patient the action concerns when the resource itself does not name one (a
    /// review of a break-the-glass access): recorded, and granted when allowed.
    pub patient: Option<PatientId>,
    /// The FHIR-style type recorded (`CareTeam`, `BreakGlass`).
    pub resource_type: &'static str,
    pub resource_id: Option<String>,
}

/// One step of a visit's guest, for [`AccessGate::record_guest_visit`].
#[derive(Debug, Clone)]
pub struct GuestStep {
    pub guest: haven_domain::GuestId,
    pub organisation: haven_domain::OrganisationId,
    pub origin: haven_audit::RequestOrigin,
    pub action: AuditAction,
    pub patient: PatientId,
    pub resource_id: String,
    pub allowed: bool,
}

pub struct AccessGate {
    keys: Arc<dyn KeyProvider>,
    audit: Arc<dyn AuditSink>,
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
}

impl fmt::Debug for AccessGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessGate")
            .field("keys", &self.keys)
            .field("audit", &self.audit)
            .finish()
    }
}

fn audit_action(action: Action) -> AuditAction {
    match action {
        Action::Read => AuditAction::Read,
        Action::Search => AuditAction::Search,
        Action::Create => AuditAction::Create,
        Action::Update => AuditAction::Update,
        Action::Delete => AuditAction::Delete,
        Action::BreakGlass => AuditAction::BreakGlass,
        Action::Export => AuditAction::Export,
    }
}

/// Whether a decision for this actor can depend on their relationship to a patient: only
/// signed-in people have one — clinical staff through care teams and break-the-glass
/// grants, patients as someone's proxy.
fn needs_relations(actor: &Actor) -> Option<UserId> {
    match (actor.role, actor.principal) {
        (Role::Clinician | Role::Nurse | Role::Patient, Principal::User { user, .. }) => Some(user),
        _ => None,
    }
}

/// The stored scopes of a delegation; ones that no longer parse grant nothing.
fn proxy_scopes(stored: Option<&str>) -> Option<ProxyScopes> {
    let scopes = ProxyScopes::parse(stored?.split(',')).ok()?;
    (!scopes.is_empty()).then_some(scopes)
}

impl AccessGate {
    pub fn new(
        keys: Arc<dyn KeyProvider>,
        audit: Arc<dyn AuditSink>,
        clock: Arc<dyn Clock>,
        store: Arc<dyn Store>,
    ) -> Self {
        Self {
            keys,
            audit,
            clock,
            store,
        }
    }

    /// The policy context of the actor for each of `patients`, in the same order.
    async fn contexts(&self, actor: &Actor, patients: &[PatientId]) -> AppResult<Vec<Context>> {
        let mut contexts = vec![Context::default(); patients.len()];
        let Some(user) = needs_relations(actor) else {
            return Ok(contexts);
        };
        // A patient's own record needs no relationship: nothing to look up.
        if patients.iter().all(|p| actor.patient == Some(*p)) {
            return Ok(contexts);
        }
        let now_ms = self.clock.now_ms();
        let chunk_len = haven_store::limits::RELATIONS_LOOKUP_MAX;
        for (chunk_index, chunk) in patients.chunks(chunk_len).enumerate() {
            for relation in self.store.relations(user, chunk, now_ms).await? {
                for (offset, patient) in chunk.iter().enumerate() {
                    if *patient == relation.patient {
                        contexts[chunk_index * chunk_len + offset] = Context {
                            care_team: relation.care_team,
                            break_glass: relation.break_glass,
                            proxy: proxy_scopes(relation.proxy_scopes.as_deref()),
                        };
                    }
                }
            }
        }
        Ok(contexts)
    }

    /// Decides about one resource, with the actor's relationship to its patient.
    async fn decide_with_context(
        &self,
        actor: &Actor,
        action: Action,
        resource: &Resource,
    ) -> AppResult<Decision> {
        let context = match resource.patient() {
            Some(patient) => self
                .contexts(actor, &[patient])
                .await?
                .pop()
                .unwrap_or_default(),
            None => Context::default(),
        };
        Ok(decide(actor, action, resource, &context))
    }

    fn event(
        &self,
        context: &RequestContext,
        action: Action,
        patient: Option<PatientId>,
        decision: Decision,
    ) -> AuditEvent {
        AuditEvent {
            at_ms: self.clock.now_ms(),
            actor: Some(context.actor.principal.actor_id()),
            role: Some(context.actor.role.as_str().to_owned()),
            organisation: context.actor.organisation.map(|o| o.to_string()),
            session: context.actor.principal.session().map(|s| s.to_string()),
            // No third-party apps yet: the SMART capability fills this in.
            client_app: None,
            action: audit_action(action),
            patient,
            resource_type: Some("Patient".to_owned()),
            resource_id: patient.map(|p| p.to_string()),
            outcome: if decision.is_allowed() {
                Outcome::Allowed
            } else {
                Outcome::Denied
            },
            reason: decision.reason().to_owned(),
            purpose_of_use: decision.purpose().map(|p| p.code().to_owned()),
            origin: context.origin.clone(),
        }
    }

    async fn append(&self, events: Vec<AuditEvent>) -> AppResult<()> {
        self.audit.append(events).await.map_err(|error| {
            tracing::error!(%error, "audit append failed; refusing access");
            AppError::AuditUnavailable
        })
    }

    /// Decides, audits, and on success grants access to one patient's data.
    pub async fn authorize(
        &self,
        context: &RequestContext,
        action: Action,
        patient: PatientId,
    ) -> AppResult<Grant> {
        let decision = self
            .decide_with_context(&context.actor, action, &Resource::Patient(patient))
            .await?;
        self.append(vec![self.event(context, action, Some(patient), decision)])
            .await?;
        match decision {
            Decision::Allow { .. } => grant(patient, decision).ok_or_else(|| {
                AppError::Unexpected("an allowed decision without obligations".into())
            }),
            Decision::Deny(reason) => Err(AppError::Forbidden {
                reason: reason.as_str(),
            }),
        }
    }

    /// Decides and audits an action on `audited.resource`, allowed or denied, before
    /// anything is done. When the resource belongs to a patient, an allowed decision comes
    /// with a grant for that patient (to seal or open what the action carries).
    ///
    /// With `must_exist`, an allowed action on a patient who does not exist answers
    /// [`AppError::NotFound`] without an entry: nothing was accessed. A denial is answered
    /// first, so someone not allowed never learns whether the patient exists.
    pub async fn authorize_resource(
        &self,
        context: &RequestContext,
        action: Action,
        audited: AuditedResource,
        must_exist: bool,
    ) -> AppResult<Option<Grant>> {
        let decision = self
            .decide_with_context(&context.actor, action, &audited.resource)
            .await?;
        let patient = audited.resource.patient().or(audited.patient);
        if decision.is_allowed()
            && must_exist
            && let Some(patient) = patient
            && self.store.get_patient(patient).await?.is_none()
        {
            return Err(AppError::NotFound);
        }
        let mut event = self.event(context, action, patient, decision);
        event.resource_type = Some(audited.resource_type.to_owned());
        event.resource_id = audited.resource_id;
        self.append(vec![event]).await?;
        match decision {
            Decision::Allow { .. } => Ok(patient.and_then(|p| grant(p, decision))),
            Decision::Deny(reason) => Err(AppError::Forbidden {
                reason: reason.as_str(),
            }),
        }
    }

    /// Grants a reviewer access to the patient of each item of a review queue page, one
    /// audit entry per item (`(patient, item id)`), once the queue itself was authorized.
    pub async fn grant_for_review(
        &self,
        context: &RequestContext,
        items: &[(PatientId, String)],
    ) -> AppResult<Vec<Grant>> {
        let decision = decide(
            &context.actor,
            Action::Read,
            &Resource::BreakGlassReviews,
            &Context::default(),
        );
        let mut events = Vec::with_capacity(items.len());
        for (patient, id) in items {
            let mut event = self.event(context, Action::Read, Some(*patient), decision);
            event.resource_type = Some("BreakGlass".to_owned());
            event.resource_id = Some(id.clone());
            events.push(event);
        }
        if !events.is_empty() {
            self.append(events).await?;
        }
        match decision {
            Decision::Allow { .. } => Ok(items
                .iter()
                .filter_map(|(patient, _)| grant(*patient, decision))
                .collect()),
            Decision::Deny(reason) => Err(AppError::Forbidden {
                reason: reason.as_str(),
            }),
        }
    }

    /// Refuses an API token something only a person has (device keys, conversations),
    /// recording the refusal like any other denial.
    pub async fn refuse_token(
        &self,
        context: &RequestContext,
        action: Action,
        resource_type: &'static str,
    ) -> AppResult<AppError> {
        let decision = Decision::Deny(haven_domain::DenyReason::PersonalCredentialRequired);
        let mut event = self.event(context, action, None, decision);
        event.resource_type = Some(resource_type.to_owned());
        self.append(vec![event]).await?;
        Ok(AppError::Forbidden {
            reason: haven_domain::DenyReason::PersonalCredentialRequired.as_str(),
        })
    }

    /// Decides what `actor` (not necessarily the caller) may do, with their relationship to
    /// the resource's patient, without recording anything: for choosing whom a
    /// conversation may include, where the caller's own act is what gets audited.
    pub async fn decide_for(
        &self,
        actor: &Actor,
        action: Action,
        resource: &Resource,
    ) -> AppResult<Decision> {
        self.decide_with_context(actor, action, resource).await
    }

    /// Decides and records one step of a video visit about `patient` (`resource` `Visit`,
    /// id `resource_id`): joining and answering whether one may be recorded (as `Create`),
    /// admitting, declining, ending, starting and stopping a recording (`Update`). Leaving needs nobody's permission: it is recorded as allowed and
    /// never refused, so a person can always hang up. Nothing takes effect unless this
    /// returned `Ok`: the entry is durable first.
    pub async fn authorize_visit(
        &self,
        context: &RequestContext,
        action: AuditAction,
        patient: PatientId,
        resource_id: String,
    ) -> AppResult<()> {
        let policy_action = match action {
            // Taking part: entering, and answering whether one may be recorded.
            AuditAction::VisitJoin
            | AuditAction::RecordingConsent
            | AuditAction::RecordingRefusal => Some(Action::Create),
            AuditAction::VisitAdmit
            | AuditAction::VisitDecline
            | AuditAction::VisitEnd
            | AuditAction::RecordingStart
            | AuditAction::RecordingStop
            | AuditAction::VisitInvite => Some(Action::Update),
            AuditAction::VisitLeave => None,
            _ => return Err(AppError::Unexpected("not a visit action".into())),
        };
        let decision = match policy_action {
            Some(policy_action) => {
                self.decide_with_context(&context.actor, policy_action, &Resource::Visit(patient))
                    .await?
            }
            None => Decision::Allow {
                rule: "visit_leave",
                purpose: if context.actor.role == Role::Patient {
                    haven_domain::PurposeOfUse::PatientRequest
                } else {
                    haven_domain::PurposeOfUse::Treatment
                },
                obligations: haven_domain::Obligations::NONE,
            },
        };
        let mut event = self.event(
            context,
            policy_action.unwrap_or(Action::Read),
            Some(patient),
            decision,
        );
        event.action = action;
        event.resource_type = Some("Visit".to_owned());
        event.resource_id = Some(resource_id);
        self.append(vec![event]).await?;
        match decision {
            Decision::Allow { .. } => Ok(()),
            Decision::Deny(reason) => Err(AppError::Forbidden {
                reason: reason.as_str(),
            }),
        }
    }

    /// Records a step of a visit's guest. A guest is no user: their invitation, given by a
    /// clinician of the visit, lets them enter it, answer whether they may be recorded, and
    /// leave (`allowed`); anything else is recorded as denied. Durable before it returns.
    pub async fn record_guest_visit(&self, step: GuestStep) -> AppResult<()> {
        let decision = if step.allowed {
            Decision::Allow {
                rule: "visit_guest_invitation",
                purpose: haven_domain::PurposeOfUse::Treatment,
                obligations: haven_domain::Obligations::NONE,
            }
        } else {
            Decision::Deny(haven_domain::DenyReason::RoleNotPermitted)
        };
        let event = AuditEvent {
            at_ms: self.clock.now_ms(),
            actor: Some(format!("guest:{}", step.guest)),
            role: Some("guest".to_owned()),
            organisation: Some(step.organisation.to_string()),
            session: None,
            client_app: None,
            action: step.action,
            patient: Some(step.patient),
            resource_type: Some("Visit".to_owned()),
            resource_id: Some(step.resource_id),
            outcome: if step.allowed {
                Outcome::Allowed
            } else {
                Outcome::Denied
            },
            reason: decision.reason().to_owned(),
            purpose_of_use: decision.purpose().map(|p| p.code().to_owned()),
            origin: step.origin,
        };
        self.append(vec![event]).await
    }

    /// Decides a change to the caller's own device keys and records it as a key-transparency
    /// entry (`device_add` / `device_remove`, resource `Device`, id = the device's
    /// fingerprint). Correspondents' clients are shown this entry with its inclusion proof,
    /// so an allowed entry carries only who, when and which key: no session, address or
    /// user agent of the person who registered it.
    pub async fn authorize_key_publication(
        &self,
        context: &RequestContext,
        action: AuditAction,
        fingerprint: &str,
    ) -> AppResult<()> {
        let policy_action = match action {
            AuditAction::DeviceAdd => Action::Create,
            AuditAction::DeviceRemove => Action::Delete,
            _ => return Err(AppError::Unexpected("not a key publication".into())),
        };
        let decision = decide(
            &context.actor,
            policy_action,
            &Resource::DeviceKeys,
            &Context::default(),
        );
        let mut event = self.event(context, policy_action, None, decision);
        event.action = action;
        event.resource_type = Some("Device".to_owned());
        event.resource_id = Some(fingerprint.to_owned());
        if decision.is_allowed() {
            event.session = None;
            event.client_app = None;
            event.origin = haven_audit::RequestOrigin::default();
        }
        self.append(vec![event]).await?;
        match decision {
            Decision::Allow { .. } => Ok(()),
            Decision::Deny(reason) => Err(AppError::Forbidden {
                reason: reason.as_str(),
            }),
        }
    }

    /// Decides a read of something that holds no health data (such as audit checkpoints):
    /// only a denial is audited.
    pub async fn authorize_unaudited_read(
        &self,
        context: &RequestContext,
        resource: Resource,
    ) -> AppResult<()> {
        let decision = decide(&context.actor, Action::Read, &resource, &Context::default());
        match decision {
            Decision::Allow { .. } => Ok(()),
            Decision::Deny(reason) => {
                let mut event = self.event(context, Action::Read, None, decision);
                event.action = AuditAction::AuditQuery;
                event.resource_type = Some("AuditCheckpoint".to_owned());
                self.append(vec![event]).await?;
                Err(AppError::Forbidden {
                    reason: reason.as_str(),
                })
            }
        }
    }

    /// Decides an action on something that holds no health data (users, settings): a
    /// denial is audited, an allowed action is audited by the use case that performs it.
    pub async fn authorize_administration(
        &self,
        context: &RequestContext,
        action: Action,
        resource: Resource,
    ) -> AppResult<()> {
        let decision = self
            .decide_with_context(&context.actor, action, &resource)
            .await?;
        match decision {
            Decision::Allow { .. } => Ok(()),
            Decision::Deny(reason) => {
                let mut event = self.event(context, action, None, decision);
                event.resource_type = Some("User".to_owned());
                self.append(vec![event]).await?;
                Err(AppError::Forbidden {
                    reason: reason.as_str(),
                })
            }
        }
    }

    /// Decides a query of the whole audit log and records the query itself (`audit_query`),
    /// allowed or denied, before any entry is returned.
    pub async fn authorize_audit_query(&self, context: &RequestContext) -> AppResult<()> {
        self.authorize_log_read(context, Action::Search, Resource::AuditLog)
            .await
    }

    /// Decides a read of one patient's access log (the entries about their record), and
    /// records it, with the patient, before any entry is returned.
    pub async fn authorize_access_log(
        &self,
        context: &RequestContext,
        patient: PatientId,
    ) -> AppResult<()> {
        self.authorize_log_read(context, Action::Read, Resource::PatientAccessLog(patient))
            .await
    }

    async fn authorize_log_read(
        &self,
        context: &RequestContext,
        action: Action,
        resource: Resource,
    ) -> AppResult<()> {
        let decision = self
            .decide_with_context(&context.actor, action, &resource)
            .await?;
        let mut event = self.event(context, action, resource.patient(), decision);
        event.action = AuditAction::AuditQuery;
        event.resource_type = Some("AuditEvent".to_owned());
        event.resource_id = None;
        self.append(vec![event]).await?;
        match decision {
            Decision::Allow { .. } => Ok(()),
            Decision::Deny(reason) => Err(AppError::Forbidden {
                reason: reason.as_str(),
            }),
        }
    }

    /// Decides whether the actor may search the directory at all. A denial is audited here;
    /// an allowed search is audited per patient found, by [`AccessGate::grant_found`].
    pub async fn authorize_search(&self, context: &RequestContext) -> AppResult<()> {
        let decision = decide(
            &context.actor,
            Action::Search,
            &Resource::PatientDirectory,
            &Context::default(),
        );
        match decision {
            Decision::Allow { .. } => Ok(()),
            Decision::Deny(reason) => {
                self.append(vec![self.event(context, Action::Search, None, decision)])
                    .await?;
                Err(AppError::Forbidden {
                    reason: reason.as_str(),
                })
            }
        }
    }

    /// Audits one entry per patient a search found (or one entry if it found none), then
    /// grants access to each.
    pub async fn grant_found(
        &self,
        context: &RequestContext,
        found: &[PatientId],
    ) -> AppResult<Vec<Grant>> {
        let mut grants = Vec::with_capacity(found.len());
        let mut events = Vec::with_capacity(found.len().max(1));
        let contexts = self.contexts(&context.actor, found).await?;
        for (&patient, relation) in found.iter().zip(&contexts) {
            // The directory decision allowed the search; a per-patient denial means the
            // policy narrowed it: the denial is audited and that patient left out. An
            // allowed one may still show only part of the record (its mask).
            let decision = decide(
                &context.actor,
                Action::Search,
                &Resource::Patient(patient),
                relation,
            );
            events.push(self.event(context, Action::Search, Some(patient), decision));
            grants.extend(grant(patient, decision));
        }
        if found.is_empty() {
            let decision = decide(
                &context.actor,
                Action::Search,
                &Resource::PatientDirectory,
                &Context::default(),
            );
            events.push(self.event(context, Action::Search, None, decision));
        }
        self.append(events).await?;
        Ok(grants)
    }

    /// Decides and audits an action on a chart resource that does not exist, as if it
    /// belonged to a patient the actor has no relationship with, so that a refusal reads the
    /// same whether or not it exists. `Ok` when such an action would be allowed: the caller
    /// then answers that it was not found.
    pub async fn authorize_missing(
        &self,
        context: &RequestContext,
        action: Action,
        part: ChartPart,
        resource_type: &'static str,
        resource_id: Option<String>,
    ) -> AppResult<()> {
        let unknown = Resource::Chart(PatientId::generate(), part);
        let decision = decide(&context.actor, action, &unknown, &Context::default());
        let mut event = self.event(context, action, None, decision);
        event.resource_type = Some(resource_type.to_owned());
        event.resource_id = resource_id;
        self.append(vec![event]).await?;
        match decision {
            Decision::Allow { .. } => Ok(()),
            Decision::Deny(reason) => Err(AppError::Forbidden {
                reason: reason.as_str(),
            }),
        }
    }

    /// Decides and audits an action on the shared directory (practitioners, organisations,
    /// questionnaires), and grants access to the directory's own key, `subject`.
    pub async fn authorize_directory(
        &self,
        context: &RequestContext,
        action: Action,
        subject: PatientId,
        resource_type: &'static str,
        resource_id: Option<String>,
    ) -> AppResult<Grant> {
        let decision = decide(
            &context.actor,
            action,
            &Resource::Directory,
            &Context::default(),
        );
        let mut event = self.event(context, action, None, decision);
        event.resource_type = Some(resource_type.to_owned());
        event.resource_id = resource_id;
        self.append(vec![event]).await?;
        match decision {
            Decision::Allow { .. } => grant(subject, decision).ok_or_else(|| {
                AppError::Unexpected("an allowed decision without obligations".into())
            }),
            Decision::Deny(reason) => Err(AppError::Forbidden {
                reason: reason.as_str(),
            }),
        }
    }

    /// Decides and audits several accesses to chart resources at once (a transaction's
    /// entries): one relationship look-up for their patients, one durable append for all
    /// their entries, then a grant or a refusal for each, in order. An access whose patient
    /// is `None` (the resource or patient does not exist) is decided as a stranger's, and
    /// is `NotFound` when that would be allowed.
    pub async fn authorize_chart_batch(
        &self,
        context: &RequestContext,
        accesses: &[ChartAccess],
    ) -> AppResult<Vec<AppResult<Grant>>> {
        let mut patients: Vec<PatientId> = accesses.iter().filter_map(|a| a.patient).collect();
        patients.sort();
        patients.dedup();
        let relations = self.contexts(&context.actor, &patients).await?;
        let mut events = Vec::with_capacity(accesses.len());
        let mut outcomes = Vec::with_capacity(accesses.len());
        for access in accesses {
            let (resource, relation) = match access.patient {
                Some(patient) => {
                    let at = patients.binary_search(&patient).ok();
                    (
                        Resource::Chart(patient, access.part),
                        at.and_then(|i| relations.get(i).copied())
                            .unwrap_or_default(),
                    )
                }
                None => (
                    Resource::Chart(PatientId::generate(), access.part),
                    Context::default(),
                ),
            };
            let decision = decide(&context.actor, access.action, &resource, &relation);
            let mut event = self.event(context, access.action, access.patient, decision);
            event.resource_type = Some(access.resource_type.to_owned());
            event.resource_id = access.resource_id.clone();
            events.push(event);
            outcomes.push(match (decision, access.patient) {
                (Decision::Deny(reason), _) => Err(AppError::Forbidden {
                    reason: reason.as_str(),
                }),
                (Decision::Allow { .. }, None) => Err(AppError::NotFound),
                (Decision::Allow { .. }, Some(patient)) => {
                    grant(patient, decision).ok_or_else(|| {
                        AppError::Unexpected("an allowed decision without obligations".into())
                    })
                }
            });
        }
        self.append(events).await?;
        Ok(outcomes)
    }

    /// Whether `action` on a part of the chart may span patients for this caller, decided
    /// (and a refusal audited) before anything is looked up: `Everyone` when the policy
    /// allows it whatever the patient (the front desk and appointments), `Related` when it
    /// depends on a relationship to each patient, which a search over all patients would
    /// reveal (by its paging, its counts, its refusals), so such a search must name one.
    pub async fn chart_scope(
        &self,
        context: &RequestContext,
        action: Action,
        part: ChartPart,
        resource_type: &'static str,
    ) -> AppResult<ChartScope> {
        let favourable = Context {
            care_team: true,
            break_glass: true,
            proxy: Some(ProxyScopes {
                record: true,
                access_log: true,
            }),
        };
        let unknown = Resource::Chart(PatientId::generate(), part);
        let at_best = decide(&context.actor, action, &unknown, &favourable);
        if let Decision::Deny(reason) = at_best {
            let mut event = self.event(context, action, None, at_best);
            event.resource_type = Some(resource_type.to_owned());
            self.append(vec![event]).await?;
            return Err(AppError::Forbidden {
                reason: reason.as_str(),
            });
        }
        let stranger = decide(&context.actor, action, &unknown, &Context::default());
        Ok(if stranger.is_allowed() {
            ChartScope::Everyone
        } else {
            ChartScope::Related
        })
    }

    /// Decides about `action` on one part of each patient's chart, audits one entry per
    /// patient (or one if there are none), and grants access to those allowed. For searches
    /// and histories that span patients: a denial leaves that patient out.
    pub async fn grant_chart(
        &self,
        context: &RequestContext,
        action: Action,
        part: ChartPart,
        resource_type: &'static str,
        patients: &[PatientId],
    ) -> AppResult<Vec<Grant>> {
        // Refused outright when no relationship to any patient could allow it (the front
        // desk searching results), before anything is looked up.
        let favourable = Context {
            care_team: true,
            break_glass: true,
            proxy: Some(ProxyScopes {
                record: true,
                access_log: true,
            }),
        };
        let unknown = Resource::Chart(PatientId::generate(), part);
        let at_best = decide(&context.actor, action, &unknown, &favourable);
        if let Decision::Deny(reason) = at_best {
            let mut event = self.event(context, action, None, at_best);
            event.resource_type = Some(resource_type.to_owned());
            self.append(vec![event]).await?;
            return Err(AppError::Forbidden {
                reason: reason.as_str(),
            });
        }
        let mut grants = Vec::with_capacity(patients.len());
        let mut events = Vec::with_capacity(patients.len().max(1));
        for chunk in patients.chunks(haven_store::limits::RELATIONS_LOOKUP_MAX) {
            let contexts = self.contexts(&context.actor, chunk).await?;
            for (&patient, relation) in chunk.iter().zip(&contexts) {
                let decision = decide(
                    &context.actor,
                    action,
                    &Resource::Chart(patient, part),
                    relation,
                );
                let mut event = self.event(context, action, Some(patient), decision);
                event.resource_type = Some(resource_type.to_owned());
                event.resource_id = None;
                events.push(event);
                grants.extend(grant(patient, decision));
            }
        }
        if patients.is_empty() {
            let mut event = self.event(context, action, None, at_best);
            event.resource_type = Some(resource_type.to_owned());
            events.push(event);
        }
        self.append(events).await?;
        Ok(grants)
    }

    /// The audit sink, for use cases that append entries of their own (not about access).
    pub(crate) fn audit_sink(&self) -> &dyn AuditSink {
        &*self.audit
    }

    /// Appends an entry for an action of the system itself (no request), such as key
    /// rotation or issuing an API token. Fails closed like every other append.
    pub async fn record_system(&self, event: AuditEvent) -> AppResult<()> {
        self.append(vec![event]).await
    }

    /// A fresh subject key for the patient the grant covers, and its stored (wrapped) form.
    pub fn new_subject_key(&self, grant: &Grant) -> AppResult<(SubjectKey, StoredSubjectKey)> {
        let key = SubjectKey::generate();
        let wrapped = key.wrap(&*self.keys, &grant.patient.to_string())?;
        let stored = StoredSubjectKey {
            subject: grant.patient,
            key_id: key.id().as_bytes().to_vec(),
            root_key_id: wrapped.root_key_id().as_bytes().to_vec(),
            wrapped: wrapped.as_bytes().to_vec(),
        };
        Ok((key, stored))
    }

    /// Unwraps the subject key of the patient the grant covers.
    pub fn open_subject_key(
        &self,
        grant: &Grant,
        stored: &StoredSubjectKey,
    ) -> AppResult<SubjectKey> {
        if stored.subject != grant.patient {
            return Err(AppError::Unexpected(
                "a grant for one patient was used on another patient's key".into(),
            ));
        }
        let id = SubjectKeyId::try_from_slice(&stored.key_id).ok_or_else(|| {
            AppError::Unexpected("stored subject key id has the wrong length".into())
        })?;
        let wrapped = WrappedKey::from_bytes(stored.wrapped.clone())?;
        Ok(SubjectKey::unwrap(
            &*self.keys,
            &grant.patient.to_string(),
            id,
            &wrapped,
        )?)
    }

    /// A fresh key for a user: their login name and second-factor secret are sealed with it.
    /// Identity secrets are not health data; every use is part of an audited sign-in or
    /// account change. Wrapped with the user id as its subject, like a patient's key, so
    /// root rotation re-wraps both alike.
    pub fn new_user_key(&self, user: UserId) -> AppResult<(SubjectKey, StoredSubjectKey)> {
        let key = SubjectKey::generate();
        let wrapped = key.wrap(&*self.keys, &user.to_string())?;
        let stored = StoredSubjectKey {
            subject: PatientId::from_uuid(user.as_uuid()),
            key_id: key.id().as_bytes().to_vec(),
            root_key_id: wrapped.root_key_id().as_bytes().to_vec(),
            wrapped: wrapped.as_bytes().to_vec(),
        };
        Ok((key, stored))
    }

    /// Unwraps a user's key.
    pub fn open_user_key(&self, user: UserId, stored: &StoredSubjectKey) -> AppResult<SubjectKey> {
        if stored.subject.as_uuid() != user.as_uuid() {
            return Err(AppError::Unexpected(
                "one user's key was asked for another user".into(),
            ));
        }
        let id = SubjectKeyId::try_from_slice(&stored.key_id).ok_or_else(|| {
            AppError::Unexpected("stored subject key id has the wrong length".into())
        })?;
        let wrapped = WrappedKey::from_bytes(stored.wrapped.clone())?;
        Ok(SubjectKey::unwrap(
            &*self.keys,
            &user.to_string(),
            id,
            &wrapped,
        )?)
    }

    /// The id of the root key new keys are wrapped under (an id, not key material).
    pub fn active_root_key_id(&self) -> haven_crypto::RootKeyId {
        self.keys.active_key_id()
    }

    /// Proves the key provider works: wraps and unwraps a throwaway key.
    pub fn check_keys(&self) -> Result<(), haven_crypto::CryptoError> {
        let probe = KeyMaterial::generate();
        let wrapped = self.keys.wrap(&probe, b"haven/readiness-probe")?;
        let unwrapped = self.keys.unwrap(&wrapped, b"haven/readiness-probe")?;
        if unwrapped.expose_secret() == probe.expose_secret() {
            Ok(())
        } else {
            Err(haven_crypto::CryptoError::Integrity)
        }
    }
}
