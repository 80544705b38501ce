//! Persistence for Haven: the [`Store`] trait and its two engines.
//!
//! - [`sqlite`]: the embedded default. Reads run inline on plain `rusqlite` connections
//!   (see `sqlite::readers` for why). One writer task owns the only write connection and
//!   commits whatever has queued up in one transaction (group commit); with WAL and
//!   `synchronous=FULL`, a caller is answered only after the commit has been fsynced.
//! - [`postgres`]: for deployments that outgrow one machine; many stateless instances over
//!   one database.
//!
//! The store sees sealed bytes, key ids and blind-index tokens only: it has no way to read
//! health data, and no type in this crate can carry plaintext health data.
//! Migrations live in `migrations/<engine>/` and are applied at start-up.

#![forbid(unsafe_code)]

use std::fmt;

use haven_audit::{AuditEvent, StoredAuditEvent};
use haven_domain::{InvitationId, OrganisationId, PatientId, SessionId, TokenId, UserId};

pub mod blobs;
pub mod care;
pub mod fhir;
pub mod identity;
pub mod messaging;
pub mod postgres;
pub mod sqlite;
pub mod visits;

pub use identity::{
    NewUser, Redeemed, SessionRecord, StoredChallenge, StoredInvitation, StoredOrganisation,
    StoredPasskey, StoredSession, StoredUser,
};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Bounds applied by every engine.
pub mod limits {
    /// The most rows one list query returns.
    pub const PAGE_ROWS_MAX: u32 = 100;
    /// The most search filters one query may combine.
    pub const FILTERS_MAX: usize = 4;
    /// The most writes one group commit takes; more wait for the next one.
    pub const GROUP_COMMIT_WRITES_MAX: usize = 512;
    /// The most writes waiting for the SQLite writer before callers wait to enqueue.
    pub const WRITE_QUEUE_DEPTH_MAX: usize = 4096;
    /// The most audit entries one read of the log returns.
    pub const AUDIT_PAGE_ROWS_MAX: u32 = 1000;
    /// How far into a report's results a page may start (offset paging).
    pub const AUDIT_REPORT_OFFSET_MAX: u64 = 1_000_000;
    /// The most checkpoints one read returns.
    pub const CHECKPOINT_PAGE_ROWS_MAX: u32 = 1000;
    /// The most rows a key rotation step re-wraps at once.
    pub const REWRAP_BATCH_ROWS_MAX: u32 = 500;
    /// The most audit-tree rows (leaves and nodes) one `append_tree` writes: the
    /// checkpointer writes up to 16 pages of `AUDIT_PAGE_ROWS_MAX` leaves at once, and n
    /// leaves complete fewer than n + 64 subtrees.
    pub const TREE_WRITE_ROWS_MAX: usize = 40_000;
    /// The most stored tree hashes one `tree_nodes` read returns: a proof needs at most
    /// 64 ranges of at most 64 perfect subtrees each.
    pub const TREE_NODES_READ_MAX: usize = 4096;
    /// The most organisations one listing returns.
    pub const ORGANISATIONS_LISTED_MAX: u32 = 1000;
    /// The most sessions of one user listed.
    pub const USER_SESSIONS_LISTED_MAX: u32 = 100;
    /// The most recovery codes a user holds at once.
    pub const RECOVERY_CODES_MAX: usize = 16;
    /// The most users one listing returns.
    pub const USERS_LISTED_MAX: u32 = 1000;
    /// The most passkeys one user may register.
    pub const PASSKEYS_PER_USER_MAX: u32 = 20;
    /// The most members one patient's care team may have.
    pub const CARE_TEAM_MEMBERS_MAX: u32 = 100;
    /// The most patients one relationship look-up covers (a page of search results).
    pub const RELATIONS_LOOKUP_MAX: usize = 100;
    /// The most delegations one patient's listing returns, and the most live (unrevoked,
    /// unexpired) ones a patient may have.
    pub const DELEGATIONS_PER_PATIENT_MAX: u32 = 20;
    /// The most notifications one listing returns (newest first).
    pub const NOTIFICATIONS_LISTED_MAX: u32 = 100;
    /// Guests one visit may have been given invitations for; a listing shows them all.
    pub const VISIT_GUESTS_LISTED_MAX: u32 = 16;
    /// Devices one person may have registered at once.
    pub const DEVICES_PER_USER_MAX: u32 = 10;
    /// Participants of one conversation, removed ones included.
    pub const THREAD_PARTICIPANTS_MAX: u32 = 50;
    /// Devices one message may be sealed to: every participant's devices.
    pub const MESSAGE_KEYS_MAX: usize = (THREAD_PARTICIPANTS_MAX * DEVICES_PER_USER_MAX) as usize;
    /// Conversations listed in one inbox page.
    pub const THREADS_LISTED_MAX: u32 = 200;
    /// Messages in one page of a conversation.
    pub const MESSAGES_PAGE_MAX: u32 = 200;
    /// People whose devices one look-up may ask for.
    pub const DEVICE_OWNERS_LOOKUP_MAX: usize = THREAD_PARTICIPANTS_MAX as usize;
    /// The most writes one FHIR batch (a transaction Bundle) applies at once.
    pub const RESOURCE_WRITES_MAX: usize = 1000;
    /// The most search tokens one resource version carries.
    pub const RESOURCE_TOKENS_MAX: usize = 512;
    /// The most tokens one search filter may OR together (a date range's buckets).
    pub const FILTER_TOKENS_MAX: usize = 256;
    /// The most search filters one resource query may combine.
    pub const RESOURCE_FILTERS_MAX: usize = 6;
    /// The most patients a search across a caller's related patients covers.
    pub const RELATED_PATIENTS_MAX: u32 = 1000;
    /// The most rows one resource search or history read returns.
    pub const RESOURCE_ROWS_MAX: u32 = 1001;
    /// How long expired WebAuthn challenges are kept before they are swept.
    pub const CHALLENGE_TTL_MS: i64 = 10 * 60 * 1000;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or answered with an error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// An error of the embedded engine's inline readers.
    #[error("database error: {0}")]
    Embedded(#[from] rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The store has shut down (the writer task ended).
    #[error("the store is shutting down")]
    Closed,
    /// A row holds something no version of Haven writes.
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    #[error("the record already exists")]
    AlreadyExists,
    /// A batch of resource writes lost a precondition while it was being applied; nothing
    /// of it was kept.
    #[error("a resource changed while the batch was applied")]
    ResourceConflict(fhir::WriteConflict),
    /// A caller asked for more than a named limit allows (a bug in the caller).
    #[error("{what} exceeds the limit of {max}")]
    LimitExceeded { what: &'static str, max: usize },
    /// A file of the file blob store could not be read or written.
    #[error("file store error: {0}")]
    Io(String),
    /// The caller passed a value no engine may store (a programming error, not bad data).
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// A message was sealed to a device that is not a current participant's (the writer
    /// rolls the message back; callers see [`messaging::SendOutcome::NotARecipient`]).
    #[error("device {0} is not a recipient")]
    NotARecipient(uuid::Uuid),
}

/// When repeated wrong guesses lock an account (see [`Store::claim_guess`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuessLock {
    pub after_failures: i64,
    pub first_ms: i64,
    pub max_ms: i64,
}

/// The statement behind [`Store::claim_guess`] on both engines (`$n` are positional on
/// SQLite too): failures + 1, and the lock `first_ms << (failures + 1 - after)` capped at
/// `max_ms` once that reaches `after`.
pub(crate) const CLAIM_GUESS_SQL: &str = "UPDATE users SET failed_logins = failed_logins + 1,
         locked_until_ms = CASE WHEN failed_logins + 1 >= $1
             THEN $2 + MIN($4, $3 << CAST(MIN(failed_logins + 1 - $1, 12) AS INTEGER))
             ELSE locked_until_ms END
     WHERE id = $5 AND locked_until_ms <= $2";

/// A tree hash from a stored column, which must be exactly 32 bytes.
pub(crate) fn tree_hash(
    table: &'static str,
    bytes: &[u8],
) -> StoreResult<haven_audit::merkle::Hash> {
    bytes.try_into().map_err(|_| StoreError::Corrupt {
        table,
        detail: format!("a tree hash of {} bytes", bytes.len()),
    })
}

/// Checks the size of an `append_tree` or `tree_nodes` call against its limit.
pub(crate) fn check_rows_max(what: &'static str, rows: usize, max: usize) -> StoreResult<()> {
    if rows > max {
        return Err(StoreError::LimitExceeded { what, max });
    }
    Ok(())
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Which blind index a search token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SearchKind {
    Family,
    BirthDate,
    Identifier,
}

impl SearchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SearchKind::Family => "family",
            SearchKind::BirthDate => "birth_date",
            SearchKind::Identifier => "identifier",
        }
    }
}

