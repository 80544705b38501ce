//! Key management use cases: the deployment's blind-index key, root key rotation and
//! crypto-shredding.
//!
//! Rotation re-wraps every subject key and system key under the new root key; no record is
//! re-encrypted, so it takes time proportional to the number of patients, not of records.
//! It is resumable: each key is re-wrapped with a compare-and-swap, and a root key is
//! destroyed only once nothing stored is wrapped by it any more.

use haven_audit::{AuditAction, AuditEvent, AuditSink, Outcome, RequestOrigin};
use haven_crypto::{
    BlindIndexKey, KeyMaterial, KeyProvider, LocalKeyring, RootKeyId, SubjectKey, SubjectKeyId,
    WrappedKey,
};
use haven_domain::{PatientId, PurposeOfUse};
use haven_store::{Store, StoredSystemKey, limits};

use crate::{AppError, AppResult};

const BLIND_INDEX_KEY_NAME: &str = "blind-index/v1";

fn system_key_context(name: &str) -> Vec<u8> {
    let mut context = b"haven/system-key/v1\0".to_vec();
    context.extend_from_slice(name.as_bytes());
    context
}

/// Loads a key of the deployment itself (wrapped by the root key in `system_keys`),
/// creating it on first start. Two instances starting together agree on one key: the store
/// keeps whichever was inserted first.
pub async fn load_or_create_system_key(
    store: &dyn Store,
    keys: &dyn KeyProvider,
    name: &str,
    now_ms: i64,
) -> AppResult<KeyMaterial> {
    let context = system_key_context(name);
    let stored = match store.system_key(name).await? {
        Some(stored) => stored,
        None => {
            let fresh = KeyMaterial::generate();
            let wrapped = keys.wrap(&fresh, &context)?;
            store
                .put_system_key_if_absent(
                    StoredSystemKey {
                        name: name.to_owned(),
                        root_key_id: wrapped.root_key_id().as_bytes().to_vec(),
                        wrapped: wrapped.as_bytes().to_vec(),
                    },
                    now_ms,
                )
                .await?
        }
    };
    let wrapped = WrappedKey::from_bytes(stored.wrapped)?;
    Ok(keys.unwrap(&wrapped, &context)?)
}

/// The deployment's blind-index key.
pub async fn load_or_create_blind_index_key(
    store: &dyn Store,
    keys: &dyn KeyProvider,
    now_ms: i64,
) -> AppResult<BlindIndexKey> {
    let material = load_or_create_system_key(store, keys, BLIND_INDEX_KEY_NAME, now_ms).await?;
    Ok(BlindIndexKey::new(material))
}

/// Re-wraps every stored key not yet under the provider's active root. `progress` is told
/// `(done, total)` after each batch. Returns how many keys were re-wrapped.
pub async fn rewrap_all(
    store: &dyn Store,
    keys: &dyn KeyProvider,
    progress: &mut dyn FnMut(u64, u64),
) -> AppResult<u64> {
    let active = keys.active_key_id();
    let active_bytes = active.as_bytes().to_vec();
    let total = store.count_keys_not_under(&active_bytes).await?;
    let mut done = 0u64;

    for system_key in store.system_keys().await? {
        if system_key.root_key_id == active_bytes {
            continue;
        }
        let context = system_key_context(&system_key.name);
        let material = keys.unwrap(
            &WrappedKey::from_bytes(system_key.wrapped.clone())?,
            &context,
        )?;
        let wrapped = keys.wrap(&material, &context)?;
        store
            .rewrap_system_key(&system_key, &active_bytes, wrapped.as_bytes())
            .await?;
        done += 1;
    }
    progress(done, total);

    loop {
        let batch = store
            .subject_keys_not_under(&active_bytes, limits::REWRAP_BATCH_ROWS_MAX)
            .await?;
        if batch.is_empty() {
            break;
        }
        for stored in batch {
            let subject = stored.subject.to_string();
            let id = SubjectKeyId::try_from_slice(&stored.key_id)
                .ok_or_else(|| AppError::Unexpected("stored subject key id length".into()))?;
            let key = SubjectKey::unwrap(
                keys,
                &subject,
                id,
                &WrappedKey::from_bytes(stored.wrapped.clone())?,
            )?;
            let wrapped = key.wrap(keys, &subject)?;
            // A key shredded or re-wrapped meanwhile fails the swap; either way it is no
            // longer under the old root, so the loop still terminates.
            store
                .rewrap_subject_key(&stored, &active_bytes, wrapped.as_bytes())
                .await?;
            done += 1;
        }
        progress(done, total.max(done));
    }
    Ok(done)
}

/// What `haven keys rotate` did.
#[derive(Debug, Clone)]
pub struct RotationReport {
    pub new_root: RootKeyId,
    pub rewrapped: u64,
    pub retired: Vec<RootKeyId>,
}

