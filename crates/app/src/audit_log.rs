//! The tamper-evident audit log: every entry is a leaf of a Merkle tree (RFC 9162), and
//! signed checkpoints commit to the tree's size and root.
//!
//! - The [`Checkpointer`] follows the log: it keeps the tree in O(log n) memory, and at
//!   least once a second while entries arrive it signs a checkpoint and stores it. At start
//!   it rebuilds the tree from storage and refuses to go on if the log no longer matches its
//!   latest signed checkpoint: it will not sign over a log that was altered.
//! - [`verify_log`] recomputes the tree from storage and checks every stored checkpoint,
//!   its signature and its root, naming where the log first departs from what was signed.
//!
//! The signing key is a system key of its own (`audit-signing/v1`), wrapped by the root key
//! and separate from every data key. Its public half, as a C2SP verifier key, is all an
//! auditor needs to check checkpoints elsewhere.

use haven_audit::AuditAction;
use haven_audit::checkpoint::{Checkpoint, CheckpointSigner, CheckpointVerifier};
use haven_audit::merkle::CompactTree;
use haven_crypto::KeyProvider;
pub use haven_store::limits::AUDIT_REPORT_OFFSET_MAX;
pub use haven_store::{AuditQuery, AuditSortField, StoredCheckpoint};
use haven_store::{Store, TreeLeaf, TreeNode, limits};

use crate::keys::load_or_create_system_key;
use crate::{App, AppError, AppResult, RequestContext};

/// The origin line of every checkpoint: names the log.
pub const LOG_ORIGIN: &str = "haven/audit";
/// How often the checkpointer looks for new entries.
pub const CHECKPOINT_INTERVAL_MS: u64 = 1000;
/// Leaves the checkpointer stores per write (with their completed subtrees, about as many
/// again): within `haven_store::limits::TREE_WRITE_ROWS_MAX`.
pub const TREE_LEAVES_PER_WRITE: usize = 16 * limits::AUDIT_PAGE_ROWS_MAX as usize;
const SIGNING_KEY_NAME: &str = "audit-signing/v1";

/// The log's signing key, created on first start.
pub async fn load_or_create_signer(
    store: &dyn Store,
    keys: &dyn KeyProvider,
    now_ms: i64,
) -> AppResult<CheckpointSigner> {
    let material = load_or_create_system_key(store, keys, SIGNING_KEY_NAME, now_ms).await?;
    CheckpointSigner::from_seed(LOG_ORIGIN, *material.expose_secret())
        .map_err(|e| AppError::Unexpected(e.to_string()))
}

/// Follows the log and signs checkpoints.
#[derive(Debug)]
pub struct Checkpointer {
    signer: CheckpointSigner,
    tree: CompactTree,
    last_seq: i64,
    signed_size: u64,
    /// Leaves already in the stored tree; positions below it are not written again.
    stored_size: u64,
}

/// Whether [`Checkpointer::catch_up`] stores the leaves and nodes it adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    /// Only rebuild in memory (while checking the log against its latest checkpoint:
    /// nothing is stored for a log that may have been altered).
    No,
    /// Store what is not yet stored, page by page, before any checkpoint covers it.
    Yes,
}