/// A blind-index token and the index it belongs to.
#[derive(Clone, PartialEq, Eq)]
pub struct SearchToken {
    pub kind: SearchKind,
    pub token: Vec<u8>,
}

impl fmt::Debug for SearchToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SearchToken({}, {} bytes)",
            self.kind.as_str(),
            self.token.len()
        )
    }
}

/// A subject (patient) key as stored: wrapped by a root key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubjectKey {
    pub subject: PatientId,
    pub key_id: Vec<u8>,
    pub root_key_id: Vec<u8>,
    pub wrapped: Vec<u8>,
}

/// A new patient, sealed, with its freshly wrapped subject key.
#[derive(Debug, Clone)]
pub struct NewPatient {
    pub id: PatientId,
    pub sealed: Vec<u8>,
    pub subject_key: StoredSubjectKey,
    pub search: Vec<SearchToken>,
    pub now_ms: i64,
}

/// A replacement of a patient's sealed record, if it is still at `expected_version`.
#[derive(Debug, Clone)]
pub struct PatientUpdate {
    pub id: PatientId,
    pub expected_version: i64,
    pub sealed: Vec<u8>,
    pub search: Vec<SearchToken>,
    pub now_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    Updated { version: i64 },
    VersionMismatch { current: i64 },
    NotFound,
}

/// A patient row joined with its subject key (`None` once crypto-shredded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPatient {
    pub id: PatientId,
    pub version: i64,
    pub sealed: Vec<u8>,
    pub subject_key: Option<StoredSubjectKey>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A page of patients: all filters must match (AND), ordered by id, after `after`.
#[derive(Debug, Clone, Default)]
pub struct PatientQuery {
    pub filters: Vec<SearchToken>,
    /// Only patients on this user's care team ("my patients").
    pub cared_for_by: Option<UserId>,
    pub after: Option<PatientId>,
    pub limit: u32,
}

/// An API token as stored: only the SHA-256 of the secret, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub id: TokenId,
    pub token_hash: Vec<u8>,
    pub role: String,
    pub label: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    /// For a patient-role token: the one patient it stands for.
    pub patient: Option<PatientId>,
}

/// A key of the deployment itself (such as the blind-index key), wrapped by a root key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSystemKey {
    pub name: String,
    pub root_key_id: Vec<u8>,
    pub wrapped: Vec<u8>,
}

/// An audit entry's position and Merkle leaf hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditLeaf {
    pub seq: i64,
    pub hash: haven_audit::merkle::Hash,
    /// Whether the row's search keys (the columns reports filter on: time, actor, action,
    /// patient, outcome) say what its entry says. A key changed behind Haven's back could
    /// hide the entry from a report, or show it in someone else's access log, while the
    /// entry itself still hashes right; `haven audit verify` names such a row.
    pub keys_match: bool,
}

/// A leaf of the audit log's Merkle tree as stored: the entry's position in the tree (from
/// 0), its `seq`, and its leaf hash as computed when the checkpointer added it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeLeaf {
    pub index: u64,
    pub seq: i64,
    pub hash: haven_audit::merkle::Hash,
}

