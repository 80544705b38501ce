//! Notices for one person: something needs them (a break-the-glass access to review) or
//! happened to their account (it was locked after repeated failures).
//!
//! A notice carries a kind and the id of what it is about, never health data, so it can be
//! delivered anywhere (in the app today; e-mail or push later) without leaking anything.
//! The same notices are what a delivery channel would send: "You have something to review".

use haven_domain::{NotificationId, Principal, UserId};
use haven_store::Store;
use haven_store::care::StoredNotification;
use uuid::Uuid;

use crate::{App, AppError, AppResult, RequestContext};

/// A clinician broke the glass; the privacy officers of their organisation review it.
pub const KIND_BREAK_GLASS_REVIEW: &str = "break_glass_review";
/// The account was locked after repeated failed sign-ins (someone may be guessing).
pub const KIND_ACCOUNT_LOCKED: &str = "account_locked";
/// "You have a new secure message" in a conversation (the subject): left for a person who
/// was not connected when it arrived, once per conversation until they read it.
pub const KIND_NEW_MESSAGE: &str = "new_message";

/// A notice as shown to its recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationView {
    pub id: NotificationId,
    pub kind: String,
    /// The id of what it is about (a break-the-glass access), if anything.
    pub subject: Option<Uuid>,
    pub created_at_ms: i64,
    pub read: bool,
}

/// Leaves the same notice for each of `users`.
pub(crate) async fn notify(
    store: &dyn Store,
    users: &[UserId],
    kind: &str,
    subject: Option<Uuid>,
    now_ms: i64,
) -> AppResult<()> {
    if users.is_empty() {
        return Ok(());
    }
    let notices = users
        .iter()
        .map(|user| StoredNotification {
            id: NotificationId::generate(),
            user: *user,
            kind: kind.to_owned(),
            subject,
            created_at_ms: now_ms,
            read_at_ms: None,
        })
        .collect();
    store.insert_notifications(notices).await?;
    Ok(())
}

impl App {
    /// The caller's notices, newest first. An API token is nobody's inbox: it has none.
    pub async fn my_notifications(
        &self,
        context: &RequestContext,
    ) -> AppResult<Vec<NotificationView>> {
        let Principal::User { user, .. } = context.actor.principal else {
            return Ok(Vec::new());
        };
        Ok(self
            .store
            .notifications(user)
            .await?
            .into_iter()
            .map(|n| NotificationView {
                id: n.id,
                kind: n.kind,
                subject: n.subject,
                created_at_ms: n.created_at_ms,
                read: n.read_at_ms.is_some(),
            })
            .collect())
    }

    /// Marks one of the caller's notices read. Someone else's, or an unknown id, is simply
    /// not found.
    pub async fn mark_notification_read(
        &self,
        context: &RequestContext,
        id: NotificationId,
    ) -> AppResult<()> {
        let Principal::User { user, .. } = context.actor.principal else {
            return Err(AppError::NotFound);
        };
        let changed = self
            .store
            .mark_notification_read(user, id, self.clock.now_ms())
            .await?;
        if changed
            || self
                .store
                .notifications(user)
                .await?
                .iter()
                .any(|n| n.id == id)
        {
            Ok(())
        } else {
            Err(AppError::NotFound)
        }
    }
}