impl Checkpointer {
    /// Rebuilds the tree from storage and checks it against the latest signed checkpoint.
    pub async fn start(store: &dyn Store, signer: CheckpointSigner) -> AppResult<Self> {
        let latest = store.latest_checkpoint().await?;
        let stored_size = store.tree_size().await?;
        let mut checkpointer = Self {
            signer,
            tree: CompactTree::new(),
            last_seq: 0,
            signed_size: 0,
            stored_size,
        };
        if let Some(latest) = &latest {
            checkpointer
                .catch_up(store, Some(latest.size), Record::No)
                .await?;
            if checkpointer.tree.size() != latest.size
                || checkpointer.tree.root().as_slice() != latest.root.as_slice()
            {
                return Err(AppError::Unexpected(format!(
                    "the audit log does not match its latest signed checkpoint (size {}); \
                     refusing to sign over it. Run `haven audit verify` to find the change",
                    latest.size
                )));
            }
            checkpointer.signed_size = latest.size;
            if stored_size < latest.size {
                // A log signed before its tree was stored: store it now that it checked out.
                checkpointer.tree = CompactTree::new();
                checkpointer.last_seq = 0;
                checkpointer
                    .catch_up(store, Some(latest.size), Record::Yes)
                    .await?;
            }
        }
        checkpointer.catch_up(store, None, Record::Yes).await?;
        Ok(checkpointer)
    }

    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// Adds entries appended since the last call, up to `size_max` entries in all, and
    /// with [`Record::Yes`] stores the new leaves and completed subtrees, up to
    /// [`TREE_LEAVES_PER_WRITE`] leaves per write: under heavy load every write waits its
    /// turn behind the audit appends, so few large writes keep up where many small ones
    /// would fall behind the log.
    ///
    /// The work is done on a copy, taken over only once what it holds is stored: a write
    /// that fails, or a caller that goes away mid-way (a request that registers a device
    /// and is dropped when its client gives up), must not leave the tree in memory ahead
    /// of the tree in storage. Otherwise the next checkpoint would sign leaves that were
    /// never stored, and every inclusion proof under it would lack a node.
    async fn catch_up(
        &mut self,
        store: &dyn Store,
        size_max: Option<u64>,
        record: Record,
    ) -> AppResult<()> {
        let mut tree = self.tree.clone();
        let mut last_seq = self.last_seq;
        let mut leaves = Vec::new();
        let mut nodes = Vec::new();
        loop {
            let page = store
                .audit_leaves(last_seq, limits::AUDIT_PAGE_ROWS_MAX)
                .await?;
            let full = page.len() == limits::AUDIT_PAGE_ROWS_MAX as usize;
            let mut reached_max = false;
            for leaf in page {
                if size_max.is_some_and(|max| tree.size() >= max) {
                    reached_max = true;
                    break;
                }
                let index = tree.size();
                if !leaf.keys_match {
                    // Signing would vouch for a row that reports can no longer find.
                    return Err(AppError::Unexpected(format!(
                        "the search keys of audit entry {} (seq {}) no longer match the entry; \
                         refusing to sign over it. Run `haven audit verify`",
                        index + 1,
                        leaf.seq
                    )));
                }
                if record == Record::Yes && index >= self.stored_size {
                    leaves.push(TreeLeaf {
                        index,
                        seq: leaf.seq,
                        hash: leaf.hash,
                    });
                    // Every subtree this leaf completes ends at it, so none was stored yet.
                    tree.push_recording(leaf.hash, |id, hash| {
                        if id.level > 0 {
                            nodes.push(TreeNode { id, hash: *hash });
                        }
                    });
                } else {
                    tree.push(leaf.hash);
                }
                last_seq = leaf.seq;
            }
            let done = reached_max || !full;
            if !leaves.is_empty() && (done || leaves.len() >= TREE_LEAVES_PER_WRITE) {
                store
                    .append_tree(std::mem::take(&mut leaves), std::mem::take(&mut nodes))
                    .await?;
                self.stored_size = tree.size();
                self.tree.clone_from(&tree);
                self.last_seq = last_seq;
            }
            if done {
                self.tree = tree;
                self.last_seq = last_seq;
                return Ok(());
            }
        }
    }

    /// Catches up and, if the log grew, signs and stores a checkpoint of it.
    pub async fn checkpoint(
        &mut self,
        store: &dyn Store,
        now_ms: i64,
    ) -> AppResult<Option<StoredCheckpoint>> {
        self.catch_up(store, None, Record::Yes).await?;
        if self.tree.size() == self.signed_size {
            return Ok(None);
        }
        let checkpoint = Checkpoint {
            origin: LOG_ORIGIN.to_owned(),
            size: self.tree.size(),
            root: self.tree.root(),
        };
        let stored = StoredCheckpoint {
            size: checkpoint.size,
            root: checkpoint.root.to_vec(),
            note: self.signer.sign(&checkpoint),
            created_at_ms: now_ms,
        };
        store.insert_checkpoint(stored.clone()).await?;
        self.signed_size = checkpoint.size;
        Ok(Some(stored))
    }

    pub fn verifier(&self) -> CheckpointVerifier {
        self.signer.verifier()
    }
}

/// A log that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    pub checkpoints: u64,
}

/// Where the stored log departs from what was signed. Positions count entries from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogAltered {
    /// The entries up to `size` do not hash to the signed root: at least one entry in
    /// positions `first..=size` was changed, removed, inserted or moved (entries before
    /// `first` still match the previous checkpoint).
    RootMismatch { size: u64, first: u64 },
    /// The checkpoint's signature does not verify with the log's key.
    BadSignature { size: u64 },
    /// A signed checkpoint covers more entries than the log now holds.
    Truncated { size: u64, entries: u64 },
    /// The entry at `position` is not the one sealed into the tree there (its `seq` or its
    /// hash differ from the stored leaf): it was changed, removed, or another was put in
    /// its place. Found by comparing with the stored tree once a root did not match.
    EntryAltered { position: u64, seq: i64, size: u64 },
    /// The entry at `position` hashes as signed, but the search keys stored beside it (its
    /// time, actor, action, patient or outcome) were changed: reports filtering on them
    /// would miss it, or find it where it does not belong.
    SearchKeysAltered { position: u64, seq: i64 },
}