/// A stored perfect subtree of the audit log's Merkle tree, above the leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeNode {
    pub id: haven_audit::merkle::NodeId,
    pub hash: haven_audit::merkle::Hash,
}

/// A signed checkpoint of the audit log as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// How many entries (in `seq` order) the checkpoint covers.
    pub size: u64,
    pub root: Vec<u8>,
    /// The signed note, verifiable with the log's public key alone.
    pub note: String,
    pub created_at_ms: i64,
}

/// A field an audit report can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditSortField {
    #[default]
    Seq,
    At,
    Actor,
    Role,
    Organisation,
    Session,
    ClientApp,
    Action,
    Patient,
    ResourceType,
    ResourceId,
    Outcome,
    Reason,
    PurposeOfUse,
    RequestId,
    SourceIp,
    UserAgent,
}

impl AuditSortField {
    pub const ALL: [AuditSortField; 17] = [
        AuditSortField::Seq,
        AuditSortField::At,
        AuditSortField::Actor,
        AuditSortField::Role,
        AuditSortField::Organisation,
        AuditSortField::Session,
        AuditSortField::ClientApp,
        AuditSortField::Action,
        AuditSortField::Patient,
        AuditSortField::ResourceType,
        AuditSortField::ResourceId,
        AuditSortField::Outcome,
        AuditSortField::Reason,
        AuditSortField::PurposeOfUse,
        AuditSortField::RequestId,
        AuditSortField::SourceIp,
        AuditSortField::UserAgent,
    ];

    /// The name used in report requests (`sort=at`, `sort=-actor`).
    pub fn name(self) -> &'static str {
        match self {
            AuditSortField::Seq => "seq",
            AuditSortField::At => "at",
            AuditSortField::Actor => "actor",
            AuditSortField::Role => "role",
            AuditSortField::Organisation => "organisation",
            AuditSortField::Session => "session",
            AuditSortField::ClientApp => "client_app",
            AuditSortField::Action => "action",
            AuditSortField::Patient => "patient",
            AuditSortField::ResourceType => "resource_type",
            AuditSortField::ResourceId => "resource_id",
            AuditSortField::Outcome => "outcome",
            AuditSortField::Reason => "reason",
            AuditSortField::PurposeOfUse => "purpose_of_use",
            AuditSortField::RequestId => "request_id",
            AuditSortField::SourceIp => "source_ip",
            AuditSortField::UserAgent => "user_agent",
        }
    }

    /// The column; from this fixed list only, never from request text.
    fn column(self) -> &'static str {
        match self {
            AuditSortField::Seq => "seq",
            AuditSortField::At => "at_ms",
            AuditSortField::Patient => "patient_id",
            AuditSortField::Session => "session_id",
            other => other.name(),
        }
    }
}

/// An audit report: every given filter must match; results sorted, then paged by offset.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Entries at or after this time (ms since the epoch).
    pub from_ms: Option<i64>,
    /// Entries before this time.
    pub to_ms: Option<i64>,
    pub actor: Option<String>,
    pub patient: Option<PatientId>,
    pub action: Option<haven_audit::AuditAction>,
    pub outcome: Option<haven_audit::Outcome>,
    /// Entries older than this one (`seq <`): keyset paging for a newest-first list that
    /// keeps growing at the top, where an offset would shift.
    pub before_seq: Option<i64>,
    pub sort: AuditSortField,
    pub descending: bool,
    pub offset: u64,
    pub limit: u32,
}

/// A value bound into an audit report's SQL.
#[derive(Debug, Clone)]
pub(crate) enum AuditBind {
    Integer(i64),
    Text(String),
    Uuid(uuid::Uuid),
}

impl AuditQuery {
    /// The report's SQL, with placeholders written by `placeholder(n)` (1-based), and the
    /// values to bind in order. Both engines run the same statement.
    pub(crate) fn sql(&self, placeholder: impl Fn(usize) -> String) -> (String, Vec<AuditBind>) {
        let mut binds = Vec::new();
        let mut conditions = Vec::new();
        let bind = |value: AuditBind, binds: &mut Vec<AuditBind>| {
            binds.push(value);
            placeholder(binds.len())
        };
        if let Some(from) = self.from_ms {
            conditions.push(format!(
                "at_ms >= {}",
                bind(AuditBind::Integer(from), &mut binds)
            ));
        }
        if let Some(to) = self.to_ms {
            conditions.push(format!(
                "at_ms < {}",
                bind(AuditBind::Integer(to), &mut binds)
            ));
        }
        if let Some(actor) = &self.actor {
            conditions.push(format!(
                "actor = {}",
                bind(AuditBind::Text(actor.clone()), &mut binds)
            ));
        }
        if let Some(patient) = self.patient {
            conditions.push(format!(
                "patient_id = {}",
                bind(AuditBind::Uuid(patient.as_uuid()), &mut binds)
            ));
        }
        if let Some(action) = self.action {
            conditions.push(format!(
                "action = {}",
                bind(AuditBind::Text(action.as_str().to_owned()), &mut binds)
            ));
        }
        if let Some(outcome) = self.outcome {
            conditions.push(format!(
                "outcome = {}",
                bind(AuditBind::Text(outcome.as_str().to_owned()), &mut binds)
            ));
        }
        if let Some(before) = self.before_seq {
            conditions.push(format!(
                "seq < {}",
                bind(AuditBind::Integer(before), &mut binds)
            ));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let direction = if self.descending { "DESC" } else { "ASC" };
        let limit = bind(
            AuditBind::Integer(i64::from(self.limit.clamp(1, limits::AUDIT_PAGE_ROWS_MAX))),
            &mut binds,
        );
        let offset = bind(
            AuditBind::Integer(
                i64::try_from(self.offset.min(limits::AUDIT_REPORT_OFFSET_MAX)).unwrap_or(0),
            ),
            &mut binds,
        );
        // Ties (and NULLs, placed last either way) fall back to log order, so pages are
        // stable and both engines agree.
        let sql = format!(
            "SELECT {AUDIT_ENTRY_COLUMNS}
             FROM audit_events{filter}
             ORDER BY {column} {direction} NULLS LAST, seq {direction}
             LIMIT {limit} OFFSET {offset}",
            column = self.sort.column(),
        );
        (sql, binds)
    }
}

/// Everything Haven persists. Each method is one atomic, durable step: when it returns `Ok`,
/// the change has been committed and survives a crash.
#[async_trait::async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Checks that the database answers (readiness).
    async fn ping(&self) -> StoreResult<()>;