/// Rotates the local root key: creates a new one, re-wraps every stored key under it and
/// destroys the old root keys, which then wrap nothing. Audited as `key_rotation`.
pub async fn rotate_local_root(
    store: &dyn Store,
    audit: &dyn AuditSink,
    keyring: &mut LocalKeyring,
    now_ms: i64,
    progress: &mut dyn FnMut(u64, u64),
) -> AppResult<RotationReport> {
    let new_root = keyring.rotate()?;
    audit
        .append(vec![system_event(
            now_ms,
            AuditAction::KeyRotation,
            None,
            "root_key_rotated",
        )])
        .await
        .map_err(|_| AppError::AuditUnavailable)?;
    let rewrapped = rewrap_all(store, keyring, progress).await?;
    let retired = retire_unused_roots(store, keyring).await?;
    Ok(RotationReport {
        new_root,
        rewrapped,
        retired,
    })
}

/// Destroys root keys (other than the active one) that no stored key is wrapped by.
pub async fn retire_unused_roots(
    store: &dyn Store,
    keyring: &mut LocalKeyring,
) -> AppResult<Vec<RootKeyId>> {
    let in_use: Vec<RootKeyId> = store
        .root_keys_in_use()
        .await?
        .iter()
        .filter_map(|bytes| RootKeyId::try_from_slice(bytes))
        .collect();
    let mut retired = Vec::new();
    for id in keyring.key_ids() {
        if id != keyring.active_key_id() && !in_use.contains(&id) {
            keyring.retire(id)?;
            retired.push(id);
        }
    }
    Ok(retired)
}

/// Crypto-shreds one patient: destroys their subject key so every sealed record of theirs,
/// in the database and in every backup or replica made since, can never be opened again.
/// Audited as `crypto_shred` before it happens. Returns whether a key was destroyed.
pub async fn shred_patient(
    store: &dyn Store,
    audit: &dyn AuditSink,
    patient: PatientId,
    now_ms: i64,
) -> AppResult<bool> {
    audit
        .append(vec![system_event(
            now_ms,
            AuditAction::CryptoShred,
            Some(patient),
            "patient_key_destroyed",
        )])
        .await
        .map_err(|_| AppError::AuditUnavailable)?;
    Ok(store.shred_subject(patient, now_ms).await?)
}

/// An audit entry for an action taken by an operator at the console (`haven` CLI).
pub(crate) fn system_event(
    now_ms: i64,
    action: AuditAction,
    patient: Option<PatientId>,
    reason: &str,
) -> AuditEvent {
    AuditEvent {
        at_ms: now_ms,
        actor: Some("system:cli".to_owned()),
        role: None,
        organisation: None,
        session: None,
        client_app: None,
        action,
        patient,
        resource_type: patient.map(|_| "Patient".to_owned()),
        resource_id: patient.map(|p| p.to_string()),
        outcome: Outcome::Allowed,
        reason: reason.to_owned(),
        purpose_of_use: Some(PurposeOfUse::SystemAdministration.code().to_owned()),
        origin: RequestOrigin::default(),
    }
}

/// Where key rotation stands, for administrators: which root key wraps new keys, how many
/// stored keys still wait under an older one, and when the root was last rotated.
#[derive(Debug, Clone)]
pub struct KeyStatus {
    pub active_root: RootKeyId,
    /// Subject and system keys not yet re-wrapped under the active root (0 after a
    /// completed rotation).
    pub keys_under_older_roots: u64,
    /// When `haven keys rotate` last completed, from the audit log.
    pub last_rotation_ms: Option<i64>,
}

impl crate::App {
    /// The key rotation status. Administrators only; audited as a read of the
    /// organisation's administration.
    pub async fn key_status(&self, context: &crate::RequestContext) -> AppResult<KeyStatus> {
        self.gate
            .authorize_administration(
                context,
                haven_domain::Action::Read,
                haven_domain::Resource::Users,
            )
            .await?;
        // Administrators' reads are recorded too, as `users_listed` is.
        let mut event = system_event(
            self.clock.now_ms(),
            AuditAction::Read,
            None,
            "key_status_read",
        );
        crate::identity::context_into_event(context, &mut event);
        event.organisation = context.actor.organisation.map(|o| o.to_string());
        event.resource_type = Some("Key".to_owned());
        self.gate.record_system(event).await?;
        let active_root = self.gate.active_root_key_id();
        let keys_under_older_roots = self
            .store
            .count_keys_not_under(active_root.as_bytes())
            .await?;
        let last = self
            .store
            .query_audit(&haven_store::AuditQuery {
                action: Some(AuditAction::KeyRotation),
                sort: haven_store::AuditSortField::Seq,
                descending: true,
                limit: 1,
                ..haven_store::AuditQuery::default()
            })
            .await?;
        Ok(KeyStatus {
            active_root,
            keys_under_older_roots,
            last_rotation_ms: last.first().map(|entry| entry.event.at_ms),
        })
    }
}