impl LogAltered {
    /// The first position this finding puts in doubt.
    fn first_position(&self) -> u64 {
        match *self {
            LogAltered::RootMismatch { first, .. } => first,
            LogAltered::BadSignature { size } => size,
            LogAltered::Truncated { entries, .. } => entries + 1,
            LogAltered::EntryAltered { position, .. }
            | LogAltered::SearchKeysAltered { position, .. } => position,
        }
    }
}

impl std::fmt::Display for LogAltered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogAltered::RootMismatch { size, first } if first == size => write!(
                f,
                "entry {size} was altered: the log no longer matches the checkpoint signed at size {size}"
            ),
            LogAltered::RootMismatch { size, first } => write!(
                f,
                "an entry between positions {first} and {size} was altered: the log no longer matches the checkpoint signed at size {size}"
            ),
            LogAltered::BadSignature { size } => {
                write!(
                    f,
                    "the checkpoint at size {size} does not carry a valid signature"
                )
            }
            LogAltered::Truncated { size, entries } => write!(
                f,
                "entries were removed: the log holds {entries} entries but a checkpoint was signed at size {size}"
            ),
            LogAltered::EntryAltered {
                position,
                seq,
                size,
            } => write!(
                f,
                "entry {position} (seq {seq}) was altered, removed or displaced: it no longer matches \
                 the leaf sealed under the checkpoint signed at size {size}"
            ),
            LogAltered::SearchKeysAltered { position, seq } => write!(
                f,
                "entry {position} (seq {seq}) was altered: the search keys stored beside it \
                 (time, actor, action, patient, outcome) no longer say what the signed entry says"
            ),
        }
    }
}

/// Recomputes the tree from storage and checks every stored checkpoint against it.
/// `progress` is told how many entries have been hashed, every page.
pub async fn verify_log(
    store: &dyn Store,
    verifier: &CheckpointVerifier,
    progress: &mut (dyn FnMut(u64) + Send),
) -> AppResult<Result<Verified, LogAltered>> {
    let mut checkpoints = Vec::new();
    loop {
        let after = checkpoints.last().map_or(0, |c: &StoredCheckpoint| c.size);
        let page = store
            .checkpoints(after, limits::CHECKPOINT_PAGE_ROWS_MAX)
            .await?;
        let full = page.len() == limits::CHECKPOINT_PAGE_ROWS_MAX as usize;
        checkpoints.extend(page);
        if !full {
            break;
        }
    }
    let mut pending = checkpoints.iter().peekable();
    let mut tree = CompactTree::new();
    let mut verified_size = 0u64;
    let mut verified_count = 0u64;
    let mut last_seq = 0i64;
    // The seq of the entry at `verified_size`, where a search for the altered entry starts.
    let mut verified_seq = 0i64;

    // Checks every checkpoint whose size the tree has reached.
    let check = |tree: &CompactTree,
                 pending: &mut std::iter::Peekable<std::slice::Iter<'_, StoredCheckpoint>>,
                 verified_size: &mut u64,
                 verified_count: &mut u64|
     -> Result<(), LogAltered> {
        while let Some(stored) = pending.next_if(|c| c.size == tree.size()) {
            let signed = verifier
                .verify(&stored.note)
                .map_err(|_| LogAltered::BadSignature { size: stored.size })?;
            if signed.size != stored.size
                || signed.root.as_slice() != stored.root.as_slice()
                || signed.root != tree.root()
            {
                return Err(LogAltered::RootMismatch {
                    size: stored.size,
                    first: *verified_size + 1,
                });
            }
            *verified_size = stored.size;
            *verified_count += 1;
        }
        Ok(())
    };

    // The first row whose search keys disagree with its entry. The entries go on being
    // checked: an entry altered before it, found only at the next checkpoint, comes first.
    let mut keys_altered: Option<LogAltered> = None;
    let earliest = |found: LogAltered, keys_altered: Option<LogAltered>| match keys_altered {
        Some(keys) if keys.first_position() <= found.first_position() => keys,
        _ => found,
    };

    loop {
        let page = store
            .audit_leaves(last_seq, limits::AUDIT_PAGE_ROWS_MAX)
            .await?;
        let full = page.len() == limits::AUDIT_PAGE_ROWS_MAX as usize;
        for leaf in &page {
            tree.push(leaf.hash);
            last_seq = leaf.seq;
            if !leaf.keys_match && keys_altered.is_none() {
                keys_altered = Some(LogAltered::SearchKeysAltered {
                    position: tree.size(),
                    seq: leaf.seq,
                });
            }
            if let Err(altered) =
                check(&tree, &mut pending, &mut verified_size, &mut verified_count)
            {
                let found = pinpoint(store, altered, verified_size, verified_seq).await?;
                return Ok(Err(earliest(found, keys_altered)));
            }
            if verified_size == tree.size() {
                verified_seq = last_seq;
            }
        }
        progress(tree.size());
        if !full {
            break;
        }
    }
    if let Some(next) = pending.next() {
        // The log ends before a signed size: entries were removed, or inserted ones made
        // the tree skip past it (then the root at that size differs).
        let altered = if next.size > tree.size() {
            LogAltered::Truncated {
                size: next.size,
                entries: tree.size(),
            }
        } else {
            LogAltered::RootMismatch {
                size: next.size,
                first: verified_size + 1,
            }
        };
        let found = pinpoint(store, altered, verified_size, verified_seq).await?;
        return Ok(Err(earliest(found, keys_altered)));
    }
    if let Some(keys) = keys_altered {
        return Ok(Err(keys));
    }
    Ok(Ok(Verified {
        entries: tree.size(),
        checkpoints: verified_count,
    }))
}