    async fn insert_patient(&self, patient: NewPatient) -> StoreResult<()>;
    async fn update_patient(&self, update: PatientUpdate) -> StoreResult<UpdateOutcome>;
    async fn get_patient(&self, id: PatientId) -> StoreResult<Option<StoredPatient>>;
    async fn list_patients(&self, query: &PatientQuery) -> StoreResult<Vec<StoredPatient>>;

    /// Destroys a subject's key and search tokens (crypto-shredding); sealed rows stay,
    /// unreadable. Returns whether there was a key to destroy.
    async fn shred_subject(&self, subject: PatientId, now_ms: i64) -> StoreResult<bool>;
    /// Subject keys wrapped by any root other than `root_key_id`, at most `limit`.
    async fn subject_keys_not_under(
        &self,
        root_key_id: &[u8],
        limit: u32,
    ) -> StoreResult<Vec<StoredSubjectKey>>;
    /// Replaces a wrapped subject key if it is still `previous.wrapped`.
    async fn rewrap_subject_key(
        &self,
        previous: &StoredSubjectKey,
        root_key_id: &[u8],
        wrapped: &[u8],
    ) -> StoreResult<bool>;
    /// How many keys (subject and system) any root other than `root_key_id` still wraps.
    async fn count_keys_not_under(&self, root_key_id: &[u8]) -> StoreResult<u64>;
    /// Which root keys wrap at least one stored key.
    async fn root_keys_in_use(&self) -> StoreResult<Vec<Vec<u8>>>;

    async fn system_key(&self, name: &str) -> StoreResult<Option<StoredSystemKey>>;
    /// Stores `key` unless one of that name exists; returns the one that is stored, so two
    /// instances starting at once agree on a single key.
    async fn put_system_key_if_absent(
        &self,
        key: StoredSystemKey,
        now_ms: i64,
    ) -> StoreResult<StoredSystemKey>;
    async fn system_keys(&self) -> StoreResult<Vec<StoredSystemKey>>;
    async fn rewrap_system_key(
        &self,
        previous: &StoredSystemKey,
        root_key_id: &[u8],
        wrapped: &[u8],
    ) -> StoreResult<bool>;

