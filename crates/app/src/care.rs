//! Who may open a patient's record besides the patient: the patient's care team, kept by the
//! front desk, and — in an emergency — a clinician who breaks the glass, stating why.
//!
//! A break-the-glass grant lasts the organisation's `break_glass_secs` (60 minutes by
//! default), is audited as `break_glass` with purpose `ETREAT` (as is every read under it),
//! alerts the organisation's privacy officers, and waits in their review queue until one of
//! them marks it justified or not. The stated reason and the review note may describe the
//! patient's condition, so both are sealed under the patient's key: destroying that key
//! (crypto-shredding) leaves the queue's entries without their text, like every other record.

use haven_crypto::{RecordBinding, Sealed};
use haven_domain::{Action, BreakGlassId, PatientId, Principal, Resource, Role, UserId};
use haven_store::care::{BreakGlassQuery, BreakGlassReview, CareTeamMember, StoredBreakGlass};
use haven_store::limits;

pub use haven_store::care::ReviewState;

/// The largest page of the review queue.
pub const QUEUE_PAGE_ROWS_MAX: u32 = limits::PAGE_ROWS_MAX;

use crate::gate::{AuditedResource, Grant};
use crate::identity::invalid;
use crate::notifications::{KIND_BREAK_GLASS_REVIEW, notify};
use crate::{App, AppError, AppResult, RequestContext};

/// How long a break-the-glass grant lasts unless the organisation says otherwise.
pub const BREAK_GLASS_SECS_DEFAULT: i64 = 60 * 60;
/// The shortest and longest grant an organisation may configure.
pub const BREAK_GLASS_SECS_RANGE: (i64, i64) = (5 * 60, 12 * 60 * 60);
/// A reason must say something, and not be a document.
pub const REASON_CHARS_MIN: usize = 10;
pub const REASON_CHARS_MAX: usize = 1000;
/// The longest review note.
pub const REVIEW_NOTE_CHARS_MAX: usize = 2000;

const REASON_TABLE: &str = "break_glass_grants.reason";
const NOTE_TABLE: &str = "break_glass_grants.review_note";

/// One member of a patient's care team, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CareTeamMemberView {
    pub user: UserId,
    pub role: String,
    pub added_at_ms: i64,
}

/// A break-the-glass grant just issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedBreakGlass {
    pub id: BreakGlassId,
    pub patient: PatientId,
    pub expires_at_ms: i64,
}

/// A break-the-glass access as the reviewers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassView {
    pub id: BreakGlassId,
    pub user: UserId,
    pub patient: PatientId,
    /// `None` once the patient's key was destroyed.
    pub reason: Option<String>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub review_state: ReviewState,
    pub reviewed_by: Option<UserId>,
    pub reviewed_at_ms: Option<i64>,
    pub review_note: Option<String>,
}

/// One page of the queue; `next` is the last item's id, from which the next page goes on.
#[derive(Debug, Clone)]
pub struct BreakGlassPage {
    pub items: Vec<BreakGlassView>,
    pub next: Option<BreakGlassId>,
}