/// Narrows a root mismatch to the one entry that differs from the stored tree's leaf at its
/// position, comparing from the last verified checkpoint on: checkpoints may be far apart,
/// and "an entry among these 50,000" is no help to an investigator. Without stored leaves
/// (a log signed before they were kept) the range is the answer.
async fn pinpoint(
    store: &dyn Store,
    altered: LogAltered,
    verified_size: u64,
    verified_seq: i64,
) -> AppResult<LogAltered> {
    // A truncation already says what happened; only a mismatched root needs narrowing.
    let LogAltered::RootMismatch { size, .. } = altered else {
        return Ok(altered);
    };
    let (mut index, mut after_seq) = (verified_size, verified_seq);
    while index < size {
        let stored = store
            .tree_leaves(index, limits::AUDIT_PAGE_ROWS_MAX)
            .await?;
        if stored.is_empty() {
            break;
        }
        let entries = store
            .audit_leaves(after_seq, limits::AUDIT_PAGE_ROWS_MAX)
            .await?;
        for (at, sealed) in stored.iter().enumerate() {
            if sealed.index >= size {
                return Ok(altered);
            }
            match entries.get(at) {
                Some(entry) if entry.seq == sealed.seq && entry.hash == sealed.hash => {}
                _ => {
                    return Ok(LogAltered::EntryAltered {
                        position: sealed.index + 1,
                        seq: sealed.seq,
                        size,
                    });
                }
            }
        }
        index += stored.len() as u64;
        after_seq = entries.get(stored.len() - 1).map_or(after_seq, |e| e.seq);
    }
    Ok(altered)
}

impl App {
    /// Signed checkpoints with `size > after_size`, for witnesses outside Haven.
    ///
    /// Checkpoints hold sizes and root hashes, no entries and no health data, so an allowed
    /// read is not itself audited: a witness polling every second would otherwise append an
    /// entry each time, and every entry calls for a new checkpoint. A denied read is audited.
    pub async fn audit_checkpoints(
        &self,
        context: &RequestContext,
        after_size: u64,
        limit: u32,
    ) -> AppResult<Vec<StoredCheckpoint>> {
        self.gate
            .authorize_unaudited_read(context, haven_domain::Resource::AuditCheckpoints)
            .await?;
        Ok(self
            .store
            .checkpoints(after_size, limit.min(limits::CHECKPOINT_PAGE_ROWS_MAX))
            .await?)
    }

    /// The most recent signed checkpoint, if any.
    pub async fn latest_audit_checkpoint(
        &self,
        context: &RequestContext,
    ) -> AppResult<Option<StoredCheckpoint>> {
        self.gate
            .authorize_unaudited_read(context, haven_domain::Resource::AuditCheckpoints)
            .await?;
        Ok(self.store.latest_checkpoint().await?)
    }
}