    async fn insert_token(&self, token: StoredToken) -> StoreResult<()>;
    async fn token_by_hash(&self, token_hash: &[u8]) -> StoreResult<Option<StoredToken>>;

    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<()>;
    /// Audit entries with `seq > after_seq`, oldest first, at most `limit`. Entries become
    /// visible in `seq` order: no entry ever appears behind one already visible.
    async fn audit_events(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<StoredAuditEvent>>;

    /// The leaf hashes of entries with `seq > after_seq`, oldest first, at most `limit`:
    /// what verification and the checkpointer need, without building every entry.
    async fn audit_leaves(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<AuditLeaf>>;

    /// An audit report: the entries matching `query`, sorted and paged.
    async fn query_audit(&self, query: &AuditQuery) -> StoreResult<Vec<StoredAuditEvent>>;

    /// Stores a signed checkpoint; a second one for the same size is ignored.
    async fn insert_checkpoint(&self, checkpoint: StoredCheckpoint) -> StoreResult<()>;
    /// Checkpoints with `size > after_size`, smallest first, at most `limit`.
    async fn checkpoints(&self, after_size: u64, limit: u32) -> StoreResult<Vec<StoredCheckpoint>>;
    async fn latest_checkpoint(&self) -> StoreResult<Option<StoredCheckpoint>>;
    /// The checkpoint signed at exactly `size`, if there is one.
    async fn checkpoint_at(&self, size: u64) -> StoreResult<Option<StoredCheckpoint>>;

    /// Stores leaves and perfect subtrees of the audit tree, atomically. Positions already
    /// stored are left as they are (two instances may record the same nodes), so a call
    /// can be repeated after a crash. At most [`limits::TREE_WRITE_ROWS_MAX`] rows in all.
    async fn append_tree(&self, leaves: Vec<TreeLeaf>, nodes: Vec<TreeNode>) -> StoreResult<()>;
    /// How many leaves of the audit tree are stored (they are stored from position 0 on,
    /// without gaps).
    async fn tree_size(&self) -> StoreResult<u64>;
    /// The stored leaf of the entry `seq`.
    async fn tree_leaf_by_seq(&self, seq: i64) -> StoreResult<Option<TreeLeaf>>;
    /// Stored leaves from position `from_index` on, in order, at most `limit`.
    async fn tree_leaves(&self, from_index: u64, limit: u32) -> StoreResult<Vec<TreeLeaf>>;
    /// The hashes of the perfect subtrees `ids` (level 0 from the stored leaves), in the
    /// order asked, `None` where one is not stored. At most [`limits::TREE_NODES_READ_MAX`].
    async fn tree_nodes(
        &self,
        ids: &[haven_audit::merkle::NodeId],
    ) -> StoreResult<Vec<Option<haven_audit::merkle::Hash>>>;

    /// Where the SIEM export to collector `name` stands: the `seq` of the last audit entry
    /// sent to it, or `None` if nothing has been sent yet.
    async fn siem_cursor(&self, name: &str) -> StoreResult<Option<i64>>;
    /// Records that every entry up to `after_seq` has been sent to collector `name`. The
    /// cursor only moves forward: a smaller `after_seq` than the stored one changes nothing,
    /// so a late or repeated update can never make the export skip back or ahead of itself.
    /// A negative `after_seq` is refused ([`StoreError::Invalid`]).
    async fn set_siem_cursor(&self, name: &str, after_seq: i64, now_ms: i64) -> StoreResult<()>;

    // --- Identity -----------------------------------------------------------------------

    async fn insert_organisation(&self, organisation: StoredOrganisation) -> StoreResult<()>;
    async fn organisation(&self, id: OrganisationId) -> StoreResult<Option<StoredOrganisation>>;
    /// Replaces an organisation's name and policies; returns whether it exists.
    async fn update_organisation(&self, organisation: StoredOrganisation) -> StoreResult<bool>;
    /// Every organisation, oldest first, at most [`limits::ORGANISATIONS_LISTED_MAX`].
    async fn organisations(&self) -> StoreResult<Vec<StoredOrganisation>>;

    /// Creates a user with their subject key; `AlreadyExists` if the login is taken.
    async fn insert_user(&self, user: NewUser) -> StoreResult<()>;
    async fn user(&self, id: UserId) -> StoreResult<Option<StoredUser>>;
    async fn user_by_login(&self, login_index: &[u8]) -> StoreResult<Option<StoredUser>>;
    /// The users of an organisation, oldest first, at most [`limits::USERS_LISTED_MAX`].
    async fn organisation_users(
        &self,
        organisation: OrganisationId,
    ) -> StoreResult<Vec<StoredUser>>;
    /// Disables (or re-enables, with `None`) a user; returns whether they exist.
    async fn set_user_disabled(
        &self,
        user: UserId,
        disabled_at_ms: Option<i64>,
    ) -> StoreResult<bool>;
    /// Replaces the password hash and resets failed sign-ins.
    async fn set_password(&self, user: UserId, password_hash: &str, now_ms: i64)
    -> StoreResult<()>;
    /// Stores a (sealed) TOTP secret, pending until `enabled`; `None` removes it.
    async fn set_totp(
        &self,
        user: UserId,
        totp_sealed: Option<Vec<u8>>,
        enabled: bool,
    ) -> StoreResult<()>;
    /// Stores a new pending TOTP secret unless a factor is already enabled (checked in the
    /// same statement, so set-up cannot race a confirmation); returns whether it did.
    async fn start_totp_setup(&self, user: UserId, totp_sealed: Vec<u8>) -> StoreResult<bool>;
    /// Records TOTP step `step` as used if it is later than the last one used; returns
    /// whether it was (false: a replayed or older code).
    async fn advance_totp_step(&self, user: UserId, step: i64) -> StoreResult<bool>;
    /// Counts a failed sign-in and extends the lock to at least `locked_until_ms`.
    async fn record_login_failure(&self, user: UserId, locked_until_ms: i64) -> StoreResult<()>;
    /// Claims one guess at a credential before it is checked, atomically: unless the
    /// account is locked at `now_ms`, counts it as a failure (undone by
    /// `reset_login_failures` when the guess proves right) and, when that makes
    /// `lock_after` failures or more, locks the account for `lock_first_ms` doubling per
    /// further failure up to `lock_max_ms`. Returns whether the guess may be checked; so
    /// concurrent guesses cannot all slip in under one stale count.
    async fn claim_guess(&self, user: UserId, now_ms: i64, lock: GuessLock) -> StoreResult<bool>;
    async fn reset_login_failures(&self, user: UserId) -> StoreResult<()>;

    async fn insert_session(&self, session: StoredSession) -> StoreResult<()>;
    /// The session whose token hashes to `token_hash`, with its user and their organisation.
    async fn session_by_hash(&self, token_hash: &[u8]) -> StoreResult<Option<SessionRecord>>;
    /// Records activity (for the idle time-out).
    async fn touch_session(&self, id: SessionId, now_ms: i64) -> StoreResult<()>;
    /// Records a fresh proof of identity (step-up re-authentication).
    async fn reauthenticate_session(
        &self,
        id: SessionId,
        now_ms: i64,
        mfa: bool,
    ) -> StoreResult<()>;
    /// Ends a session; returns whether it was still open.
    async fn revoke_session(&self, id: SessionId, now_ms: i64, reason: &str) -> StoreResult<bool>;
    /// Ends every open session of `user` except `keep`; returns how many ended.
    async fn revoke_user_sessions(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        now_ms: i64,
        reason: &str,
    ) -> StoreResult<u64>;
    /// The user's sessions not revoked and not past their absolute time-out at `now_ms`,
    /// newest first, at most [`limits::USER_SESSIONS_LISTED_MAX`].
    async fn user_sessions(&self, user: UserId, now_ms: i64) -> StoreResult<Vec<StoredSession>>;

    async fn insert_invitation(&self, invitation: StoredInvitation) -> StoreResult<()>;
    async fn invitation_by_hash(&self, token_hash: &[u8]) -> StoreResult<Option<StoredInvitation>>;
    /// In one transaction: marks the invitation used (if unused and unexpired at `now_ms`)
    /// and creates the user.
    async fn redeem_invitation(
        &self,
        invitation: InvitationId,
        now_ms: i64,
        user: NewUser,
    ) -> StoreResult<Redeemed>;

    /// Replaces a user's recovery codes (hashes), at most [`limits::RECOVERY_CODES_MAX`].
    async fn replace_recovery_codes(
        &self,
        user: UserId,
        code_hashes: Vec<Vec<u8>>,
    ) -> StoreResult<()>;
    /// Uses a recovery code once; returns whether it was valid and unused.
    async fn use_recovery_code(
        &self,
        user: UserId,
        code_hash: &[u8],
        now_ms: i64,
    ) -> StoreResult<bool>;
    /// How many unused recovery codes the user has left.
    async fn recovery_codes_left(&self, user: UserId) -> StoreResult<u64>;

    /// Stores a passkey; `AlreadyExists` if its credential id is registered already.
    async fn insert_passkey(&self, passkey: StoredPasskey) -> StoreResult<()>;
    async fn passkey(&self, credential_id: &[u8]) -> StoreResult<Option<StoredPasskey>>;
    /// A user's passkeys, oldest first, at most [`limits::PASSKEYS_PER_USER_MAX`].
    async fn user_passkeys(&self, user: UserId) -> StoreResult<Vec<StoredPasskey>>;
    /// Records a sign-in with a passkey: the new counter replaces `previous_sign_count` only
    /// if that is still the stored one (a concurrent use of a cloned key loses).
    async fn record_passkey_use(
        &self,
        credential_id: &[u8],
        previous_sign_count: i64,
        new_sign_count: i64,
        now_ms: i64,
    ) -> StoreResult<bool>;
    /// Removes one of a user's passkeys; returns whether it was theirs and is gone.
    async fn delete_passkey(&self, user: UserId, credential_id: &[u8]) -> StoreResult<bool>;
    async fn insert_challenge(&self, challenge: StoredChallenge) -> StoreResult<()>;
    /// Removes and returns a challenge if it has not expired at `now_ms`: a challenge
    /// serves one ceremony, once.
    async fn take_challenge(
        &self,
        id: uuid::Uuid,
        now_ms: i64,
    ) -> StoreResult<Option<StoredChallenge>>;

    // --- Care relationships, break-the-glass and notifications ---------------------------

    /// The members of `patient`'s care team, oldest first (at most
    /// [`limits::CARE_TEAM_MEMBERS_MAX`]).
    async fn care_team(&self, patient: PatientId) -> StoreResult<Vec<care::CareTeamMember>>;
    /// Adds a member unless they are one already or the team is full
    /// ([`limits::CARE_TEAM_MEMBERS_MAX`]); whether a row was added.
    async fn add_care_team_member(&self, member: care::CareTeamMember) -> StoreResult<bool>;
    /// Removes a member; whether they were one.
    async fn remove_care_team_member(&self, patient: PatientId, user: UserId) -> StoreResult<bool>;
    /// For each of `patients` (at most [`limits::RELATIONS_LOOKUP_MAX`]) that `user` has a
    /// relationship with at `now_ms`: a care-team membership or an unexpired
    /// break-the-glass grant. Patients with neither are left out.
    async fn relations(
        &self,
        user: UserId,
        patients: &[PatientId],
        now_ms: i64,
    ) -> StoreResult<Vec<care::Relations>>;
    async fn insert_break_glass(&self, grant: care::StoredBreakGlass) -> StoreResult<()>;
    async fn break_glass(
        &self,
        id: haven_domain::BreakGlassId,
    ) -> StoreResult<Option<care::StoredBreakGlass>>;
    /// A page of an organisation's grants, newest first.
    async fn break_glass_grants(
        &self,
        query: &care::BreakGlassQuery,
    ) -> StoreResult<Vec<care::StoredBreakGlass>>;
    /// Records a review of a grant still pending; whether it was pending.
    async fn review_break_glass(&self, review: care::BreakGlassReview) -> StoreResult<bool>;
    async fn insert_notifications(
        &self,
        notifications: Vec<care::StoredNotification>,
    ) -> StoreResult<()>;
    /// A user's notifications, newest first (at most [`limits::NOTIFICATIONS_LISTED_MAX`]).
    async fn notifications(&self, user: UserId) -> StoreResult<Vec<care::StoredNotification>>;
    /// Marks one of the user's notifications read; whether it was theirs and unread.
    async fn mark_notification_read(
        &self,
        user: UserId,
        id: haven_domain::NotificationId,
        now_ms: i64,
    ) -> StoreResult<bool>;
    /// Marks every unread notification about `subject` read, for everyone: the matter is
    /// dealt with (a break-the-glass access reviewed).
    async fn resolve_notifications(&self, subject: uuid::Uuid, now_ms: i64) -> StoreResult<()>;

    // --- Proxy delegations --------------------------------------------------------------

    async fn insert_delegation(&self, delegation: care::StoredDelegation) -> StoreResult<()>;
    /// A patient's delegations: the live ones at `now_ms` (not revoked, not expired, and
    /// accepted or still acceptable) first, then the ended ones, each newest first; at most
    /// twice [`limits::DELEGATIONS_PER_PATIENT_MAX`] in all.
    async fn patient_delegations(
        &self,
        patient: PatientId,
        now_ms: i64,
    ) -> StoreResult<Vec<care::StoredDelegation>>;
    async fn delegation_by_offer(
        &self,
        offer_hash: &[u8],
    ) -> StoreResult<Option<care::StoredDelegation>>;
    /// Makes `proxy` the proxy of an offer nobody accepted yet, unrevoked and unexpired at
    /// `now_ms`; whether it did.
    async fn accept_delegation(
        &self,
        id: haven_domain::DelegationId,
        proxy: UserId,
        now_ms: i64,
    ) -> StoreResult<bool>;
    /// Revokes one of `patient`'s delegations; whether it was live.
    async fn revoke_delegation(
        &self,
        patient: PatientId,
        id: haven_domain::DelegationId,
        now_ms: i64,
    ) -> StoreResult<bool>;
    /// Applies every write of the batch, or none: `Err(conflict)` names the first write
    /// whose precondition failed. Returns each write's new `seq`.
    async fn write_resources(
        &self,
        writes: Vec<fhir::ResourceWrite>,
    ) -> StoreResult<Result<Vec<i64>, fhir::WriteConflict>>;
    /// The current version of a resource (a deletion included).
    async fn resource(
        &self,
        resource_type: &str,
        id: &str,
    ) -> StoreResult<Option<fhir::StoredResource>>;
    /// One version of a resource.
    async fn resource_version(
        &self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> StoreResult<Option<fhir::StoredResource>>;
    /// Current, undeleted resources matching the query.
    async fn search_resources(
        &self,
        query: &fhir::ResourceQuery,
    ) -> StoreResult<Vec<fhir::StoredResource>>;
    /// Versions, newest first.
    async fn resource_history(
        &self,
        query: &fhir::HistoryQuery,
    ) -> StoreResult<Vec<fhir::StoredResource>>;
    /// Releases a held result to the patient; whether it was held.
    async fn release_resource(&self, resource_type: &str, id: &str) -> StoreResult<bool>;
    /// The patients `user` is related to now: on their care team, under an unexpired
    /// break-the-glass grant, or acting for them by a live delegation with the `record`
    /// scope; at most `limit`.
    async fn related_patients(
        &self,
        user: UserId,
        now_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<PatientId>>;
    /// Stores a subject key for a subject that is not a patient (the shared directory),
    /// unless it has one; the key it has, either way. Two instances racing agree on one.
    async fn put_subject_key_if_absent(
        &self,
        key: StoredSubjectKey,
        now_ms: i64,
    ) -> StoreResult<StoredSubjectKey>;
    /// Stores one sealed chunk of an attachment being written (durable when it returns).
    async fn put_attachment_chunk(
        &self,
        attachment: uuid::Uuid,
        index: u32,
        sealed: Vec<u8>,
    ) -> StoreResult<()>;
    /// One sealed chunk of an attachment.
    async fn attachment_chunk(
        &self,
        attachment: uuid::Uuid,
        index: u32,
    ) -> StoreResult<Option<Vec<u8>>>;
    /// Attachments with chunks in the database, ids after `after` and before `before`, in
    /// id order, at most `limit`.
    async fn chunked_attachments(
        &self,
        after: Option<uuid::Uuid>,
        before: uuid::Uuid,
        limit: u32,
    ) -> StoreResult<Vec<uuid::Uuid>>;
    /// Deletes the chunks of `attachment` if no attachment row names it (an upload that
    /// never finished); returns how many were deleted.
    async fn delete_orphan_chunks(&self, attachment: uuid::Uuid) -> StoreResult<u64>;
    /// Records a whole attachment, once all its chunks are stored.
    async fn insert_attachment(&self, attachment: fhir::StoredAttachment) -> StoreResult<()>;
    /// An attachment with its patient's key.
    async fn attachment(&self, id: uuid::Uuid) -> StoreResult<Option<fhir::StoredAttachment>>;
    /// Registers a device; `false` when its owner already has
    /// [`limits::DEVICES_PER_USER_MAX`] devices.
    /// Records that a visit is over; `false` when it already was (the first ending stands).
    async fn end_visit(&self, ending: visits::VisitEnding) -> StoreResult<bool>;
    async fn visit_ending(&self, appointment: &str) -> StoreResult<Option<visits::VisitEnding>>;

    async fn insert_visit_guest(&self, guest: visits::StoredGuest) -> StoreResult<()>;
    /// Redeems an unexpired invitation that was never redeemed, giving it `session_hash`;
    /// `None` for any other (unknown, used, expired), and then nothing changes.
    async fn redeem_visit_guest(
        &self,
        invitation_hash: &[u8],
        session_hash: &[u8],
        now_ms: i64,
    ) -> StoreResult<Option<visits::StoredGuest>>;
    async fn visit_guest_by_session(
        &self,
        session_hash: &[u8],
    ) -> StoreResult<Option<visits::StoredGuest>>;
    /// A visit's guests, oldest first, at most `limits::VISIT_GUESTS_LISTED_MAX`.
    async fn visit_guests(&self, appointment: &str) -> StoreResult<Vec<visits::StoredGuest>>;

    async fn insert_device(&self, device: messaging::StoredDevice) -> StoreResult<bool>;
    /// Marks one of `user`'s devices removed; `false` if it was not theirs or not active.
    async fn remove_device(
        &self,
        user: UserId,
        device: uuid::Uuid,
        now_ms: i64,
    ) -> StoreResult<bool>;
    /// The active devices of these people (at most [`limits::DEVICE_OWNERS_LOOKUP_MAX`]).
    async fn devices_of(&self, users: &[UserId]) -> StoreResult<Vec<messaging::StoredDevice>>;
    async fn device(&self, id: uuid::Uuid) -> StoreResult<Option<messaging::StoredDevice>>;
    /// Starts a conversation with its first participants.
    async fn insert_thread(
        &self,
        thread: messaging::StoredThread,
        participants: Vec<messaging::Participant>,
    ) -> StoreResult<()>;
    async fn thread(&self, id: uuid::Uuid) -> StoreResult<Option<messaging::StoredThread>>;
    /// Everyone who takes or took part, removed participants included.
    async fn thread_participants(&self, id: uuid::Uuid)
    -> StoreResult<Vec<messaging::Participant>>;
    /// A conversation, its participants (removed ones included) and the active devices of
    /// its current participants, in one read: what sending a message checks.
    async fn conversation_devices(
        &self,
        id: uuid::Uuid,
    ) -> StoreResult<Option<messaging::ConversationDevices>>;
    /// Adds a participant, or brings back a removed one; `false` if already present or the
    /// conversation has [`limits::THREAD_PARTICIPANTS_MAX`].
    async fn add_participant(&self, participant: messaging::Participant) -> StoreResult<bool>;
    async fn remove_participant(
        &self,
        thread: uuid::Uuid,
        user: UserId,
        now_ms: i64,
    ) -> StoreResult<bool>;
    /// The conversations `user` takes part in now, most recently active first.
    async fn user_threads(&self, user: UserId) -> StoreResult<Vec<messaging::ThreadSummary>>;
    /// Stores a message and its sealed keys, if every device it is sealed to belongs to a
    /// current participant; otherwise stores nothing.
    async fn insert_message(
        &self,
        message: messaging::NewMessage,
    ) -> StoreResult<messaging::SendOutcome>;
    /// A conversation's messages after `after_seq`, oldest first, each with the key sealed
    /// to `device` (if any).
    async fn thread_messages(
        &self,
        thread: uuid::Uuid,
        device: uuid::Uuid,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<messaging::StoredMessage>>;
    /// Moves `user`'s read position in a conversation forward to `seq` (never back).
    async fn mark_read(
        &self,
        thread: uuid::Uuid,
        user: UserId,
        seq: i64,
        now_ms: i64,
    ) -> StoreResult<bool>;
    async fn insert_message_attachment(
        &self,
        attachment: messaging::StoredMessageAttachment,
    ) -> StoreResult<()>;
    async fn message_attachment(
        &self,
        id: uuid::Uuid,
    ) -> StoreResult<Option<messaging::StoredMessageAttachment>>;
    /// Retention: deletes up to `limit` messages (with their keys) and attachments of
    /// `organisation`'s conversations sent before `before_ms`.
    async fn delete_messages_before(
        &self,
        organisation: OrganisationId,
        before_ms: i64,
        limit: u32,
    ) -> StoreResult<messaging::MessagesDeleted>;
    /// The accepted, unrevoked, unexpired delegations to `proxy`.
    async fn proxy_delegations(
        &self,
        proxy: UserId,
        now_ms: i64,
    ) -> StoreResult<Vec<care::StoredDelegation>>;
}

pub(crate) fn check_siem_cursor(after_seq: i64) -> StoreResult<()> {
    if after_seq < 0 {
        return Err(StoreError::Invalid(
            "a SIEM cursor is an audit seq, never negative",
        ));
    }
    Ok(())
}

/// Moves a SIEM cursor forward, never back: the `WHERE` leaves a row whose cursor is already
/// at or past the new one untouched (both engines
/// run this statement: SQLite reads `$n` as the n-th parameter too).
pub(crate) const SET_SIEM_CURSOR_SQL: &str =
    "INSERT INTO siem_cursors (name, after_seq, updated_at_ms) VALUES ($1, $2, $3)
     ON CONFLICT (name) DO UPDATE
         SET after_seq = excluded.after_seq, updated_at_ms = excluded.updated_at_ms
         WHERE excluded.after_seq > siem_cursors.after_seq";

/// The columns an audit report selects: each entry's position and its stored bytes
/// ([`haven_audit::AuditEvent::entry_bytes`]). Everything a report shows is decoded from
/// those bytes, which are exactly what the Merkle tree commits to; the other columns of
/// `audit_events` are search keys that decide which entries a report finds and in what order.
pub(crate) const AUDIT_ENTRY_COLUMNS: &str = "seq, entry";

/// The columns [`audit_leaf`] reads: the entry and the search keys reports filter on.
pub(crate) const AUDIT_LEAF_COLUMNS: &str = "seq, entry, at_ms, actor, action, patient_id, outcome";

/// The column list for an INSERT: every column but `seq`, the search keys in the order of
/// the entry's fields, then the entry.
pub(crate) const AUDIT_INSERT_COLUMNS: &str = "at_ms, actor, role, organisation, session_id, \
     client_app, action, patient_id, resource_type, resource_id, outcome, reason, \
     purpose_of_use, request_id, source_ip, user_agent, entry";

/// Binds an entry's search keys and its stored bytes, in [`AUDIT_INSERT_COLUMNS`] order, on
/// either engine.
pub(crate) fn push_audit_values<'args, DB>(
    row: &mut sqlx::query_builder::Separated<'_, 'args, DB, &str>,
    event: &AuditEvent,
) where
    DB: sqlx::Database,
    i64: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
    &'static str: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
    Option<uuid::Uuid>: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
    Vec<u8>: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
{
    row.push_bind(event.at_ms)
        .push_bind(event.actor.clone())
        .push_bind(event.role.clone())
        .push_bind(event.organisation.clone())
        .push_bind(event.session.clone())
        .push_bind(event.client_app.clone())
        .push_bind(event.action.as_str())
        .push_bind(event.patient.map(|p| p.as_uuid()))
        .push_bind(event.resource_type.clone())
        .push_bind(event.resource_id.clone())
        .push_bind(event.outcome.as_str())
        .push_bind(event.reason.clone())
        .push_bind(event.purpose_of_use.clone())
        .push_bind(event.origin.request_id.clone())
        .push_bind(event.origin.source_ip.clone())
        .push_bind(event.origin.user_agent.clone())
        .push_bind(event.entry_bytes());
}

/// An entry read back from its stored bytes at position `seq`.
pub(crate) fn audit_entry(seq: i64, entry: &[u8]) -> StoreResult<StoredAuditEvent> {
    let event = AuditEvent::from_entry(entry).map_err(|e| StoreError::Corrupt {
        table: "audit_events",
        detail: format!("entry {seq}: {e}"),
    })?;
    Ok(StoredAuditEvent { seq, event })
}

/// The search keys of one `audit_events` row, as stored beside its entry.
pub(crate) struct AuditKeys<'a> {
    pub at_ms: i64,
    pub actor: Option<&'a [u8]>,
    pub action: Option<&'a [u8]>,
    pub patient: Option<uuid::Uuid>,
    pub outcome: Option<&'a [u8]>,
}

/// The leaf of the entry stored as `entry` at `seq`, and whether its search keys match it.
pub(crate) fn audit_leaf(seq: i64, entry: &[u8], keys: &AuditKeys<'_>) -> AuditLeaf {
    let hash = haven_audit::leaf_hash_of_entry(u64::try_from(seq).unwrap_or(0), entry);
    let keys_match = haven_audit::EntryView::parse(entry).is_ok_and(|view| {
        let mut patient_text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let patient = keys
            .patient
            .map(|p| p.hyphenated().encode_lower(&mut patient_text).as_bytes());
        // Field positions as in `haven_audit::ENTRY_FIELD_NAMES`.
        view.at_ms == keys.at_ms
            && view.fields[0] == keys.actor
            && view.fields[5] == keys.action
            && view.fields[6] == patient
            && view.fields[9] == keys.outcome
    });
    AuditLeaf {
        seq,
        hash,
        keys_match,
    }
}

/// The interim audit sink: the append-only `audit_events` table of the same store. The
/// tamper-evident log replaces it behind the same [`haven_audit::AuditSink`] trait.
#[derive(Debug, Clone)]
pub struct TableAuditSink(pub std::sync::Arc<dyn Store>);

#[async_trait::async_trait]
impl haven_audit::AuditSink for TableAuditSink {
    async fn append(&self, events: Vec<AuditEvent>) -> Result<(), haven_audit::AuditError> {
        self.0
            .append_audit(events)
            .await
            .map_err(|error| haven_audit::AuditError(error.to_string()))
    }
}