/// Free text a person writes for the record: trimmed, printable (line breaks allowed),
/// within its bounds.
fn free_text(field: &str, text: &str, min: usize, max: usize) -> AppResult<String> {
    let text = text.trim();
    let chars = text.chars().count();
    if chars < min || chars > max {
        return Err(invalid(
            field,
            format!("between {min} and {max} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(invalid(field, "printable text and line breaks only"));
    }
    Ok(text.to_owned())
}

fn care_team_resource(patient: PatientId, member: Option<UserId>) -> AuditedResource {
    AuditedResource {
        resource: Resource::CareTeam(patient),
        patient: None,
        resource_type: "CareTeam",
        resource_id: member.map(|m| m.to_string()),
    }
}

impl App {
    /// The members of a patient's care team.
    pub async fn care_team(
        &self,
        context: &RequestContext,
        patient: PatientId,
    ) -> AppResult<Vec<CareTeamMemberView>> {
        self.gate
            .authorize_resource(
                context,
                Action::Read,
                care_team_resource(patient, None),
                true,
            )
            .await?;
        let mut members = Vec::new();
        for member in self.store.care_team(patient).await? {
            let role = self
                .store
                .user(member.user)
                .await?
                .map_or_else(|| "unknown".to_owned(), |u| u.role);
            members.push(CareTeamMemberView {
                user: member.user,
                role,
                added_at_ms: member.added_at_ms,
            });
        }
        Ok(members)
    }

    /// Adds a clinician or nurse of the caller's organisation to a patient's care team:
    /// from then on they may open the record. Whether they were added (false: already a
    /// member).
    pub async fn add_care_team_member(
        &self,
        context: &RequestContext,
        patient: PatientId,
        member: UserId,
    ) -> AppResult<bool> {
        self.gate
            .authorize_resource(
                context,
                Action::Update,
                care_team_resource(patient, Some(member)),
                true,
            )
            .await?;
        let user = self
            .store
            .user(member)
            .await?
            .filter(|u| {
                context
                    .actor
                    .organisation
                    .is_none_or(|o| o == u.organisation)
            })
            .ok_or_else(|| invalid("user", "no user of this organisation has this id"))?;
        let role: Role = user
            .role
            .parse()
            .map_err(|_| AppError::Unexpected("a stored user with an unknown role".into()))?;
        if !matches!(role, Role::Clinician | Role::Nurse) {
            return Err(invalid(
                "user",
                "only clinicians and nurses join a care team",
            ));
        }
        if user.disabled_at_ms.is_some() {
            return Err(invalid("user", "this account is disabled"));
        }
        let added = self
            .store
            .add_care_team_member(CareTeamMember {
                patient,
                user: member,
                added_by: context.actor.principal.actor_id(),
                added_at_ms: self.clock.now_ms(),
            })
            .await?;
        if added {
            return Ok(true);
        }
        let members = self.store.care_team(patient).await?;
        if members.iter().any(|m| m.user == member) {
            Ok(false)
        } else {
            Err(AppError::Conflict {
                code: "care_team_full",
                message: format!(
                    "a care team has at most {} members",
                    limits::CARE_TEAM_MEMBERS_MAX
                ),
            })
        }
    }

    /// Removes a member from a patient's care team: they can no longer open the record.
    pub async fn remove_care_team_member(
        &self,
        context: &RequestContext,
        patient: PatientId,
        member: UserId,
    ) -> AppResult<()> {
        self.gate
            .authorize_resource(
                context,
                Action::Delete,
                care_team_resource(patient, Some(member)),
                true,
            )
            .await?;
        if self.store.remove_care_team_member(patient, member).await? {
            Ok(())
        } else {
            Err(AppError::NotFound)
        }
    }

    /// Breaks the glass: a clinician or nurse without a care relationship opens a patient's
    /// record for an emergency, stating why. Needs a fresh proof of identity; audited as
    /// break-glass before it is granted; the privacy officers are alerted.
    pub async fn break_glass(
        &self,
        context: &RequestContext,
        patient: PatientId,
        reason: &str,
    ) -> AppResult<IssuedBreakGlass> {
        let reason = free_text("reason", reason, REASON_CHARS_MIN, REASON_CHARS_MAX)?;
        self.require_fresh_context(context)?;
        if let Principal::User { user, .. } = context.actor.principal
            && matches!(context.actor.role, Role::Clinician | Role::Nurse)
            && self
                .store
                .relations(user, &[patient], self.clock.now_ms())
                .await?
                .iter()
                .any(|r| r.care_team)
        {
            return Err(AppError::Conflict {
                code: "care_relationship_exists",
                message: "you are on this patient's care team: open the record directly".into(),
            });
        }
        let id = BreakGlassId::generate();
        let grant = self
            .gate
            .authorize_resource(
                context,
                Action::BreakGlass,
                AuditedResource {
                    resource: Resource::Patient(patient),
                    patient: None,
                    resource_type: "BreakGlass",
                    resource_id: Some(id.to_string()),
                },
                true,
            )
            .await?
            .ok_or_else(|| AppError::Unexpected("break-the-glass without a grant".into()))?;
        let (Principal::User { user, .. }, Some(organisation)) =
            (context.actor.principal, context.actor.organisation)
        else {
            return Err(AppError::Unexpected(
                "the policy allowed break-the-glass without a person".into(),
            ));
        };
        let reason_sealed = self
            .seal_for_patient(&grant, REASON_TABLE, id, &reason)
            .await?;
        let organisation = self
            .store
            .organisation(organisation)
            .await?
            .ok_or(AppError::NotFound)?;
        let now_ms = self.clock.now_ms();
        let expires_at_ms = now_ms + organisation.break_glass_secs * 1000;
        self.store
            .insert_break_glass(StoredBreakGlass {
                id,
                organisation: organisation.id,
                user,
                patient,
                reason_sealed,
                created_at_ms: now_ms,
                expires_at_ms,
                review_state: ReviewState::Pending,
                reviewed_by: None,
                reviewed_at_ms: None,
                review_note_sealed: None,
            })
            .await?;
        let officers: Vec<UserId> = self
            .store
            .organisation_users(organisation.id)
            .await?
            .into_iter()
            .filter(|u| u.role == Role::PrivacyOfficer.as_str() && u.disabled_at_ms.is_none())
            .map(|u| u.id)
            .collect();
        if officers.is_empty() {
            // The access stands (an emergency cannot wait for staffing), and the queue
            // keeps it; but nobody was told, which an operator must know.
            tracing::warn!(
                organisation = %organisation.id,
                "break-the-glass with no active privacy officer to alert"
            );
        }
        notify(
            &*self.store,
            &officers,
            KIND_BREAK_GLASS_REVIEW,
            Some(id.as_uuid()),
            now_ms,
        )
        .await?;
        Ok(IssuedBreakGlass {
            id,
            patient,
            expires_at_ms,
        })
    }

    /// The organisation's break-the-glass accesses, newest first, with their reasons
    /// opened for the reviewer (each item audited as a read of that patient's data).
    pub async fn break_glass_queue(
        &self,
        context: &RequestContext,
        pending_only: bool,
        before: Option<BreakGlassId>,
        limit: u32,
    ) -> AppResult<BreakGlassPage> {
        self.gate
            .authorize_resource(
                context,
                Action::Search,
                AuditedResource {
                    resource: Resource::BreakGlassReviews,
                    patient: None,
                    resource_type: "BreakGlass",
                    resource_id: None,
                },
                false,
            )
            .await?;
        let organisation = self.my_organisation(context).await?;
        let before = match before {
            Some(id) => Some(
                self.store
                    .break_glass(id)
                    .await?
                    .filter(|r| r.organisation == organisation.id)
                    .map(|r| (r.created_at_ms, r.id))
                    .ok_or_else(|| {
                        invalid("before", "no access of this organisation has this id")
                    })?,
            ),
            None => None,
        };
        let limit = limit.clamp(1, limits::PAGE_ROWS_MAX);
        let rows = self
            .store
            .break_glass_grants(&BreakGlassQuery {
                organisation: organisation.id,
                pending_only,
                before,
                limit,
            })
            .await?;
        let items: Vec<(PatientId, String)> =
            rows.iter().map(|r| (r.patient, r.id.to_string())).collect();
        let grants = self.gate.grant_for_review(context, &items).await?;
        let next = (rows.len() == limit as usize)
            .then(|| rows.last().map(|r| r.id))
            .flatten();
        let mut views = Vec::with_capacity(rows.len());
        for (row, grant) in rows.into_iter().zip(&grants) {
            views.push(self.open_break_glass(grant, row).await?);
        }
        Ok(BreakGlassPage { items: views, next })
    }

    /// The privacy officer's decision on a pending break-the-glass access; the alerts about
    /// it are cleared for every officer.
    pub async fn review_break_glass(
        &self,
        context: &RequestContext,
        id: BreakGlassId,
        state: ReviewState,
        note: Option<&str>,
    ) -> AppResult<BreakGlassView> {
        if state == ReviewState::Pending {
            return Err(invalid("outcome", "justified or unjustified"));
        }
        let note = note
            .map(|n| free_text("note", n, 1, REVIEW_NOTE_CHARS_MAX))
            .transpose()?;
        // Looked up first so the audit entry names the patient; a caller who may not
        // review is refused before learning whether the id exists.
        let organisation = context.actor.organisation;
        let row = self
            .store
            .break_glass(id)
            .await?
            .filter(|r| organisation.is_none_or(|o| o == r.organisation));
        let grant = self
            .gate
            .authorize_resource(
                context,
                Action::Update,
                AuditedResource {
                    resource: Resource::BreakGlassReviews,
                    patient: row.as_ref().map(|r| r.patient),
                    resource_type: "BreakGlass",
                    resource_id: Some(id.to_string()),
                },
                false,
            )
            .await?;
        let (Some(row), Some(grant)) = (row, grant) else {
            return Err(AppError::NotFound);
        };
        let Principal::User { user: reviewer, .. } = context.actor.principal else {
            return Err(AppError::Unexpected(
                "the policy allowed a review without a person".into(),
            ));
        };
        let note_sealed = match &note {
            Some(note) => Some(self.seal_for_patient(&grant, NOTE_TABLE, id, note).await?),
            None => None,
        };
        let now_ms = self.clock.now_ms();
        let reviewed = self
            .store
            .review_break_glass(BreakGlassReview {
                id,
                reviewer,
                state,
                note_sealed,
                now_ms,
            })
            .await?;
        if !reviewed {
            return Err(AppError::Conflict {
                code: "already_reviewed",
                message: "this access was already reviewed".into(),
            });
        }
        self.store
            .resolve_notifications(id.as_uuid(), now_ms)
            .await?;
        let row = self.store.break_glass(id).await?.unwrap_or(row);
        self.open_break_glass(&grant, row).await
    }

    async fn seal_for_patient(
        &self,
        grant: &Grant,
        table: &'static str,
        id: BreakGlassId,
        text: &str,
    ) -> AppResult<Vec<u8>> {
        let stored = self
            .store
            .get_patient(grant.patient())
            .await?
            .ok_or(AppError::NotFound)?;
        let key = stored.subject_key.as_ref().ok_or(AppError::Erased)?;
        let key = self.gate.open_subject_key(grant, key)?;
        let record_id = id.to_string();
        let binding = RecordBinding {
            table,
            record_id: &record_id,
            version: 1,
        };
        Ok(Sealed::<String>::seal(&key, &binding, text.as_bytes()).into_bytes())
    }

    async fn open_break_glass(
        &self,
        grant: &Grant,
        row: StoredBreakGlass,
    ) -> AppResult<BreakGlassView> {
        let key = match self.store.get_patient(row.patient).await? {
            Some(stored) => match stored.subject_key {
                Some(key) => Some(self.gate.open_subject_key(grant, &key)?),
                None => None,
            },
            None => None,
        };
        let record_id = row.id.to_string();
        let open = |table: &'static str, sealed: &[u8]| -> AppResult<Option<String>> {
            let Some(key) = &key else {
                return Ok(None);
            };
            let binding = RecordBinding {
                table,
                record_id: &record_id,
                version: 1,
            };
            let opened = Sealed::<String>::from_bytes(sealed.to_vec())?.open(key, &binding)?;
            String::from_utf8(opened.expose_secret().clone())
                .map(Some)
                .map_err(|_| AppError::Unexpected("sealed text that is not UTF-8".into()))
        };
        Ok(BreakGlassView {
            id: row.id,
            user: row.user,
            patient: row.patient,
            reason: open(REASON_TABLE, &row.reason_sealed)?,
            created_at_ms: row.created_at_ms,
            expires_at_ms: row.expires_at_ms,
            review_state: row.review_state,
            reviewed_by: row.reviewed_by,
            reviewed_at_ms: row.reviewed_at_ms,
            review_note: match &row.review_note_sealed {
                Some(sealed) => open(NOTE_TABLE, sealed)?,
                None => None,
            },
        })
    }
}