impl App {
    /// An audit report (ONC 170.315(d)(3)): entries matching `query`, sorted and paged.
    /// Only reviewers (auditor, privacy officer) may run one, and every report is itself
    /// recorded in the log before it is answered.
    pub async fn audit_report(
        &self,
        context: &RequestContext,
        query: &AuditQuery,
    ) -> AppResult<Vec<haven_audit::StoredAuditEvent>> {
        self.gate.authorize_audit_query(context).await?;
        Ok(self.store.query_audit(query).await?)
    }
}

/// The fields of one exported entry (one JSON line of `haven audit export`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportedEntry {
    seq: u64,
    at_ms: i64,
    actor: Option<String>,
    role: Option<String>,
    organisation: Option<String>,
    session: Option<String>,
    client_app: Option<String>,
    action: String,
    patient: Option<String>,
    resource_type: Option<String>,
    resource_id: Option<String>,
    outcome: String,
    reason: String,
    purpose_of_use: Option<String>,
    request_id: Option<String>,
    source_ip: Option<String>,
    user_agent: Option<String>,
}

impl ExportedEntry {
    fn leaf_hash(&self) -> haven_audit::merkle::Hash {
        haven_audit::leaf_hash_of_fields(
            self.seq,
            self.at_ms,
            &[
                self.actor.as_deref(),
                self.role.as_deref(),
                self.organisation.as_deref(),
                self.session.as_deref(),
                self.client_app.as_deref(),
                Some(self.action.as_str()),
                self.patient.as_deref(),
                self.resource_type.as_deref(),
                self.resource_id.as_deref(),
                Some(self.outcome.as_str()),
                Some(self.reason.as_str()),
                self.purpose_of_use.as_deref(),
                self.request_id.as_deref(),
                self.source_ip.as_deref(),
                self.user_agent.as_deref(),
            ],
        )
    }
}

/// Writes every entry, oldest first, as JSON lines. The export is recorded in the log
/// first (fail closed); entries hold ids and codes, never health data.
pub async fn export_log(
    store: &dyn Store,
    now_ms: i64,
    out: &mut dyn std::io::Write,
) -> AppResult<u64> {
    let mut event = crate::keys::system_event(
        now_ms,
        haven_audit::AuditAction::Export,
        None,
        "audit_log_exported",
    );
    event.resource_type = Some("AuditEvent".to_owned());
    store
        .append_audit(vec![event])
        .await
        .map_err(|_| AppError::AuditUnavailable)?;
    let mut last_seq = 0;
    let mut written = 0u64;
    loop {
        let page = store
            .audit_events(last_seq, limits::AUDIT_PAGE_ROWS_MAX)
            .await?;
        for stored in &page {
            let event = &stored.event;
            let entry = ExportedEntry {
                seq: u64::try_from(stored.seq)
                    .map_err(|_| AppError::Unexpected("negative seq".into()))?,
                at_ms: event.at_ms,
                actor: event.actor.clone(),
                role: event.role.clone(),
                organisation: event.organisation.clone(),
                session: event.session.clone(),
                client_app: event.client_app.clone(),
                action: event.action.as_str().to_owned(),
                patient: event.patient.map(|p| p.to_string()),
                resource_type: event.resource_type.clone(),
                resource_id: event.resource_id.clone(),
                outcome: event.outcome.as_str().to_owned(),
                reason: event.reason.clone(),
                purpose_of_use: event.purpose_of_use.clone(),
                request_id: event.origin.request_id.clone(),
                source_ip: event.origin.source_ip.clone(),
                user_agent: event.origin.user_agent.clone(),
            };
            let line =
                serde_json::to_string(&entry).map_err(|e| AppError::Unexpected(e.to_string()))?;
            writeln!(out, "{line}")
                .map_err(|e| AppError::Unexpected(format!("writing the export: {e}")))?;
            last_seq = stored.seq;
            written += 1;
        }
        if page.len() < limits::AUDIT_PAGE_ROWS_MAX as usize {
            break;
        }
    }
    out.flush()
        .map_err(|e| AppError::Unexpected(format!("writing the export: {e}")))?;
    Ok(written)
}

/// Why an export did not verify.
#[derive(Debug, thiserror::Error)]
pub enum ExportMismatch {
    #[error("the checkpoint: {0}")]
    Checkpoint(#[from] haven_audit::checkpoint::CheckpointError),
    #[error("line {line}: {message}")]
    Line { line: u64, message: String },
    #[error("the export holds {entries} entries but the checkpoint covers {size}")]
    TooShort { entries: u64, size: u64 },
    #[error(
        "the first {size} entries do not hash to the checkpoint's root: the export was altered, or is not of this log"
    )]
    RootMismatch { size: u64 },
}

/// Verifies exported entries against a signed checkpoint using only the log's public key.
/// Returns the checkpoint's size; entries after it are not covered and are ignored.
pub fn verify_export(
    entries: impl std::io::BufRead,
    note: &str,
    verifier: &CheckpointVerifier,
) -> Result<u64, ExportMismatch> {
    let checkpoint = verifier.verify(note)?;
    let mut tree = CompactTree::new();
    for (index, line) in entries.lines().enumerate() {
        if tree.size() == checkpoint.size {
            break;
        }
        let number = index as u64 + 1;
        let line = line.map_err(|e| ExportMismatch::Line {
            line: number,
            message: e.to_string(),
        })?;
        let entry: ExportedEntry =
            serde_json::from_str(&line).map_err(|e| ExportMismatch::Line {
                line: number,
                message: e.to_string(),
            })?;
        tree.push(entry.leaf_hash());
    }
    if tree.size() < checkpoint.size {
        return Err(ExportMismatch::TooShort {
            entries: tree.size(),
            size: checkpoint.size,
        });
    }
    if tree.root() != checkpoint.root {
        return Err(ExportMismatch::RootMismatch {
            size: checkpoint.size,
        });
    }
    Ok(checkpoint.size)
}

/// The actor recorded for a verification of the log run inside Haven.
pub const VERIFIER_ACTOR: &str = "system:verifier";

/// A full verification of the log run inside Haven at a reviewer's request, as recorded
/// in the log itself (so the last one is known after a restart, and cannot be quietly
/// rewritten).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogVerification {
    pub at_ms: i64,
    /// Whether every entry and checkpoint checked out.
    pub verified: bool,
    /// For a verified log, how many entries; otherwise what was found, in words.
    pub detail: String,
}

impl LogVerification {
    fn from_entry(entry: &haven_audit::StoredAuditEvent) -> Self {
        Self {
            at_ms: entry.event.at_ms,
            verified: entry.event.reason == "log_verified",
            detail: entry.event.resource_id.clone().unwrap_or_default(),
        }
    }
}

impl App {
    /// Recomputes the whole tree and checks every checkpoint, as `haven audit verify` does,
    /// for a reviewer (auditor, privacy officer); the request and the result both go into
    /// the log. One runs at a time: another request meanwhile is told to try again.
    pub async fn verify_audit_log(&self, context: &RequestContext) -> AppResult<LogVerification> {
        self.gate.authorize_audit_query(context).await?;
        let Ok(_running) = self.verifying.try_lock() else {
            return Err(AppError::Busy);
        };
        let outcome = verify_log(&*self.store, &self.audit_verifier, &mut |_| {}).await?;
        let (verified, detail) = match &outcome {
            Ok(verified) => (
                true,
                format!(
                    "{} entries and {} checkpoints verified",
                    verified.entries, verified.checkpoints
                ),
            ),
            Err(altered) => (false, altered.to_string()),
        };
        let now_ms = self.clock.now_ms();
        let mut event = crate::keys::system_event(
            now_ms,
            AuditAction::AuditQuery,
            None,
            if verified {
                "log_verified"
            } else {
                "log_altered"
            },
        );
        event.actor = Some(VERIFIER_ACTOR.to_owned());
        event.organisation = context.actor.organisation.map(|o| o.to_string());
        event.resource_type = Some("AuditLog".to_owned());
        event.resource_id = Some(detail.clone());
        event.purpose_of_use = Some(haven_domain::PurposeOfUse::Compliance.code().to_owned());
        self.gate.record_system(event).await?;
        Ok(LogVerification {
            at_ms: now_ms,
            verified,
            detail,
        })
    }

    /// The last verification run inside Haven, from the log; `None` if there was none.
    /// Reading it is an audit query like any other, and recorded.
    pub async fn last_audit_verification(
        &self,
        context: &RequestContext,
    ) -> AppResult<Option<LogVerification>> {
        self.gate.authorize_audit_query(context).await?;
        let last = self
            .store
            .query_audit(&AuditQuery {
                actor: Some(VERIFIER_ACTOR.to_owned()),
                action: Some(AuditAction::AuditQuery),
                sort: haven_store::AuditSortField::Seq,
                descending: true,
                limit: 1,
                ..AuditQuery::default()
            })
            .await?;
        Ok(last.first().map(LogVerification::from_entry))
    }
}
