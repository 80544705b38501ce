//! The store contract: one suite of behaviours that every [`Store`] engine must show, run
//! against both SQLite and PostgreSQL (as ripgrep runs each test on both regex engines), so
//! moving a deployment from one engine to the other never changes what Haven does.
//!
//! Each contract is an `async fn(&Engine)`; [`contracts!`] turns it into two tests:
//! `sqlite::<contract>` on a fresh database file in a temporary directory, and
//! `postgres::<contract>` on a fresh schema in the database at `HAVEN_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`), dropped afterwards. An unreachable
//! PostgreSQL fails the suite instead of silently skipping half of it; `cargo xtask test`
//! starts one.
//!
//! The store only ever sees sealed bytes, key ids and blind-index tokens, so the records here
//! are random bytes: what matters at this layer is that exactly those bytes come back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use haven_audit::{AuditAction, AuditEvent, Outcome, RequestOrigin};
use haven_domain::{PatientId, TokenId, UserId};
use haven_store::{
    NewPatient, PatientQuery, PatientUpdate, PostgresStore, SearchKind, SearchToken, SqliteStore,
    Store, StoreError, StoredPatient, StoredSubjectKey, StoredSystemKey, StoredToken,
    UpdateOutcome, limits,
};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tempfile::TempDir;
use uuid::Uuid;

const POSTGRES_URL_VAR: &str = "HAVEN_TEST_POSTGRES_URL";
const POSTGRES_URL_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";
/// A reachable server answers at once; waiting longer only delays the failure.
const POSTGRES_CONNECT_TIMEOUT_SECS: u64 = 10;
/// How long a raw SQLite connection waits for the store's writer to release the file.
const RAW_BUSY_TIMEOUT_SECS: u64 = 5;
/// A fixed clock, so that stored timestamps can be compared exactly.
const T0_MS: i64 = 1_750_000_000_000;

const ROOT_OLD: &[u8] = b"root-key-old";
const ROOT_NEW: &[u8] = b"root-key-new";

macro_rules! contracts {
    (
        both: [$($contract:ident),+ $(,)?],
        sqlite_only: [$($sqlite_contract:ident),* $(,)?] $(,)?
    ) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $contract() {
                    let engine = crate::Engine::sqlite().await;
                    crate::run(engine, |engine| async move { crate::$contract(&engine).await })
                        .await;
                }
            )+
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $sqlite_contract() {
                    let engine = crate::Engine::sqlite().await;
                    crate::run(engine, |engine| async move {
                        crate::$sqlite_contract(&engine).await
                    })
                    .await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $contract() {
                    let engine = crate::Engine::postgres().await;
                    crate::run(engine, |engine| async move { crate::$contract(&engine).await })
                        .await;
                }
            )+
        }
    };
}

contracts! {
    both: [
        insert_then_get_returns_the_stored_record,
        inserting_an_existing_id_fails_and_keeps_the_first,
        update_with_the_expected_version_replaces_record_and_search_tokens,
        concurrent_updates_at_one_version_let_exactly_one_win,
        list_pages_in_id_order,
        list_never_returns_more_than_page_rows_max,
        search_filters_are_combined_with_and,
        shred_subject_destroys_the_key_and_search_tokens_once,
        system_keys_are_set_once_and_rewrapped_by_compare_and_swap,
        rotation_rewraps_every_key_under_the_new_root,
        tokens_are_found_by_hash,
        audit_events_come_back_in_order_with_increasing_seq,
        appends_through_two_handles_become_visible_in_seq_order,
        audit_trail_is_append_only,
        checkpoints_are_kept_once_in_size_order_and_never_changed,
        the_audit_tree_is_stored_once_and_read_back_by_position_and_seq,
        audit_tree_writes_and_reads_are_bounded,
        audit_reports_filter_sort_and_page,
        audit_leaves_hash_exactly_the_stored_entries,
        users_are_found_by_login_and_keep_their_sign_in_state,
        sessions_end_one_by_one_or_all_together,
        an_invitation_is_redeemed_once,
        recovery_codes_work_once_each,
        passkeys_and_challenges_are_kept_and_used_once,
        care_teams_and_break_glass_grants_make_relations_that_expire,
        break_glass_reviews_happen_once_and_page_newest_first,
        notifications_are_per_user_and_resolved_together,
        delegations_are_accepted_once_and_end_when_revoked_or_expired,
        concurrent_inserts_all_succeed,
        a_failing_write_does_not_undo_concurrent_writes,
        acknowledged_writes_survive_a_restart,
        siem_cursors_start_absent_and_only_move_forward,
        siem_cursors_are_kept_per_collector_and_survive_a_restart,
        resources_keep_every_version_and_search_only_the_current,
        a_resource_batch_applies_whole_or_not_at_all,
        resource_searches_and_filters_and_or_and_page,
        attachments_become_visible_whole_with_their_chunks,
        devices_are_listed_by_owner_and_removed_only_by_their_owner,
        devices_per_person_are_bounded_and_fingerprints_unique,
        threads_keep_their_participants_including_removed_ones,
        conversations_have_at_most_thread_participants_max,
        each_device_reads_only_the_key_sealed_to_it,
        a_message_refused_leaves_no_trace,
        unread_counts_follow_messages_from_others_and_read_positions,
        message_attachments_keep_their_chunks_while_their_row_exists,
        retention_deletes_an_organisations_older_messages_in_bounded_batches,
        concurrent_sends_all_reach_a_device_that_syncs_by_seq,
        a_conversations_devices_are_read_with_it,
        concurrent_sends_are_answered_one_by_one,
        a_visit_ends_once_and_stays_ended_after_a_restart,
        a_visit_guest_invitation_is_redeemed_once_before_it_expires,
    ],
    sqlite_only: [
        acknowledged_writes_are_in_the_files_before_shutdown,
    ],
}

#[path = "contract/fhir.rs"]
mod fhir_contracts;
use fhir_contracts::{
    a_resource_batch_applies_whole_or_not_at_all,
    attachments_become_visible_whole_with_their_chunks,
    resource_searches_and_filters_and_or_and_page,
    resources_keep_every_version_and_search_only_the_current,
};

#[path = "contract/messaging.rs"]
mod messaging_contracts;
use messaging_contracts::{
    a_conversations_devices_are_read_with_it, a_message_refused_leaves_no_trace,
    concurrent_sends_all_reach_a_device_that_syncs_by_seq,
    concurrent_sends_are_answered_one_by_one, conversations_have_at_most_thread_participants_max,
    devices_are_listed_by_owner_and_removed_only_by_their_owner,
    devices_per_person_are_bounded_and_fingerprints_unique,
    each_device_reads_only_the_key_sealed_to_it,
    message_attachments_keep_their_chunks_while_their_row_exists,
    retention_deletes_an_organisations_older_messages_in_bounded_batches,
    threads_keep_their_participants_including_removed_ones,
    unread_counts_follow_messages_from_others_and_read_positions,
};

/// A visit's ending is recorded once (the first stands, so who ended it cannot be rewritten
/// by a second call) and survives a restart, so nobody joins an ended visit again.
async fn a_visit_ends_once_and_stays_ended_after_a_restart(engine: &Engine) {
    let store = engine.store();
    let organisation = organisation();
    let organisation_id = organisation.id;
    store.insert_organisation(organisation).await.unwrap();
    let patient = insert_patient_row(store.as_ref()).await;
    assert_eq!(store.visit_ending("appointment-1").await.unwrap(), None);
    let ending = haven_store::visits::VisitEnding {
        appointment: "appointment-1".to_owned(),
        organisation: organisation_id,
        patient,
        ended_by: "first-host".to_owned(),
        ended_at_ms: T0_MS,
    };
    assert!(store.end_visit(ending.clone()).await.unwrap());
    let second = haven_store::visits::VisitEnding {
        ended_by: "second-host".to_owned(),
        ended_at_ms: T0_MS + 5,
        ..ending.clone()
    };
    assert!(!store.end_visit(second).await.unwrap());
    assert_eq!(store.visit_ending("appointment-2").await.unwrap(), None);
    drop(store);
    engine.restart().await;
    let store = engine.store();
    assert_eq!(
        store.visit_ending("appointment-1").await.unwrap(),
        Some(ending)
    );
}

/// A guest's invitation opens one session, once, and not after it expires; the session is
/// found by its hash; a visit's guests are listed oldest first.
async fn a_visit_guest_invitation_is_redeemed_once_before_it_expires(engine: &Engine) {
    let store = engine.store();
    let organisation = organisation();
    let organisation_id = organisation.id;
    store.insert_organisation(organisation).await.unwrap();
    let patient = insert_patient_row(store.as_ref()).await;
    let guest =
        |kind: &str, created_at_ms: i64, expires_at_ms: i64| haven_store::visits::StoredGuest {
            id: haven_domain::GuestId::generate(),
            appointment: "appointment-1".to_owned(),
            organisation: organisation_id,
            patient,
            kind: kind.to_owned(),
            invitation_hash: random_bytes(32),
            session_hash: None,
            invited_by: "host".to_owned(),
            created_at_ms,
            expires_at_ms,
            redeemed_at_ms: None,
        };
    let interpreter = guest("interpreter", T0_MS, T0_MS + 1000);
    let relative = guest("family", T0_MS + 1, T0_MS + 10);
    store.insert_visit_guest(interpreter.clone()).await.unwrap();
    store.insert_visit_guest(relative.clone()).await.unwrap();

    let session = random_bytes(32);
    let redeemed = store
        .redeem_visit_guest(&interpreter.invitation_hash, &session, T0_MS + 5)
        .await
        .unwrap()
        .expect("a fresh invitation is redeemed");
    assert_eq!(redeemed.id, interpreter.id);
    assert_eq!(redeemed.session_hash.as_deref(), Some(session.as_slice()));
    assert_eq!(redeemed.redeemed_at_ms, Some(T0_MS + 5));
    // Once only: a second redemption gets nothing and changes nothing.
    let again = random_bytes(32);
    assert_eq!(
        store
            .redeem_visit_guest(&interpreter.invitation_hash, &again, T0_MS + 6)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.visit_guest_by_session(&again).await.unwrap(), None);
    assert_eq!(
        store.visit_guest_by_session(&session).await.unwrap(),
        Some(redeemed)
    );
    // Not after it expires; an unknown invitation is nothing.
    assert_eq!(
        store
            .redeem_visit_guest(&relative.invitation_hash, &random_bytes(32), T0_MS + 10)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .redeem_visit_guest(&random_bytes(32), &random_bytes(32), T0_MS)
            .await
            .unwrap(),
        None
    );
    let listed: Vec<_> = store
        .visit_guests("appointment-1")
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(listed, vec![interpreter.id, relative.id]);
    assert!(
        store
            .visit_guests("appointment-2")
            .await
            .unwrap()
            .is_empty()
    );
}

// ------------------------------------------------------------------------------------------
// Engines
// ------------------------------------------------------------------------------------------

/// One engine under test, with what a contract needs beyond the [`Store`] trait: restarting
/// the store on the same data, and raw SQL that goes around the store.
struct Engine {
    backend: Backend,
    opened: Mutex<Option<Opened>>,
}

enum Backend {
    /// The directory lives as long as the test; it holds `haven.db` and its WAL.
    Sqlite { dir: TempDir },
    Postgres {
        url: String,
        /// `url` without a password, for messages.
        shown_url: String,
        schema: String,
    },
}

#[derive(Clone)]
enum Opened {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

impl Opened {
    fn as_dyn(&self) -> Arc<dyn Store> {
        match self {
            Opened::Sqlite(store) => Arc::clone(store) as Arc<dyn Store>,
            Opened::Postgres(store) => Arc::clone(store) as Arc<dyn Store>,
        }
    }

    fn handles(&self) -> usize {
        match self {
            Opened::Sqlite(store) => Arc::strong_count(store),
            Opened::Postgres(store) => Arc::strong_count(store),
        }
    }

    async fn close(self) {
        match self {
            // The writer task ends, and closes the write connection, once the last handle
            // is gone.
            Opened::Sqlite(store) => drop(store),
            Opened::Postgres(store) => store.pool().close().await,
        }
    }
}

impl Engine {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory for the SQLite store");
        Self::started(Backend::Sqlite { dir }).await
    }

    async fn postgres() -> Self {
        let url =
            std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| POSTGRES_URL_DEFAULT.to_owned());
        let options: PgConnectOptions = url
            .parse()
            .unwrap_or_else(|error| panic!("{POSTGRES_URL_VAR} is not a PostgreSQL URL: {error}"));
        let shown_url = format!(
            "postgres://{}@{}:{}/{}",
            options.get_username(),
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default(),
        );
        let hint = format!("`cargo xtask test` starts it, or set {POSTGRES_URL_VAR}");
        match tokio::time::timeout(
            Duration::from_secs(POSTGRES_CONNECT_TIMEOUT_SECS),
            PgConnection::connect_with(&options),
        )
        .await
        {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
            }
            Ok(Err(error)) => {
                panic!("PostgreSQL not reachable at {shown_url}: {error}; {hint}")
            }
            Err(_) => panic!(
                "PostgreSQL not reachable at {shown_url}: no answer within \
                 {POSTGRES_CONNECT_TIMEOUT_SECS}s; {hint}"
            ),
        }
        let schema = format!("contract_{}", Uuid::new_v4().simple());
        Self::started(Backend::Postgres {
            url,
            shown_url,
            schema,
        })
        .await
    }

    async fn started(backend: Backend) -> Self {
        let engine = Engine {
            backend,
            opened: Mutex::new(None),
        };
        let opened = engine.open().await;
        *engine.slot() = Some(opened);
        engine
    }

    async fn open(&self) -> Opened {
        match &self.backend {
            Backend::Sqlite { dir } => {
                let path = dir.path().join("haven.db");
                let store = SqliteStore::open(&path)
                    .await
                    .unwrap_or_else(|error| panic!("opening {}: {error}", path.display()));
                Opened::Sqlite(Arc::new(store))
            }
            Backend::Postgres {
                url,
                shown_url,
                schema,
            } => {
                let store = PostgresStore::connect_in_schema(url, schema)
                    .await
                    .unwrap_or_else(|error| {
                        panic!("connecting to {shown_url} in schema {schema}: {error}")
                    });
                Opened::Postgres(Arc::new(store))
            }
        }
    }

    /// The slot stays usable after a contract panicked elsewhere, so cleanup still runs.
    fn slot(&self) -> MutexGuard<'_, Option<Opened>> {
        self.opened.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn opened(&self) -> Opened {
        self.slot().clone().expect("the store is open")
    }

    fn store(&self) -> Arc<dyn Store> {
        self.opened().as_dyn()
    }

    fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres { .. })
    }

    fn sqlite_path(&self) -> PathBuf {
        match self.opened() {
            Opened::Sqlite(store) => store.path().to_owned(),
            Opened::Postgres(_) => panic!("not a SQLite engine"),
        }
    }

    /// Shuts the store down and opens the same data again, as a restarted server would.
    async fn restart(&self) {
        let previous = self.slot().take().expect("the store is open");
        assert_eq!(
            previous.handles(),
            1,
            "drop every handle to the store before restarting it"
        );
        previous.close().await;
        let reopened = self.open().await;
        *self.slot() = Some(reopened);
    }

    /// Runs one statement around the store: on its own connection to the SQLite file, or on
    /// the PostgreSQL store's pool (whose connections already have the test's search_path).
    async fn execute_raw(&self, sql: &str) -> Result<u64, sqlx::Error> {
        match self.opened() {
            Opened::Sqlite(store) => {
                let options = SqliteConnectOptions::new()
                    .filename(store.path())
                    .busy_timeout(Duration::from_secs(RAW_BUSY_TIMEOUT_SECS));
                let audit = SqliteStore::audit_path(store.path())
                    .to_string_lossy()
                    .into_owned();
                let sql = sql.to_owned();
                // On its own task with owned data: holding a borrowed SQLite connection
                // across an await trips rustc's higher-ranked `Send` check in the contracts.
                tokio::spawn(async move {
                    let mut connection = SqliteConnection::connect_with(&options).await?;
                    // Unqualified names reach the audit file's tables too, which the
                    // records' file does not hold: a refusal must be the trigger's.
                    sqlx::query("ATTACH DATABASE ? AS audit")
                        .bind(audit)
                        .execute(&mut connection)
                        .await?;
                    let result = sqlx::query(&sql).execute(&mut connection).await;
                    let _ = connection.close().await;
                    Ok(result?.rows_affected())
                })
                .await
                .expect("the raw SQLite statement's task")
            }
            Opened::Postgres(store) => Ok(sqlx::query(sql)
                .execute(store.pool())
                .await?
                .rows_affected()),
        }
    }

    /// Best effort: a schema left behind is harmless, so failures are only reported.
    async fn cleanup(&self) {
        let opened = self.slot().take();
        if let Some(opened) = opened {
            opened.close().await;
        }
        if let Backend::Postgres {
            url,
            shown_url,
            schema,
        } = &self.backend
        {
            let dropped = async {
                let mut connection = PgConnection::connect(url).await?;
                let quoted = schema.replace('"', "\"\"");
                sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{quoted}\" CASCADE"))
                    .execute(&mut connection)
                    .await?;
                connection.close().await
            };
            if let Err(error) = dropped.await {
                eprintln!("could not drop schema {schema} at {shown_url}: {error}");
            }
        }
    }
}

/// Runs a contract on its own task, so that the engine is cleaned up even when the contract
/// panics, then hands the panic on to the test harness.
async fn run<C, F>(engine: Engine, contract: C)
where
    C: FnOnce(Arc<Engine>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let engine = Arc::new(engine);
    let outcome = tokio::spawn(contract(Arc::clone(&engine))).await;
    engine.cleanup().await;
    if let Err(error) = outcome {
        match error.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(error) => panic!("the contract did not finish: {error}"),
        }
    }
}

// ------------------------------------------------------------------------------------------
// Records
// ------------------------------------------------------------------------------------------

/// Unpredictable bytes, standing in for ciphertext, wrapped keys and token hashes.
fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 16);
    while bytes.len() < len {
        bytes.extend_from_slice(Uuid::new_v4().as_bytes());
    }
    bytes.truncate(len);
    bytes
}

fn search(kind: SearchKind, value: &str) -> SearchToken {
    SearchToken {
        kind,
        token: value.as_bytes().to_vec(),
    }
}

fn new_patient(root_key_id: &[u8], search: Vec<SearchToken>) -> NewPatient {
    let id = PatientId::generate();
    NewPatient {
        id,
        sealed: random_bytes(96),
        subject_key: StoredSubjectKey {
            subject: id,
            key_id: random_bytes(16),
            root_key_id: root_key_id.to_vec(),
            wrapped: random_bytes(48),
        },
        search,
        now_ms: T0_MS,
    }
}

/// What the store must give back for a freshly inserted patient.
fn as_stored(patient: &NewPatient) -> StoredPatient {
    StoredPatient {
        id: patient.id,
        version: 1,
        sealed: patient.sealed.clone(),
        subject_key: Some(patient.subject_key.clone()),
        created_at_ms: patient.now_ms,
        updated_at_ms: patient.now_ms,
    }
}

fn sorted_ids<'a>(patients: impl IntoIterator<Item = &'a NewPatient>) -> Vec<PatientId> {
    let mut ids: Vec<PatientId> = patients.into_iter().map(|patient| patient.id).collect();
    ids.sort();
    ids
}

fn ids_of(patients: &[StoredPatient]) -> Vec<PatientId> {
    patients.iter().map(|patient| patient.id).collect()
}

/// Every patient matching all `filters`, collected page by page (two per page, so paging is
/// exercised too), checking that pages come in strictly increasing id order.
async fn ids_matching(store: &dyn Store, filters: &[SearchToken]) -> Vec<PatientId> {
    const PAGE_ROWS: u32 = 2;
    let mut ids: Vec<PatientId> = Vec::new();
    loop {
        let query = PatientQuery {
            filters: filters.to_vec(),
            after: ids.last().copied(),
            limit: PAGE_ROWS,
            cared_for_by: None,
        };
        let page = store.list_patients(&query).await.unwrap();
        assert!(page.len() <= PAGE_ROWS as usize, "a page of {}", page.len());
        if page.is_empty() {
            return ids;
        }
        for patient in page {
            if let Some(last) = ids.last() {
                assert!(
                    patient.id > *last,
                    "pages out of id order: {ids:?} then {:?}",
                    patient.id
                );
            }
            ids.push(patient.id);
        }
    }
}

/// Inserts all `patients` at once, each from its own task.
async fn insert_all(store: &Arc<dyn Store>, patients: Vec<NewPatient>) {
    let mut tasks = Vec::with_capacity(patients.len());
    for patient in patients {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(
            async move { store.insert_patient(patient).await },
        ));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
}

fn system_key(name: &str, root_key_id: &[u8]) -> StoredSystemKey {
    StoredSystemKey {
        name: name.to_owned(),
        root_key_id: root_key_id.to_vec(),
        wrapped: random_bytes(48),
    }
}

fn api_token(role: &str, revoked_at_ms: Option<i64>) -> StoredToken {
    StoredToken {
        id: TokenId::generate(),
        token_hash: random_bytes(32),
        role: role.to_owned(),
        label: format!("{role} laptop"),
        created_at_ms: T0_MS,
        expires_at_ms: T0_MS + 90 * 24 * 3_600_000,
        revoked_at_ms,
        patient: None,
    }
}

fn read_event(at_ms: i64, patient: PatientId) -> AuditEvent {
    AuditEvent {
        at_ms,
        actor: Some(TokenId::generate().to_string()),
        role: Some("clinician".to_owned()),
        organisation: Some("north-clinic".to_owned()),
        session: Some(Uuid::new_v4().to_string()),
        client_app: Some("smart-app-1".to_owned()),
        action: AuditAction::Read,
        patient: Some(patient),
        resource_type: Some("Patient".to_owned()),
        resource_id: Some(patient.to_string()),
        outcome: Outcome::Allowed,
        reason: "care-team".to_owned(),
        purpose_of_use: Some("TREAT".to_owned()),
        origin: RequestOrigin {
            request_id: Some(Uuid::new_v4().to_string()),
            source_ip: Some("203.0.113.7".to_owned()),
            user_agent: Some("haven-web/0.1 (Firefox)".to_owned()),
        },
    }
}

/// `sql` is refused by the audit tables' append-only triggers, not for any other reason
/// (a missing table would refuse it too, and prove nothing).
async fn assert_refused_as_append_only(engine: &Engine, sql: &str) {
    match engine.execute_raw(sql).await {
        Err(error) => assert!(
            error.to_string().contains("append-only"),
            "{sql}: refused for another reason: {error}"
        ),
        Ok(rows) => panic!("{sql}: changed {rows} rows of the audit trail"),
    }
}

fn system_event(at_ms: i64, action: AuditAction, outcome: Outcome) -> AuditEvent {
    AuditEvent {
        at_ms,
        actor: None,
        role: None,
        organisation: None,
        session: None,
        client_app: None,
        action,
        patient: None,
        resource_type: None,
        resource_id: None,
        outcome,
        reason: "scheduled".to_owned(),
        purpose_of_use: None,
        origin: RequestOrigin::default(),
    }
}

// ------------------------------------------------------------------------------------------
// Patients
// ------------------------------------------------------------------------------------------

async fn insert_then_get_returns_the_stored_record(engine: &Engine) {
    let store = engine.store();
    store.ping().await.unwrap();

    let mut patient = new_patient(ROOT_OLD, vec![search(SearchKind::Family, "okafor")]);
    // Every byte value, NUL included: sealed bytes are opaque, never text.
    patient.sealed = (0..=u8::MAX).collect();
    store.insert_patient(patient.clone()).await.unwrap();

    let stored = store.get_patient(patient.id).await.unwrap();
    assert_eq!(stored, Some(as_stored(&patient)));
    let stored = stored.unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.subject_key.unwrap().subject, patient.id);

    assert_eq!(
        store.get_patient(PatientId::generate()).await.unwrap(),
        None
    );
}

async fn inserting_an_existing_id_fails_and_keeps_the_first(engine: &Engine) {
    let store = engine.store();
    let first = new_patient(ROOT_OLD, vec![search(SearchKind::Family, "first")]);
    store.insert_patient(first.clone()).await.unwrap();

    let mut second = new_patient(ROOT_NEW, vec![search(SearchKind::Family, "second")]);
    second.id = first.id;
    second.subject_key.subject = first.id;
    second.now_ms = T0_MS + 1_000;
    let error = store.insert_patient(second).await.unwrap_err();
    assert!(matches!(error, StoreError::AlreadyExists), "{error:?}");

    assert_eq!(
        store.get_patient(first.id).await.unwrap(),
        Some(as_stored(&first))
    );
    assert_eq!(
        ids_matching(&*store, &[search(SearchKind::Family, "first")]).await,
        vec![first.id]
    );
    assert_eq!(
        ids_matching(&*store, &[search(SearchKind::Family, "second")]).await,
        vec![]
    );
    assert_eq!(
        store.root_keys_in_use().await.unwrap(),
        vec![ROOT_OLD.to_vec()]
    );
}

async fn update_with_the_expected_version_replaces_record_and_search_tokens(engine: &Engine) {
    let store = engine.store();
    let family_before = search(SearchKind::Family, "before");
    let birth_before = search(SearchKind::BirthDate, "1980-01-02");
    let family_after = search(SearchKind::Family, "after");
    let identifier_after = search(SearchKind::Identifier, "MRN-0001");
    let patient = new_patient(ROOT_OLD, vec![family_before.clone(), birth_before.clone()]);
    store.insert_patient(patient.clone()).await.unwrap();

    let update = PatientUpdate {
        id: patient.id,
        expected_version: 1,
        sealed: random_bytes(80),
        search: vec![family_after.clone(), identifier_after.clone()],
        now_ms: T0_MS + 60_000,
    };
    assert_eq!(
        store.update_patient(update.clone()).await.unwrap(),
        UpdateOutcome::Updated { version: 2 }
    );
    let updated = StoredPatient {
        version: 2,
        sealed: update.sealed.clone(),
        updated_at_ms: update.now_ms,
        ..as_stored(&patient)
    };
    assert_eq!(
        store.get_patient(patient.id).await.unwrap(),
        Some(updated.clone())
    );
    for stale in [&family_before, &birth_before] {
        assert_eq!(
            ids_matching(&*store, std::slice::from_ref(stale)).await,
            vec![],
            "{stale:?}"
        );
    }
    for fresh in [&family_after, &identifier_after] {
        assert_eq!(
            ids_matching(&*store, std::slice::from_ref(fresh)).await,
            vec![patient.id],
            "{fresh:?}"
        );
    }

    // A writer that read version 1 lost the race: nothing of its update may land.
    for expected_version in [1, 3] {
        let lost = PatientUpdate {
            id: patient.id,
            expected_version,
            sealed: random_bytes(80),
            search: vec![search(SearchKind::Family, "lost")],
            now_ms: T0_MS + 120_000,
        };
        assert_eq!(
            store.update_patient(lost).await.unwrap(),
            UpdateOutcome::VersionMismatch { current: 2 }
        );
    }
    assert_eq!(store.get_patient(patient.id).await.unwrap(), Some(updated));
    assert_eq!(
        ids_matching(&*store, &[search(SearchKind::Family, "lost")]).await,
        vec![]
    );
    assert_eq!(
        ids_matching(&*store, std::slice::from_ref(&family_after)).await,
        vec![patient.id]
    );

    let unknown = PatientUpdate {
        id: PatientId::generate(),
        ..update.clone()
    };
    assert_eq!(
        store.update_patient(unknown.clone()).await.unwrap(),
        UpdateOutcome::NotFound
    );
    assert_eq!(store.get_patient(unknown.id).await.unwrap(), None);

    let again = PatientUpdate {
        expected_version: 2,
        search: vec![],
        now_ms: T0_MS + 180_000,
        ..update
    };
    assert_eq!(
        store.update_patient(again).await.unwrap(),
        UpdateOutcome::Updated { version: 3 }
    );
    assert_eq!(ids_matching(&*store, &[family_after]).await, vec![]);
}

async fn concurrent_updates_at_one_version_let_exactly_one_win(engine: &Engine) {
    const WRITERS: usize = 8;
    let store = engine.store();
    let patient = new_patient(ROOT_OLD, vec![]);
    store.insert_patient(patient.clone()).await.unwrap();

    let updates: Vec<PatientUpdate> = (0..WRITERS)
        .map(|writer| PatientUpdate {
            id: patient.id,
            expected_version: 1,
            sealed: random_bytes(64),
            search: vec![search(SearchKind::Identifier, &format!("writer-{writer}"))],
            now_ms: T0_MS + 1_000,
        })
        .collect();
    let tasks: Vec<_> = updates
        .iter()
        .cloned()
        .map(|update| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.update_patient(update).await })
        })
        .collect();
    let mut winners = Vec::new();
    for (writer, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap().unwrap() {
            UpdateOutcome::Updated { version: 2 } => winners.push(writer),
            UpdateOutcome::VersionMismatch { current: 2 } => {}
            other => panic!("writer {writer}: unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let winner = winners[0];

    let stored = store.get_patient(patient.id).await.unwrap().unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.sealed, updates[winner].sealed);
    for writer in 0..WRITERS {
        let token = search(SearchKind::Identifier, &format!("writer-{writer}"));
        let expected = if writer == winner {
            vec![patient.id]
        } else {
            vec![]
        };
        assert_eq!(
            ids_matching(&*store, &[token]).await,
            expected,
            "writer {writer}"
        );
    }
}

async fn list_pages_in_id_order(engine: &Engine) {
    let store = engine.store();
    let patients: Vec<NewPatient> = (0..7).map(|_| new_patient(ROOT_OLD, vec![])).collect();
    // Newest first, so that insertion order is not id order.
    for patient in patients.iter().rev() {
        store.insert_patient(patient.clone()).await.unwrap();
    }
    let expected = sorted_ids(&patients);

    let everything = store
        .list_patients(&PatientQuery {
            limit: limits::PAGE_ROWS_MAX,
            ..PatientQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids_of(&everything), expected);
    for stored in &everything {
        let patient = patients.iter().find(|p| p.id == stored.id).unwrap();
        assert_eq!(*stored, as_stored(patient));
    }

    let mut after = None;
    for chunk in expected.chunks(3) {
        let page = store
            .list_patients(&PatientQuery {
                filters: vec![],
                after,
                limit: 3,
                cared_for_by: None,
            })
            .await
            .unwrap();
        assert_eq!(ids_of(&page), chunk);
        after = page.last().map(|patient| patient.id);
    }
    let past_the_end = PatientQuery {
        filters: vec![],
        after,
        limit: 3,
        cared_for_by: None,
    };
    assert_eq!(store.list_patients(&past_the_end).await.unwrap(), vec![]);

    // The cursor is a position, not a row: it need not be a stored id.
    let before_all = PatientQuery {
        filters: vec![],
        after: Some(PatientId::from_uuid(Uuid::nil())),
        limit: 2,
        cared_for_by: None,
    };
    assert_eq!(
        ids_of(&store.list_patients(&before_all).await.unwrap()),
        expected[..2]
    );
    let after_all = PatientQuery {
        filters: vec![],
        after: Some(PatientId::from_uuid(Uuid::max())),
        limit: 2,
        cared_for_by: None,
    };
    assert_eq!(store.list_patients(&after_all).await.unwrap(), vec![]);
}

async fn list_never_returns_more_than_page_rows_max(engine: &Engine) {
    let store = engine.store();
    let extra = 5;
    let total = limits::PAGE_ROWS_MAX as usize + extra;
    let family = search(SearchKind::Family, "common");
    let patients: Vec<NewPatient> = (0..total)
        .map(|_| new_patient(ROOT_OLD, vec![family.clone()]))
        .collect();
    insert_all(&store, patients.clone()).await;
    let expected = sorted_ids(&patients);

    for filters in [vec![], vec![family]] {
        let first = store
            .list_patients(&PatientQuery {
                filters: filters.clone(),
                after: None,
                limit: u32::MAX,
                cared_for_by: None,
            })
            .await
            .unwrap();
        assert_eq!(first.len(), limits::PAGE_ROWS_MAX as usize);
        assert_eq!(ids_of(&first), expected[..limits::PAGE_ROWS_MAX as usize]);

        let rest = store
            .list_patients(&PatientQuery {
                filters,
                after: first.last().map(|patient| patient.id),
                limit: u32::MAX,
                cared_for_by: None,
            })
            .await
            .unwrap();
        assert_eq!(ids_of(&rest), expected[limits::PAGE_ROWS_MAX as usize..]);
    }
}

async fn search_filters_are_combined_with_and(engine: &Engine) {
    let store = engine.store();
    let smith = search(SearchKind::Family, "smith");
    let jones = search(SearchKind::Family, "jones");
    let born_1980 = search(SearchKind::BirthDate, "1980-05-01");
    let born_1990 = search(SearchKind::BirthDate, "1990-11-30");
    let smith_1980 = new_patient(ROOT_OLD, vec![smith.clone(), born_1980.clone()]);
    let smith_1990 = new_patient(ROOT_OLD, vec![smith.clone(), born_1990.clone()]);
    let jones_1980 = new_patient(ROOT_OLD, vec![jones.clone(), born_1980.clone()]);
    let unindexed = new_patient(ROOT_OLD, vec![]);
    for patient in [&smith_1980, &smith_1990, &jones_1980, &unindexed] {
        store.insert_patient(patient.clone()).await.unwrap();
    }

    let cases: Vec<(Vec<SearchToken>, Vec<PatientId>)> = vec![
        (vec![smith.clone()], sorted_ids([&smith_1980, &smith_1990])),
        (
            vec![born_1980.clone()],
            sorted_ids([&smith_1980, &jones_1980]),
        ),
        (vec![smith.clone(), born_1980.clone()], vec![smith_1980.id]),
        (vec![born_1980.clone(), smith.clone()], vec![smith_1980.id]),
        (vec![jones.clone(), born_1990.clone()], vec![]),
        (vec![search(SearchKind::Family, "nobody")], vec![]),
        // The same bytes in another index are another token.
        (vec![search(SearchKind::Identifier, "smith")], vec![]),
        (
            vec![smith.clone(), smith.clone()],
            sorted_ids([&smith_1980, &smith_1990]),
        ),
    ];
    for (filters, expected) in cases {
        assert_eq!(
            ids_matching(&*store, &filters).await,
            expected,
            "{filters:?}"
        );
    }

    // A filtered query pages like an unfiltered one.
    let smiths = sorted_ids([&smith_1980, &smith_1990]);
    let second_page = store
        .list_patients(&PatientQuery {
            filters: vec![smith],
            after: Some(smiths[0]),
            limit: 10,
            cared_for_by: None,
        })
        .await
        .unwrap();
    assert_eq!(ids_of(&second_page), smiths[1..]);
}

// ------------------------------------------------------------------------------------------
// Keys
// ------------------------------------------------------------------------------------------

async fn shred_subject_destroys_the_key_and_search_tokens_once(engine: &Engine) {
    let store = engine.store();
    let shared = search(SearchKind::Family, "shared");
    let own = search(SearchKind::Identifier, "MRN-SHRED");
    let subject = new_patient(ROOT_OLD, vec![shared.clone(), own.clone()]);
    let bystander = new_patient(ROOT_OLD, vec![shared.clone()]);
    for patient in [&subject, &bystander] {
        store.insert_patient(patient.clone()).await.unwrap();
    }

    assert!(store.shred_subject(subject.id, T0_MS + 1).await.unwrap());
    assert!(!store.shred_subject(subject.id, T0_MS + 2).await.unwrap());

    // The sealed row stays, unreadable without its key.
    let shredded = StoredPatient {
        subject_key: None,
        ..as_stored(&subject)
    };
    assert_eq!(store.get_patient(subject.id).await.unwrap(), Some(shredded));
    assert_eq!(ids_matching(&*store, &[own]).await, vec![]);
    assert_eq!(ids_matching(&*store, &[shared]).await, vec![bystander.id]);
    assert_eq!(
        store.get_patient(bystander.id).await.unwrap(),
        Some(as_stored(&bystander))
    );

    // Key rotation no longer sees the destroyed key, and cannot bring it back.
    assert_eq!(
        store.subject_keys_not_under(ROOT_NEW, 500).await.unwrap(),
        vec![bystander.subject_key.clone()]
    );
    assert_eq!(store.count_keys_not_under(ROOT_NEW).await.unwrap(), 1);
    assert!(
        !store
            .rewrap_subject_key(&subject.subject_key, ROOT_NEW, &random_bytes(48))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .get_patient(subject.id)
            .await
            .unwrap()
            .unwrap()
            .subject_key,
        None
    );

    // The id stays taken: a new key must not make the old sealed row readable again.
    let mut reuse = new_patient(ROOT_OLD, vec![]);
    reuse.id = subject.id;
    reuse.subject_key.subject = subject.id;
    let error = store.insert_patient(reuse).await.unwrap_err();
    assert!(matches!(error, StoreError::AlreadyExists), "{error:?}");
    assert_eq!(
        store
            .get_patient(subject.id)
            .await
            .unwrap()
            .unwrap()
            .subject_key,
        None
    );

    assert!(
        !store
            .shred_subject(PatientId::generate(), T0_MS + 3)
            .await
            .unwrap()
    );

    // Two erasure requests at once destroy the key once.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.shred_subject(bystander.id, T0_MS + 4).await })
        })
        .collect();
    let mut destroyed = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() {
            destroyed += 1;
        }
    }
    assert_eq!(destroyed, 1);
    assert_eq!(store.count_keys_not_under(ROOT_NEW).await.unwrap(), 0);
}

async fn system_keys_are_set_once_and_rewrapped_by_compare_and_swap(engine: &Engine) {
    let store = engine.store();
    assert_eq!(store.system_key("blind-index").await.unwrap(), None);
    assert_eq!(store.system_keys().await.unwrap(), vec![]);

    let first = system_key("blind-index", ROOT_OLD);
    let second = system_key("blind-index", ROOT_NEW);
    assert_eq!(
        store
            .put_system_key_if_absent(first.clone(), T0_MS)
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        store
            .put_system_key_if_absent(second.clone(), T0_MS + 1)
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        store.system_key("blind-index").await.unwrap(),
        Some(first.clone())
    );

    // Several instances starting at once agree on one key.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            let candidate = system_key("audit-mac", ROOT_OLD);
            tokio::spawn(async move { store.put_system_key_if_absent(candidate, T0_MS).await })
        })
        .collect();
    let mut agreed = BTreeSet::new();
    for task in tasks {
        agreed.insert(task.await.unwrap().unwrap().wrapped);
    }
    assert_eq!(agreed.len(), 1);
    let audit_mac = store.system_key("audit-mac").await.unwrap().unwrap();
    assert!(agreed.contains(&audit_mac.wrapped));

    // Compare-and-swap: only the holder of the current wrapping may replace it.
    let rewrapped = random_bytes(48);
    assert!(
        !store
            .rewrap_system_key(&second, ROOT_NEW, &rewrapped)
            .await
            .unwrap()
    );
    assert_eq!(
        store.system_key("blind-index").await.unwrap(),
        Some(first.clone())
    );
    assert!(
        store
            .rewrap_system_key(&first, ROOT_NEW, &rewrapped)
            .await
            .unwrap()
    );
    let current = StoredSystemKey {
        name: "blind-index".to_owned(),
        root_key_id: ROOT_NEW.to_vec(),
        wrapped: rewrapped,
    };
    assert_eq!(
        store.system_key("blind-index").await.unwrap(),
        Some(current.clone())
    );
    assert!(
        !store
            .rewrap_system_key(&first, b"root-key-newer", &random_bytes(48))
            .await
            .unwrap()
    );
    assert_eq!(
        store.system_key("blind-index").await.unwrap(),
        Some(current.clone())
    );

    assert_eq!(store.system_keys().await.unwrap(), vec![audit_mac, current]);
}

async fn rotation_rewraps_every_key_under_the_new_root(engine: &Engine) {
    const BATCH_ROWS: u32 = 2;
    let store = engine.store();
    let patients: Vec<NewPatient> = (0..5).map(|_| new_patient(ROOT_OLD, vec![])).collect();
    insert_all(&store, patients.clone()).await;
    let blind_index = system_key("blind-index", ROOT_OLD);
    store
        .put_system_key_if_absent(blind_index.clone(), T0_MS)
        .await
        .unwrap();

    assert_eq!(
        store.root_keys_in_use().await.unwrap(),
        vec![ROOT_OLD.to_vec()]
    );
    assert_eq!(store.count_keys_not_under(ROOT_OLD).await.unwrap(), 0);
    assert_eq!(store.count_keys_not_under(ROOT_NEW).await.unwrap(), 6);
    assert_eq!(
        store.subject_keys_not_under(ROOT_OLD, 500).await.unwrap(),
        vec![]
    );

    let mut keys: Vec<StoredSubjectKey> = patients
        .iter()
        .map(|patient| patient.subject_key.clone())
        .collect();
    keys.sort_by_key(|key| key.subject);
    assert_eq!(
        store.subject_keys_not_under(ROOT_NEW, 500).await.unwrap(),
        keys
    );
    assert_eq!(
        store
            .subject_keys_not_under(ROOT_NEW, BATCH_ROWS)
            .await
            .unwrap(),
        keys[..BATCH_ROWS as usize]
    );

    // A rotator holding a stale copy of the wrapped key must not overwrite it.
    let stale = StoredSubjectKey {
        wrapped: random_bytes(48),
        ..keys[0].clone()
    };
    assert!(
        !store
            .rewrap_subject_key(&stale, ROOT_NEW, &random_bytes(48))
            .await
            .unwrap()
    );
    let unchanged = store.get_patient(keys[0].subject).await.unwrap().unwrap();
    assert_eq!(unchanged.subject_key, Some(keys[0].clone()));

    // Rotate in batches, as the rotation job does.
    let mut rewrapped: BTreeMap<PatientId, Vec<u8>> = BTreeMap::new();
    for _ in 0..=keys.len() {
        let batch = store
            .subject_keys_not_under(ROOT_NEW, BATCH_ROWS)
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= BATCH_ROWS as usize);
        for key in batch {
            let wrapped = random_bytes(48);
            assert!(
                store
                    .rewrap_subject_key(&key, ROOT_NEW, &wrapped)
                    .await
                    .unwrap()
            );
            assert!(
                rewrapped.insert(key.subject, wrapped).is_none(),
                "{key:?} twice"
            );
        }
    }
    assert_eq!(rewrapped.len(), keys.len());
    assert_eq!(
        store.subject_keys_not_under(ROOT_NEW, 500).await.unwrap(),
        vec![]
    );
    // The system key is still under the old root.
    assert_eq!(store.count_keys_not_under(ROOT_NEW).await.unwrap(), 1);
    assert_eq!(
        store
            .root_keys_in_use()
            .await
            .unwrap()
            .into_iter()
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([ROOT_OLD.to_vec(), ROOT_NEW.to_vec()])
    );

    assert!(
        store
            .rewrap_system_key(&blind_index, ROOT_NEW, &random_bytes(48))
            .await
            .unwrap()
    );
    assert_eq!(store.count_keys_not_under(ROOT_NEW).await.unwrap(), 0);
    assert_eq!(store.count_keys_not_under(ROOT_OLD).await.unwrap(), 6);
    assert_eq!(
        store.root_keys_in_use().await.unwrap(),
        vec![ROOT_NEW.to_vec()]
    );

    for key in &keys {
        let stored = store.get_patient(key.subject).await.unwrap().unwrap();
        let expected = StoredSubjectKey {
            root_key_id: ROOT_NEW.to_vec(),
            wrapped: rewrapped[&key.subject].clone(),
            ..key.clone()
        };
        assert_eq!(stored.subject_key, Some(expected));
        // The old wrapping is no longer the current one.
        assert!(
            !store
                .rewrap_subject_key(key, b"root-key-newer", &random_bytes(48))
                .await
                .unwrap()
        );
    }
}

// ------------------------------------------------------------------------------------------
// Tokens
// ------------------------------------------------------------------------------------------

async fn tokens_are_found_by_hash(engine: &Engine) {
    let store = engine.store();
    let active = api_token("clinician", None);
    let revoked = api_token("admin", Some(T0_MS + 5_000));
    // A patient's token carries the one record it stands for.
    let patient = StoredToken {
        patient: Some(PatientId::generate()),
        ..api_token("patient", None)
    };
    for token in [&active, &revoked, &patient] {
        store.insert_token(token.clone()).await.unwrap();
    }

    for token in [&active, &revoked, &patient] {
        assert_eq!(
            store.token_by_hash(&token.token_hash).await.unwrap(),
            Some(token.clone())
        );
    }
    assert_eq!(store.token_by_hash(&random_bytes(32)).await.unwrap(), None);
    assert_eq!(store.token_by_hash(&[]).await.unwrap(), None);

    // A hash names one token: a second token with the same hash is refused.
    let clash = StoredToken {
        id: TokenId::generate(),
        role: "admin".to_owned(),
        ..active.clone()
    };
    assert!(store.insert_token(clash).await.is_err());
    assert_eq!(
        store.token_by_hash(&active.token_hash).await.unwrap(),
        Some(active)
    );
}

// ------------------------------------------------------------------------------------------
// Audit
// ------------------------------------------------------------------------------------------

/// Two handles on one database (two Haven instances on one PostgreSQL) append at once, and
/// a reader polls the log meanwhile. Every snapshot must be a prefix of the final log: the
/// Merkle tree is built in `seq` order from what is visible, so an entry that became visible
/// after a later one would be left out of the tree for good.
async fn appends_through_two_handles_become_visible_in_seq_order(engine: &Engine) {
    const BATCHES_PER_HANDLE: usize = 150;
    let first = engine.store();
    let second_opened = engine.open().await;
    let second = second_opened.as_dyn();
    let patient = PatientId::generate();
    let appender = |store: Arc<dyn Store>, offset: i64| {
        tokio::spawn(async move {
            for batch in 0..BATCHES_PER_HANDLE {
                let events = (0..=batch % 4)
                    .map(|index| read_event(T0_MS + offset + index as i64, patient))
                    .collect();
                store.append_audit(events).await.unwrap();
            }
        })
    };
    let appenders = [appender(Arc::clone(&first), 0), appender(second, 1_000_000)];
    // The positions of the entries visible now.
    let visible = || async {
        let stored = first.audit_events(0, 1_000).await.unwrap();
        stored.iter().map(|entry| entry.seq).collect::<Vec<i64>>()
    };
    let mut snapshots = Vec::new();
    while appenders.iter().any(|task| !task.is_finished()) {
        snapshots.push(visible().await);
        tokio::task::yield_now().await;
    }
    for task in appenders {
        task.await.unwrap();
    }
    second_opened.close().await;

    let last = visible().await;
    let per_handle: usize = (0..BATCHES_PER_HANDLE).map(|batch| batch % 4 + 1).sum();
    assert_eq!(last.len(), 2 * per_handle);
    assert!(
        snapshots.len() > 1,
        "the reader polled while entries arrived"
    );
    for snapshot in &snapshots {
        assert_eq!(
            snapshot.as_slice(),
            &last[..snapshot.len()],
            "an entry became visible after a later one"
        );
    }
}

async fn audit_events_come_back_in_order_with_increasing_seq(engine: &Engine) {
    let store = engine.store();
    assert_eq!(store.audit_events(0, 100).await.unwrap(), vec![]);

    let patient = PatientId::generate();
    let mut failed_login = system_event(T0_MS + 2, AuditAction::FailedLogin, Outcome::Denied);
    failed_login.reason = "unknown-token".to_owned();
    failed_login.origin.source_ip = Some("2001:db8::1".to_owned());
    let first_batch = vec![
        read_event(T0_MS, patient),
        system_event(T0_MS + 1, AuditAction::KeyRotation, Outcome::Allowed),
        failed_login,
    ];
    // Every action, each once, so every stable name makes the round trip.
    let second_batch: Vec<AuditEvent> = AuditAction::ALL
        .into_iter()
        .enumerate()
        .map(|(index, action)| {
            let outcome = if index % 2 == 0 {
                Outcome::Allowed
            } else {
                Outcome::Denied
            };
            system_event(T0_MS + 10 + index as i64, action, outcome)
        })
        .collect();
    store.append_audit(first_batch.clone()).await.unwrap();
    store.append_audit(vec![]).await.unwrap();
    store.append_audit(second_batch.clone()).await.unwrap();
    let last = read_event(T0_MS + 100, patient);
    store.append_audit(vec![last.clone()]).await.unwrap();

    let appended: Vec<AuditEvent> = first_batch
        .into_iter()
        .chain(second_batch)
        .chain([last])
        .collect();
    let stored = store.audit_events(0, 1_000).await.unwrap();
    assert_eq!(stored.len(), appended.len());
    assert_eq!(stored[0].seq, 1, "the log starts at 1");
    for pair in stored.windows(2) {
        assert!(
            pair[0].seq < pair[1].seq,
            "seq {} then {}",
            pair[0].seq,
            pair[1].seq
        );
    }
    for (index, (stored, appended)) in stored.iter().zip(&appended).enumerate() {
        assert_eq!(&stored.event, appended, "event {index}");
    }

    // Paging by seq.
    assert_eq!(store.audit_events(0, 1).await.unwrap(), stored[..1]);
    assert_eq!(
        store.audit_events(stored[1].seq, 2).await.unwrap(),
        stored[2..4]
    );
    let mut paged = Vec::new();
    let mut after_seq = 0;
    loop {
        let page = store.audit_events(after_seq, 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after_seq = last.seq;
        paged.extend(page);
    }
    assert_eq!(paged, stored);
    let last_seq = stored.last().unwrap().seq;
    assert_eq!(store.audit_events(last_seq, 10).await.unwrap(), vec![]);
}

async fn audit_trail_is_append_only(engine: &Engine) {
    let store = engine.store();
    let patient = PatientId::generate();
    store
        .append_audit(vec![
            read_event(T0_MS, patient),
            system_event(T0_MS + 1, AuditAction::CryptoShred, Outcome::Allowed),
        ])
        .await
        .unwrap();
    let before = store.audit_events(0, 10).await.unwrap();
    assert_eq!(before.len(), 2);

    // The raw path can write, so a refusal below comes from the audit table's guard.
    assert_eq!(
        engine
            .execute_raw("UPDATE api_tokens SET label = label")
            .await
            .unwrap(),
        0
    );

    let mut tampering = vec![
        "UPDATE audit_events SET reason = 'x'",
        "UPDATE audit_events SET reason = 'x' WHERE seq = 1",
        "DELETE FROM audit_events",
        "DELETE FROM audit_events WHERE seq = 2",
    ];
    if engine.is_postgres() {
        tampering.push("TRUNCATE audit_events");
    }
    for sql in tampering {
        assert_refused_as_append_only(engine, sql).await;
    }
    assert_eq!(store.audit_events(0, 10).await.unwrap(), before);

    // Appending still works after the refusals.
    store
        .append_audit(vec![system_event(
            T0_MS + 2,
            AuditAction::AuditQuery,
            Outcome::Allowed,
        )])
        .await
        .unwrap();
    let after = store.audit_events(0, 10).await.unwrap();
    assert_eq!(after.len(), 3);
    assert_eq!(after[..2], before);
}

// ------------------------------------------------------------------------------------------
// Concurrency and durability
// ------------------------------------------------------------------------------------------

async fn concurrent_inserts_all_succeed(engine: &Engine) {
    const WRITERS: usize = 64;
    let store = engine.store();
    let patients: Vec<NewPatient> = (0..WRITERS)
        .map(|writer| {
            new_patient(
                ROOT_OLD,
                vec![search(SearchKind::Identifier, &format!("MRN-{writer}"))],
            )
        })
        .collect();
    insert_all(&store, patients.clone()).await;

    for (writer, patient) in patients.iter().enumerate() {
        assert_eq!(
            store.get_patient(patient.id).await.unwrap(),
            Some(as_stored(patient)),
            "writer {writer}"
        );
        let token = search(SearchKind::Identifier, &format!("MRN-{writer}"));
        assert_eq!(ids_matching(&*store, &[token]).await, vec![patient.id]);
    }
    let listed = store
        .list_patients(&PatientQuery {
            limit: limits::PAGE_ROWS_MAX,
            ..PatientQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids_of(&listed), sorted_ids(&patients));
}

async fn a_failing_write_does_not_undo_concurrent_writes(engine: &Engine) {
    const WRITERS: usize = 32;
    let store = engine.store();
    let existing = new_patient(ROOT_OLD, vec![]);
    let token = api_token("clinician", None);
    store.insert_patient(existing.clone()).await.unwrap();
    store.insert_token(token.clone()).await.unwrap();

    let mut duplicate_patient = new_patient(ROOT_NEW, vec![]);
    duplicate_patient.id = existing.id;
    duplicate_patient.subject_key.subject = existing.id;
    let duplicate_token = StoredToken {
        id: TokenId::generate(),
        ..token.clone()
    };
    let patients: Vec<NewPatient> = (0..WRITERS)
        .map(|_| new_patient(ROOT_OLD, vec![]))
        .collect();

    // The failing writes sit in the middle of the others, so that with group commit they
    // share a batch with writes that must still land.
    let mut inserts = Vec::new();
    let mut failures = Vec::new();
    for (index, patient) in patients.iter().cloned().enumerate() {
        let writer = Arc::clone(&store);
        inserts.push(tokio::spawn(
            async move { writer.insert_patient(patient).await },
        ));
        if index == WRITERS / 3 {
            let writer = Arc::clone(&store);
            let duplicate = duplicate_patient.clone();
            failures.push(tokio::spawn(async move {
                writer.insert_patient(duplicate).await
            }));
        }
        if index == 2 * WRITERS / 3 {
            let writer = Arc::clone(&store);
            let duplicate = duplicate_token.clone();
            failures.push(tokio::spawn(
                async move { writer.insert_token(duplicate).await },
            ));
        }
    }
    for insert in inserts {
        insert.await.unwrap().unwrap();
    }
    let mut failures = failures.into_iter();
    let patient_error = failures.next().unwrap().await.unwrap().unwrap_err();
    assert!(
        matches!(patient_error, StoreError::AlreadyExists),
        "{patient_error:?}"
    );
    assert!(failures.next().unwrap().await.unwrap().is_err());

    for patient in &patients {
        assert_eq!(
            store.get_patient(patient.id).await.unwrap(),
            Some(as_stored(patient))
        );
    }
    assert_eq!(
        store.get_patient(existing.id).await.unwrap(),
        Some(as_stored(&existing))
    );
    assert_eq!(
        store.token_by_hash(&token.token_hash).await.unwrap(),
        Some(token)
    );
}

async fn acknowledged_writes_survive_a_restart(engine: &Engine) {
    let store = engine.store();
    let patients: Vec<NewPatient> = (0..3)
        .map(|index| {
            new_patient(
                ROOT_OLD,
                vec![search(SearchKind::Family, &format!("f{index}"))],
            )
        })
        .collect();
    insert_all(&store, patients.clone()).await;
    let update = PatientUpdate {
        id: patients[0].id,
        expected_version: 1,
        sealed: random_bytes(64),
        search: vec![search(SearchKind::Family, "updated")],
        now_ms: T0_MS + 1_000,
    };
    assert_eq!(
        store.update_patient(update).await.unwrap(),
        UpdateOutcome::Updated { version: 2 }
    );
    assert!(
        store
            .shred_subject(patients[1].id, T0_MS + 2_000)
            .await
            .unwrap()
    );
    store
        .put_system_key_if_absent(system_key("blind-index", ROOT_OLD), T0_MS)
        .await
        .unwrap();
    let token = api_token("admin", None);
    store.insert_token(token.clone()).await.unwrap();
    store
        .append_audit(vec![read_event(T0_MS, patients[2].id)])
        .await
        .unwrap();

    let mut before = Vec::new();
    for patient in &patients {
        before.push(store.get_patient(patient.id).await.unwrap().unwrap());
    }
    let system_keys = store.system_keys().await.unwrap();
    let audit = store.audit_events(0, 10).await.unwrap();
    let search_results = [
        ids_matching(&*store, &[search(SearchKind::Family, "updated")]).await,
        ids_matching(&*store, &[search(SearchKind::Family, "f1")]).await,
        ids_matching(&*store, &[search(SearchKind::Family, "f2")]).await,
    ];
    assert_eq!(
        search_results,
        [vec![patients[0].id], vec![], vec![patients[2].id]]
    );
    drop(store);

    engine.restart().await;
    let store = engine.store();
    for (patient, before) in patients.iter().zip(before) {
        assert_eq!(store.get_patient(patient.id).await.unwrap(), Some(before));
    }
    assert_eq!(store.system_keys().await.unwrap(), system_keys);
    assert_eq!(
        store.token_by_hash(&token.token_hash).await.unwrap(),
        Some(token)
    );
    assert_eq!(store.audit_events(0, 10).await.unwrap(), audit);
    assert_eq!(
        [
            ids_matching(&*store, &[search(SearchKind::Family, "updated")]).await,
            ids_matching(&*store, &[search(SearchKind::Family, "f1")]).await,
            ids_matching(&*store, &[search(SearchKind::Family, "f2")]).await,
        ],
        search_results
    );
}

/// A crash leaves the files as they are at that moment: copying them while the store is still
/// open (no clean shutdown, no checkpoint) must already give every acknowledged write.
async fn acknowledged_writes_are_in_the_files_before_shutdown(engine: &Engine) {
    let store = engine.store();
    let patients: Vec<NewPatient> = (0..16).map(|_| new_patient(ROOT_OLD, vec![])).collect();
    insert_all(&store, patients.clone()).await;
    store
        .append_audit(vec![system_event(
            T0_MS,
            AuditAction::Create,
            Outcome::Allowed,
        )])
        .await
        .unwrap();

    let path = engine.sqlite_path();
    let crashed = tempfile::tempdir().unwrap();
    let copy = crashed.path().join("haven.db");
    // The records' file and the audit log's, each with its WAL.
    for (from, to) in [
        (path.clone(), copy.clone()),
        (
            SqliteStore::audit_path(&path),
            SqliteStore::audit_path(&copy),
        ),
    ] {
        std::fs::copy(&from, &to).unwrap();
        let wal = from.with_extension("db-wal");
        if wal.exists() {
            std::fs::copy(&wal, to.with_extension("db-wal")).unwrap();
        }
    }

    let recovered = SqliteStore::open(&copy).await.unwrap();
    for patient in &patients {
        assert_eq!(
            recovered.get_patient(patient.id).await.unwrap(),
            Some(as_stored(patient))
        );
    }
    assert_eq!(
        recovered.audit_events(0, 10).await.unwrap(),
        store.audit_events(0, 10).await.unwrap()
    );
}

async fn checkpoints_are_kept_once_in_size_order_and_never_changed(engine: &Engine) {
    let store = engine.store();
    assert_eq!(store.latest_checkpoint().await.unwrap(), None);
    let checkpoint = |size: u64, note: &str| haven_store::StoredCheckpoint {
        size,
        root: vec![size as u8; 32],
        note: note.to_owned(),
        created_at_ms: T0_MS + size as i64,
    };
    for size in [5, 1, 3] {
        store
            .insert_checkpoint(checkpoint(size, "first"))
            .await
            .unwrap();
    }
    // A second checkpoint of the same size is ignored: the first signed one stands.
    store
        .insert_checkpoint(checkpoint(3, "second"))
        .await
        .unwrap();

    let all = store.checkpoints(0, 100).await.unwrap();
    assert_eq!(all.iter().map(|c| c.size).collect::<Vec<_>>(), [1, 3, 5]);
    assert!(all.iter().all(|c| c.note == "first"));
    assert_eq!(all[1], checkpoint(3, "first"));
    assert_eq!(
        store.checkpoints(1, 1).await.unwrap(),
        vec![checkpoint(3, "first")]
    );
    assert_eq!(store.checkpoints(5, 100).await.unwrap(), vec![]);
    assert_eq!(
        store.latest_checkpoint().await.unwrap(),
        Some(checkpoint(5, "first"))
    );

    for sql in [
        "UPDATE audit_checkpoints SET note = 'forged'",
        "DELETE FROM audit_checkpoints WHERE size = 1",
    ] {
        assert_refused_as_append_only(engine, sql).await;
    }
    assert_eq!(store.checkpoints(0, 100).await.unwrap(), all);
}

async fn the_audit_tree_is_stored_once_and_read_back_by_position_and_seq(engine: &Engine) {
    use haven_audit::merkle::{CompactTree, NodeId, leaf_hash};
    use haven_store::{TreeLeaf, TreeNode};
    let store = engine.store();
    assert_eq!(store.tree_size().await.unwrap(), 0);

    // Seven leaves with gaps in their seqs (PostgreSQL sequences skip numbers).
    let mut tree = CompactTree::new();
    let mut leaves = Vec::new();
    let mut nodes = Vec::new();
    for index in 0..7u64 {
        let hash = leaf_hash(format!("entry {index}").as_bytes());
        leaves.push(TreeLeaf {
            index,
            seq: 10 + 3 * index as i64,
            hash,
        });
        tree.push_recording(hash, |id, hash| {
            if id.level > 0 {
                nodes.push(TreeNode { id, hash: *hash });
            }
        });
    }
    // Written in two steps, the second repeating part of the first, as after a crash.
    store
        .append_tree(leaves[..4].to_vec(), nodes[..3].to_vec())
        .await
        .unwrap();
    store
        .append_tree(leaves[2..].to_vec(), nodes.clone())
        .await
        .unwrap();
    assert_eq!(store.tree_size().await.unwrap(), 7);
    assert_eq!(store.tree_leaves(0, 100).await.unwrap(), leaves);
    assert_eq!(store.tree_leaves(5, 1).await.unwrap(), leaves[5..6]);
    assert_eq!(store.tree_leaf_by_seq(19).await.unwrap(), Some(leaves[3]));
    assert_eq!(store.tree_leaf_by_seq(11).await.unwrap(), None);

    let asked = [
        NodeId { level: 2, index: 0 },
        NodeId { level: 0, index: 6 },
        NodeId { level: 1, index: 2 },
        NodeId { level: 3, index: 0 }, // the tree of 7 has no perfect subtree of 8
        NodeId { level: 0, index: 7 },
    ];
    let expected_level1 = nodes
        .iter()
        .find(|n| n.id == NodeId { level: 1, index: 2 })
        .unwrap()
        .hash;
    let expected_level2 = nodes
        .iter()
        .find(|n| n.id == NodeId { level: 2, index: 0 })
        .unwrap()
        .hash;
    assert_eq!(
        store.tree_nodes(&asked).await.unwrap(),
        vec![
            Some(expected_level2),
            Some(leaves[6].hash),
            Some(expected_level1),
            None,
            None
        ]
    );

    // A repeated write with other hashes does not replace what is stored.
    let mut forged = leaves[0];
    forged.hash = leaf_hash(b"forged");
    store.append_tree(vec![forged], vec![]).await.unwrap();
    assert_eq!(store.tree_leaves(0, 1).await.unwrap(), leaves[..1]);

    for sql in [
        "UPDATE audit_tree_leaves SET seq = seq + 1000",
        "DELETE FROM audit_tree_leaves WHERE idx = 6",
        "UPDATE audit_tree_nodes SET idx = idx + 1000",
        "DELETE FROM audit_tree_nodes WHERE level = 1",
    ] {
        assert_refused_as_append_only(engine, sql).await;
    }
    assert_eq!(store.tree_leaves(0, 100).await.unwrap(), leaves);
}

async fn audit_tree_writes_and_reads_are_bounded(engine: &Engine) {
    use haven_audit::merkle::NodeId;
    use haven_store::TreeLeaf;
    let store = engine.store();
    let too_many: Vec<TreeLeaf> = (0..=limits::TREE_WRITE_ROWS_MAX as u64)
        .map(|index| TreeLeaf {
            index,
            seq: index as i64 + 1,
            hash: [1; 32],
        })
        .collect();
    assert!(matches!(
        store.append_tree(too_many, vec![]).await,
        Err(StoreError::LimitExceeded { .. })
    ));
    assert_eq!(store.tree_size().await.unwrap(), 0, "nothing was written");
    let ids = vec![NodeId { level: 0, index: 0 }; limits::TREE_NODES_READ_MAX + 1];
    assert!(matches!(
        store.tree_nodes(&ids).await,
        Err(StoreError::LimitExceeded { .. })
    ));
    assert_eq!(store.tree_nodes(&ids[..2]).await.unwrap(), vec![None, None]);
}

async fn audit_reports_filter_sort_and_page(engine: &Engine) {
    use haven_store::{AuditQuery, AuditSortField};
    let store = engine.store();
    let alice = PatientId::generate();
    let bob = PatientId::generate();
    let mut events = Vec::new();
    for i in 0..6 {
        let mut event = read_event(T0_MS + i * 1000, if i % 2 == 0 { alice } else { bob });
        event.actor = Some(format!("actor-{}", i % 3));
        if i == 4 {
            event.outcome = Outcome::Denied;
        }
        events.push(event);
    }
    events.push(system_event(
        T0_MS + 6000,
        AuditAction::KeyRotation,
        Outcome::Allowed,
    ));
    store.append_audit(events).await.unwrap();
    let seqs =
        |rows: &[haven_audit::StoredAuditEvent]| rows.iter().map(|r| r.seq).collect::<Vec<_>>();
    let query = |q: AuditQuery| {
        let store = store.clone();
        async move {
            store
                .query_audit(&AuditQuery { limit: 100, ..q })
                .await
                .unwrap()
        }
    };

    assert_eq!(
        seqs(&query(AuditQuery::default()).await),
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert_eq!(
        seqs(
            &query(AuditQuery {
                patient: Some(alice),
                ..Default::default()
            })
            .await
        ),
        [1, 3, 5]
    );
    assert_eq!(
        seqs(
            &query(AuditQuery {
                actor: Some("actor-1".into()),
                ..Default::default()
            })
            .await
        ),
        [2, 5]
    );
    assert_eq!(
        seqs(
            &query(AuditQuery {
                outcome: Some(Outcome::Denied),
                ..Default::default()
            })
            .await
        ),
        [5]
    );
    assert_eq!(
        seqs(
            &query(AuditQuery {
                action: Some(AuditAction::KeyRotation),
                ..Default::default()
            })
            .await
        ),
        [7]
    );
    // Time range: from inclusive, to exclusive.
    assert_eq!(
        seqs(
            &query(AuditQuery {
                from_ms: Some(T0_MS + 1000),
                to_ms: Some(T0_MS + 3000),
                ..Default::default()
            })
            .await
        ),
        [2, 3]
    );
    // Filters combine with AND.
    assert_eq!(
        seqs(
            &query(AuditQuery {
                patient: Some(alice),
                actor: Some("actor-2".into()),
                ..Default::default()
            })
            .await
        ),
        [3]
    );
    // Sorting by any field, either way; NULLs (the system entry's actor) come last, ties in
    // log order.
    assert_eq!(
        seqs(
            &query(AuditQuery {
                sort: AuditSortField::At,
                descending: true,
                ..Default::default()
            })
            .await
        ),
        [7, 6, 5, 4, 3, 2, 1]
    );
    assert_eq!(
        seqs(
            &query(AuditQuery {
                sort: AuditSortField::Actor,
                ..Default::default()
            })
            .await
        ),
        [1, 4, 2, 5, 3, 6, 7]
    );
    assert_eq!(
        seqs(
            &query(AuditQuery {
                sort: AuditSortField::Actor,
                descending: true,
                ..Default::default()
            })
            .await
        ),
        [6, 3, 5, 2, 4, 1, 7]
    );
    for field in AuditSortField::ALL {
        let rows = query(AuditQuery {
            sort: field,
            ..Default::default()
        })
        .await;
        assert_eq!(rows.len(), 7, "sorting by {}", field.name());
    }
    // Paging: offset and limit walk the same order without gaps or repeats.
    let mut paged = Vec::new();
    for page in 0..4 {
        let rows = store
            .query_audit(&AuditQuery {
                sort: AuditSortField::Actor,
                offset: page * 2,
                limit: 2,
                ..Default::default()
            })
            .await
            .unwrap();
        paged.extend(seqs(&rows));
    }
    assert_eq!(paged, [1, 4, 2, 5, 3, 6, 7]);
    // Keyset paging newest first: entries before a seq, with the other filters.
    assert_eq!(
        seqs(
            &query(AuditQuery {
                before_seq: Some(5),
                descending: true,
                ..Default::default()
            })
            .await
        ),
        [4, 3, 2, 1]
    );
    assert_eq!(
        seqs(
            &query(AuditQuery {
                before_seq: Some(6),
                patient: Some(alice),
                descending: true,
                ..Default::default()
            })
            .await
        ),
        [5, 3, 1]
    );
}

async fn audit_leaves_hash_exactly_the_stored_entries(engine: &Engine) {
    let store = engine.store();
    let mut events = vec![
        read_event(T0_MS, PatientId::generate()),
        system_event(T0_MS + 1, AuditAction::KeyRotation, Outcome::Allowed),
    ];
    // Text that is not ASCII, and a field that is empty rather than absent.
    let mut odd = read_event(T0_MS + 2, PatientId::generate());
    odd.origin.user_agent = Some("Ünïcødé ✓".to_owned());
    odd.resource_id = Some(String::new());
    events.push(odd);
    store.append_audit(events).await.unwrap();
    let entries = store.audit_events(0, 100).await.unwrap();
    let leaves = store.audit_leaves(0, 100).await.unwrap();
    assert_eq!(leaves.len(), entries.len());
    for (leaf, entry) in leaves.iter().zip(&entries) {
        assert_eq!(leaf.seq, entry.seq);
        assert_eq!(leaf.hash, entry.event.leaf_hash(entry.seq as u64));
    }
    assert_eq!(
        store.audit_leaves(2, 100).await.unwrap(),
        leaves[2..].to_vec()
    );
}

// ------------------------------------------------------------------------------------------
// SIEM export cursors
// ------------------------------------------------------------------------------------------

/// The export's promise rests on this: once a page is recorded as delivered, no late or
/// repeated update moves the cursor back, and nothing but an update moves it forward.
async fn siem_cursors_start_absent_and_only_move_forward(engine: &Engine) {
    let store = engine.store();
    assert_eq!(store.siem_cursor("collector-a").await.unwrap(), None);

    store
        .set_siem_cursor("collector-a", 5, T0_MS)
        .await
        .unwrap();
    assert_eq!(store.siem_cursor("collector-a").await.unwrap(), Some(5));

    // Backwards and sideways are ignored, not errors: a slower writer may report late.
    store
        .set_siem_cursor("collector-a", 3, T0_MS + 1)
        .await
        .unwrap();
    store
        .set_siem_cursor("collector-a", 5, T0_MS + 2)
        .await
        .unwrap();
    store
        .set_siem_cursor("collector-a", 0, T0_MS + 3)
        .await
        .unwrap();
    assert_eq!(store.siem_cursor("collector-a").await.unwrap(), Some(5));

    store
        .set_siem_cursor("collector-a", 1_000_000, T0_MS + 4)
        .await
        .unwrap();
    assert_eq!(
        store.siem_cursor("collector-a").await.unwrap(),
        Some(1_000_000)
    );

    // A negative position is never a seq: refused, for a new cursor and an existing one.
    for name in ["collector-a", "collector-new"] {
        let error = store.set_siem_cursor(name, -1, T0_MS).await.unwrap_err();
        assert!(matches!(error, StoreError::Invalid(_)), "{error:?}");
    }
    assert_eq!(
        store.siem_cursor("collector-a").await.unwrap(),
        Some(1_000_000)
    );
    assert_eq!(store.siem_cursor("collector-new").await.unwrap(), None);

    // Starting at zero is a real position (nothing sent yet, but the collector is known).
    store
        .set_siem_cursor("collector-zero", 0, T0_MS)
        .await
        .unwrap();
    assert_eq!(store.siem_cursor("collector-zero").await.unwrap(), Some(0));
}

async fn siem_cursors_are_kept_per_collector_and_survive_a_restart(engine: &Engine) {
    let store = engine.store();
    store
        .set_siem_cursor("siem.example.org:6514", 42, T0_MS)
        .await
        .unwrap();
    store
        .set_siem_cursor("backup-siem.example.org:6514", 7, T0_MS)
        .await
        .unwrap();
    // Names are compared exactly: no case folding, no trimming.
    assert_eq!(
        store.siem_cursor("SIEM.example.org:6514").await.unwrap(),
        None
    );
    assert_eq!(
        store.siem_cursor("siem.example.org:6514 ").await.unwrap(),
        None
    );
    drop(store);

    engine.restart().await;
    let store = engine.store();
    assert_eq!(
        store.siem_cursor("siem.example.org:6514").await.unwrap(),
        Some(42)
    );
    assert_eq!(
        store
            .siem_cursor("backup-siem.example.org:6514")
            .await
            .unwrap(),
        Some(7)
    );
    store
        .set_siem_cursor("backup-siem.example.org:6514", 8, T0_MS + 1)
        .await
        .unwrap();
    assert_eq!(
        store.siem_cursor("siem.example.org:6514").await.unwrap(),
        Some(42),
        "moving one collector's cursor leaves the others alone"
    );
}

// ------------------------------------------------------------------------------------------
// Identity
// ------------------------------------------------------------------------------------------

fn organisation() -> haven_store::StoredOrganisation {
    haven_store::StoredOrganisation {
        id: haven_domain::OrganisationId::generate(),
        name: "North Clinic".to_owned(),
        idle_timeout_secs: 900,
        absolute_timeout_secs: 43_200,
        patient_mfa_required: false,
        break_glass_secs: 3600,
        results_after_review: true,
        message_retention_days: 365,
        created_at_ms: T0_MS,
    }
}

fn new_user(
    organisation: haven_domain::OrganisationId,
    role: &str,
    patient: Option<PatientId>,
) -> haven_store::NewUser {
    let id = haven_domain::UserId::generate();
    let subject_key = StoredSubjectKey {
        subject: PatientId::from_uuid(id.as_uuid()),
        key_id: random_bytes(16),
        root_key_id: ROOT_OLD.to_vec(),
        wrapped: random_bytes(72),
    };
    haven_store::NewUser {
        user: haven_store::StoredUser {
            id,
            organisation,
            login_index: random_bytes(32),
            login_sealed: random_bytes(60),
            role: role.to_owned(),
            patient,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
            password_changed_at_ms: T0_MS,
            totp_sealed: None,
            totp_enabled: false,
            totp_last_step: 0,
            failed_logins: 0,
            locked_until_ms: 0,
            created_at_ms: T0_MS,
            disabled_at_ms: None,
            subject_key: Some(subject_key.clone()),
        },
        subject_key,
    }
}

async fn users_are_found_by_login_and_keep_their_sign_in_state(engine: &Engine) {
    let store = engine.store();
    let org = organisation();
    store.insert_organisation(org.clone()).await.unwrap();
    assert_eq!(store.organisation(org.id).await.unwrap(), Some(org.clone()));
    assert_eq!(store.organisations().await.unwrap(), vec![org.clone()]);
    let stricter = haven_store::StoredOrganisation {
        idle_timeout_secs: 300,
        patient_mfa_required: true,
        ..org.clone()
    };
    assert!(store.update_organisation(stricter.clone()).await.unwrap());
    assert_eq!(store.organisation(org.id).await.unwrap(), Some(stricter));
    assert!(
        !store.update_organisation(organisation()).await.unwrap(),
        "no such organisation"
    );

    let patient = PatientId::generate();
    let new = new_user(org.id, "patient", Some(patient));
    store.insert_user(new.clone()).await.unwrap();
    let stored = store.user(new.user.id).await.unwrap().unwrap();
    assert_eq!(stored, new.user);
    assert_eq!(
        store.user_by_login(&new.user.login_index).await.unwrap(),
        Some(new.user.clone())
    );
    assert_eq!(store.user_by_login(&random_bytes(32)).await.unwrap(), None);

    // A login names one user.
    let mut clash = new_user(org.id, "clinician", None);
    clash.user.login_index = new.user.login_index.clone();
    assert!(matches!(
        store.insert_user(clash.clone()).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(store.user(clash.user.id).await.unwrap(), None);

    assert_eq!(
        store.organisation_users(org.id).await.unwrap(),
        vec![new.user.clone()]
    );
    assert!(
        store
            .organisation_users(haven_domain::OrganisationId::generate())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .set_user_disabled(new.user.id, Some(T0_MS + 9))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .user(new.user.id)
            .await
            .unwrap()
            .unwrap()
            .disabled_at_ms,
        Some(T0_MS + 9)
    );
    assert!(store.set_user_disabled(new.user.id, None).await.unwrap());
    assert!(
        !store
            .set_user_disabled(haven_domain::UserId::generate(), None)
            .await
            .unwrap()
    );

    // Failed sign-ins count up; the lock only ever extends; a new password clears both.
    let id = new.user.id;
    store.record_login_failure(id, 0).await.unwrap();
    store
        .record_login_failure(id, T0_MS + 60_000)
        .await
        .unwrap();
    store.record_login_failure(id, T0_MS + 1_000).await.unwrap();
    let locked = store.user(id).await.unwrap().unwrap();
    assert_eq!(
        (locked.failed_logins, locked.locked_until_ms),
        (3, T0_MS + 60_000)
    );
    store.reset_login_failures(id).await.unwrap();
    let reset = store.user(id).await.unwrap().unwrap();
    assert_eq!((reset.failed_logins, reset.locked_until_ms), (0, 0));
    store
        .record_login_failure(id, T0_MS + 60_000)
        .await
        .unwrap();
    store
        .set_password(id, "$argon2id$new", T0_MS + 5)
        .await
        .unwrap();
    let changed = store.user(id).await.unwrap().unwrap();
    assert_eq!(changed.password_hash, "$argon2id$new");
    assert_eq!(changed.password_changed_at_ms, T0_MS + 5);
    assert_eq!((changed.failed_logins, changed.locked_until_ms), (0, 0));

    // Guesses are claimed before they are checked; the fifth claim locks, and a locked
    // account grants no more claims until the lock ends.
    let lock = haven_store::GuessLock {
        after_failures: 5,
        first_ms: 60_000,
        max_ms: 3_600_000,
    };
    for n in 1..=5 {
        assert!(
            store.claim_guess(id, T0_MS, lock).await.unwrap(),
            "claim {n}"
        );
    }
    let locked = store.user(id).await.unwrap().unwrap();
    assert_eq!(
        (locked.failed_logins, locked.locked_until_ms),
        (5, T0_MS + 60_000)
    );
    assert!(!store.claim_guess(id, T0_MS + 59_999, lock).await.unwrap());
    assert!(store.claim_guess(id, T0_MS + 60_000, lock).await.unwrap());
    let doubled = store.user(id).await.unwrap().unwrap();
    assert_eq!(
        (doubled.failed_logins, doubled.locked_until_ms),
        (6, T0_MS + 60_000 + 120_000)
    );
    store.reset_login_failures(id).await.unwrap();

    // TOTP: a secret pending, then enabled; each time step is accepted once, never an
    // older one.
    let secret = random_bytes(40);
    assert!(store.start_totp_setup(id, secret.clone()).await.unwrap());
    let pending = store.user(id).await.unwrap().unwrap();
    assert_eq!(
        (pending.totp_sealed.clone(), pending.totp_enabled),
        (Some(secret.clone()), false)
    );
    store
        .set_totp(id, Some(secret.clone()), true)
        .await
        .unwrap();
    assert!(store.user(id).await.unwrap().unwrap().totp_enabled);
    // An enabled factor is never overwritten by a new set-up.
    assert!(!store.start_totp_setup(id, random_bytes(40)).await.unwrap());
    assert_eq!(
        store.user(id).await.unwrap().unwrap().totp_sealed,
        Some(secret.clone())
    );
    assert!(store.advance_totp_step(id, 100).await.unwrap());
    assert!(
        !store.advance_totp_step(id, 100).await.unwrap(),
        "a replayed step"
    );
    assert!(
        !store.advance_totp_step(id, 99).await.unwrap(),
        "an older step"
    );
    assert!(store.advance_totp_step(id, 101).await.unwrap());
    store.set_totp(id, None, false).await.unwrap();
    let removed = store.user(id).await.unwrap().unwrap();
    assert_eq!((removed.totp_sealed, removed.totp_enabled), (None, false));
}

fn session(user: haven_domain::UserId, created_at_ms: i64) -> haven_store::StoredSession {
    haven_store::StoredSession {
        id: haven_domain::SessionId::generate(),
        token_hash: random_bytes(32),
        user,
        created_at_ms,
        last_seen_ms: created_at_ms,
        idle_timeout_ms: 900_000,
        expires_at_ms: created_at_ms + 43_200_000,
        authenticated_at_ms: created_at_ms,
        mfa: true,
        source_ip: Some("203.0.113.9".to_owned()),
        user_agent: Some("Firefox".to_owned()),
        revoked_at_ms: None,
        revoked_reason: None,
    }
}

async fn sessions_end_one_by_one_or_all_together(engine: &Engine) {
    let store = engine.store();
    let org = organisation();
    store.insert_organisation(org.clone()).await.unwrap();
    let alice = new_user(org.id, "clinician", None);
    let bob = new_user(org.id, "nurse", None);
    for user in [&alice, &bob] {
        store.insert_user(user.clone()).await.unwrap();
    }
    let first = session(alice.user.id, T0_MS);
    let second = session(alice.user.id, T0_MS + 10);
    let third = session(alice.user.id, T0_MS + 20);
    let bobs = session(bob.user.id, T0_MS);
    for s in [&first, &second, &third, &bobs] {
        store.insert_session(s.clone()).await.unwrap();
    }
    // The session comes with its user (and the user's key) and their organisation.
    let found = store
        .session_by_hash(&first.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.session, first);
    assert_eq!(found.user, store.user(alice.user.id).await.unwrap());
    assert_eq!(found.user.as_ref().map(|u| u.id), Some(alice.user.id));
    assert!(found.user.as_ref().unwrap().subject_key.is_some());
    assert_eq!(found.organisation, Some(org.clone()));
    let bobs_found = store
        .session_by_hash(&bobs.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bobs_found.session, bobs);
    assert_eq!(bobs_found.user.map(|u| u.role), Some("nurse".to_owned()));
    assert_eq!(
        store.session_by_hash(&random_bytes(32)).await.unwrap(),
        None
    );

    // Activity only moves forward; a step-up records a fresh proof.
    store.touch_session(first.id, T0_MS + 500).await.unwrap();
    store.touch_session(first.id, T0_MS + 100).await.unwrap();
    store
        .reauthenticate_session(first.id, T0_MS + 700, true)
        .await
        .unwrap();
    let touched = store
        .session_by_hash(&first.token_hash)
        .await
        .unwrap()
        .unwrap()
        .session;
    assert_eq!(
        (touched.last_seen_ms, touched.authenticated_at_ms),
        (T0_MS + 700, T0_MS + 700)
    );

    // Newest first, open ones only.
    let listed = |sessions: Vec<haven_store::StoredSession>| -> Vec<haven_domain::SessionId> {
        sessions.into_iter().map(|s| s.id).collect()
    };
    assert_eq!(
        listed(store.user_sessions(alice.user.id, T0_MS).await.unwrap()),
        [third.id, second.id, first.id]
    );
    assert!(
        store
            .revoke_session(second.id, T0_MS + 1, "logout")
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_session(second.id, T0_MS + 2, "logout")
            .await
            .unwrap()
    );
    let revoked = store
        .session_by_hash(&second.token_hash)
        .await
        .unwrap()
        .unwrap()
        .session;
    assert_eq!(revoked.revoked_at_ms, Some(T0_MS + 1));
    assert_eq!(revoked.revoked_reason.as_deref(), Some("logout"));
    assert_eq!(
        listed(store.user_sessions(alice.user.id, T0_MS).await.unwrap()),
        [third.id, first.id]
    );
    // Past the absolute time-out a session is no longer listed.
    assert_eq!(
        listed(
            store
                .user_sessions(alice.user.id, first.expires_at_ms + 15)
                .await
                .unwrap()
        ),
        [third.id]
    );

    // Everywhere but here: another user's sessions are untouched.
    assert_eq!(
        store
            .revoke_user_sessions(alice.user.id, Some(third.id), T0_MS + 3, "password_changed")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        listed(store.user_sessions(alice.user.id, T0_MS).await.unwrap()),
        [third.id]
    );
    assert_eq!(
        store
            .revoke_user_sessions(alice.user.id, None, T0_MS + 4, "logout_everywhere")
            .await
            .unwrap(),
        1
    );
    assert!(
        store
            .user_sessions(alice.user.id, T0_MS)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        listed(store.user_sessions(bob.user.id, T0_MS).await.unwrap()),
        [bobs.id]
    );
}

async fn an_invitation_is_redeemed_once(engine: &Engine) {
    let store = engine.store();
    let org = organisation();
    store.insert_organisation(org.clone()).await.unwrap();
    let invitation = haven_store::StoredInvitation {
        id: haven_domain::InvitationId::generate(),
        token_hash: random_bytes(32),
        organisation: org.id,
        role: "nurse".to_owned(),
        patient: None,
        created_by: "system:cli".to_owned(),
        created_at_ms: T0_MS,
        expires_at_ms: T0_MS + 3_600_000,
        used_at_ms: None,
        used_by: None,
    };
    store.insert_invitation(invitation.clone()).await.unwrap();
    assert_eq!(
        store
            .invitation_by_hash(&invitation.token_hash)
            .await
            .unwrap(),
        Some(invitation.clone())
    );

    // A login already taken: nothing is created and the invitation stays unused.
    let existing = new_user(org.id, "clinician", None);
    store.insert_user(existing.clone()).await.unwrap();
    let mut taken = new_user(org.id, "nurse", None);
    taken.user.login_index = existing.user.login_index.clone();
    assert_eq!(
        store
            .redeem_invitation(invitation.id, T0_MS + 1, taken.clone())
            .await
            .unwrap(),
        haven_store::Redeemed::LoginTaken
    );
    assert_eq!(store.user(taken.user.id).await.unwrap(), None);
    assert_eq!(
        store
            .invitation_by_hash(&invitation.token_hash)
            .await
            .unwrap()
            .unwrap()
            .used_at_ms,
        None
    );

    let nurse = new_user(org.id, "nurse", None);
    assert_eq!(
        store
            .redeem_invitation(invitation.id, T0_MS + 2, nurse.clone())
            .await
            .unwrap(),
        haven_store::Redeemed::Created
    );
    assert!(store.user(nurse.user.id).await.unwrap().is_some());
    let used = store
        .invitation_by_hash(&invitation.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (used.used_at_ms, used.used_by),
        (Some(T0_MS + 2), Some(nurse.user.id))
    );

    // Spent: a second redemption creates nobody.
    let again = new_user(org.id, "nurse", None);
    assert_eq!(
        store
            .redeem_invitation(invitation.id, T0_MS + 3, again.clone())
            .await
            .unwrap(),
        haven_store::Redeemed::Spent
    );
    assert_eq!(store.user(again.user.id).await.unwrap(), None);

    // Expired: the same.
    let late = haven_store::StoredInvitation {
        id: haven_domain::InvitationId::generate(),
        token_hash: random_bytes(32),
        ..invitation.clone()
    };
    store.insert_invitation(late.clone()).await.unwrap();
    let too_late = new_user(org.id, "nurse", None);
    assert_eq!(
        store
            .redeem_invitation(late.id, late.expires_at_ms, too_late.clone())
            .await
            .unwrap(),
        haven_store::Redeemed::Spent
    );
    assert_eq!(store.user(too_late.user.id).await.unwrap(), None);
}

async fn recovery_codes_work_once_each(engine: &Engine) {
    let store = engine.store();
    let org = organisation();
    store.insert_organisation(org.clone()).await.unwrap();
    let user = new_user(org.id, "clinician", None);
    store.insert_user(user.clone()).await.unwrap();
    let id = user.user.id;
    let codes: Vec<Vec<u8>> = (0..10).map(|_| random_bytes(32)).collect();
    store
        .replace_recovery_codes(id, codes.clone())
        .await
        .unwrap();
    assert_eq!(store.recovery_codes_left(id).await.unwrap(), 10);
    assert!(store.use_recovery_code(id, &codes[3], T0_MS).await.unwrap());
    assert!(
        !store.use_recovery_code(id, &codes[3], T0_MS).await.unwrap(),
        "used once"
    );
    assert!(
        !store
            .use_recovery_code(id, &random_bytes(32), T0_MS)
            .await
            .unwrap()
    );
    assert_eq!(store.recovery_codes_left(id).await.unwrap(), 9);
    // New codes replace the old ones entirely.
    let fresh: Vec<Vec<u8>> = (0..10).map(|_| random_bytes(32)).collect();
    store
        .replace_recovery_codes(id, fresh.clone())
        .await
        .unwrap();
    assert!(!store.use_recovery_code(id, &codes[4], T0_MS).await.unwrap());
    assert_eq!(store.recovery_codes_left(id).await.unwrap(), 10);
    let too_many: Vec<Vec<u8>> = (0..=limits::RECOVERY_CODES_MAX)
        .map(|_| random_bytes(32))
        .collect();
    assert!(matches!(
        store.replace_recovery_codes(id, too_many).await,
        Err(StoreError::LimitExceeded { .. })
    ));
    assert_eq!(store.recovery_codes_left(id).await.unwrap(), 10);
}

async fn passkeys_and_challenges_are_kept_and_used_once(engine: &Engine) {
    let store = engine.store();
    let org = organisation();
    store.insert_organisation(org.clone()).await.unwrap();
    let user = new_user(org.id, "clinician", None);
    store.insert_user(user.clone()).await.unwrap();
    let passkey = haven_store::StoredPasskey {
        credential_id: random_bytes(32),
        user: user.user.id,
        public_key_cose: random_bytes(77),
        sign_count: 0,
        backup_eligible: true,
        name: "laptop".to_owned(),
        created_at_ms: T0_MS,
        last_used_ms: None,
    };
    store.insert_passkey(passkey.clone()).await.unwrap();
    assert!(matches!(
        store.insert_passkey(passkey.clone()).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(
        store.passkey(&passkey.credential_id).await.unwrap(),
        Some(passkey.clone())
    );
    assert_eq!(
        store.user_passkeys(user.user.id).await.unwrap(),
        vec![passkey.clone()]
    );
    // The counter moves only from the value the caller saw.
    assert!(
        store
            .record_passkey_use(&passkey.credential_id, 0, 5, T0_MS + 1)
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_passkey_use(&passkey.credential_id, 0, 6, T0_MS + 2)
            .await
            .unwrap()
    );
    let used = store
        .passkey(&passkey.credential_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((used.sign_count, used.last_used_ms), (5, Some(T0_MS + 1)));

    // Only its owner removes a passkey.
    assert!(
        !store
            .delete_passkey(haven_domain::UserId::generate(), &passkey.credential_id)
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_passkey(user.user.id, &passkey.credential_id)
            .await
            .unwrap()
    );
    assert_eq!(store.passkey(&passkey.credential_id).await.unwrap(), None);
    assert!(
        !store
            .delete_passkey(user.user.id, &passkey.credential_id)
            .await
            .unwrap()
    );

    let challenge = haven_store::StoredChallenge {
        id: uuid::Uuid::now_v7(),
        challenge: random_bytes(32),
        user: Some(user.user.id),
        purpose: "register".to_owned(),
        expires_at_ms: T0_MS + 300_000,
    };
    store.insert_challenge(challenge.clone()).await.unwrap();
    assert_eq!(
        store.take_challenge(challenge.id, T0_MS).await.unwrap(),
        Some(challenge.clone())
    );
    assert_eq!(
        store.take_challenge(challenge.id, T0_MS).await.unwrap(),
        None,
        "once"
    );
    let late = haven_store::StoredChallenge {
        id: uuid::Uuid::now_v7(),
        ..challenge.clone()
    };
    store.insert_challenge(late.clone()).await.unwrap();
    assert_eq!(
        store
            .take_challenge(late.id, late.expires_at_ms)
            .await
            .unwrap(),
        None
    );
}

// ------------------------------------------------------------------------------------------
// Care relationships, break-the-glass and notifications
// ------------------------------------------------------------------------------------------

async fn insert_patient_row(store: &dyn Store) -> PatientId {
    let new = new_patient(ROOT_OLD, Vec::new());
    let id = new.id;
    store.insert_patient(new).await.unwrap();
    id
}

fn grant_row(
    organisation: haven_domain::OrganisationId,
    user: haven_domain::UserId,
    patient: PatientId,
    created_at_ms: i64,
    expires_at_ms: i64,
) -> haven_store::care::StoredBreakGlass {
    haven_store::care::StoredBreakGlass {
        id: haven_domain::BreakGlassId::generate(),
        organisation,
        user,
        patient,
        reason_sealed: random_bytes(80),
        created_at_ms,
        expires_at_ms,
        review_state: haven_store::care::ReviewState::Pending,
        reviewed_by: None,
        reviewed_at_ms: None,
        review_note_sealed: None,
    }
}

async fn care_teams_and_break_glass_grants_make_relations_that_expire(engine: &Engine) {
    use haven_store::care::{CareTeamMember, Relations};
    let store = engine.store();
    let org = organisation();
    store.insert_organisation(org.clone()).await.unwrap();
    let nurse = new_user(org.id, "nurse", None);
    store.insert_user(nurse.clone()).await.unwrap();
    let nurse = nurse.user.id;
    let (ours, stranger, unrelated) = (
        insert_patient_row(&*store).await,
        insert_patient_row(&*store).await,
        insert_patient_row(&*store).await,
    );
    let member = CareTeamMember {
        patient: ours,
        user: nurse,
        added_by: "front-desk".to_owned(),
        added_at_ms: T0_MS,
    };
    assert!(store.add_care_team_member(member.clone()).await.unwrap());
    assert!(
        !store.add_care_team_member(member.clone()).await.unwrap(),
        "a member is added once"
    );
    assert_eq!(store.care_team(ours).await.unwrap(), vec![member.clone()]);
    assert!(store.care_team(stranger).await.unwrap().is_empty());
    // "My patients": a listing by care team finds exactly the patients the user cares for,
    // and another user's care finds none of them.
    let cared_for = |user| PatientQuery {
        cared_for_by: Some(user),
        limit: 10,
        ..PatientQuery::default()
    };
    assert_eq!(
        ids_of(&store.list_patients(&cared_for(nurse)).await.unwrap()),
        vec![ours]
    );
    assert!(
        store
            .list_patients(&cared_for(UserId::generate()))
            .await
            .unwrap()
            .is_empty()
    );

    let grant = grant_row(org.id, nurse, stranger, T0_MS, T0_MS + 3_600_000);
    store.insert_break_glass(grant.clone()).await.unwrap();
    assert_eq!(
        store.break_glass(grant.id).await.unwrap(),
        Some(grant.clone())
    );

    // The patients the nurse is related to: the care team's, and the broken glass while it
    // lasts.
    let mut related = store.related_patients(nurse, T0_MS + 1, 10).await.unwrap();
    related.sort();
    let mut expected = vec![ours, stranger];
    expected.sort();
    assert_eq!(related, expected);
    assert_eq!(
        store
            .related_patients(nurse, T0_MS + 3_600_000, 10)
            .await
            .unwrap(),
        vec![ours]
    );
    assert_eq!(
        store
            .related_patients(nurse, T0_MS + 1, 1)
            .await
            .unwrap()
            .len(),
        1
    );

    let mut found = store
        .relations(nurse, &[ours, stranger, unrelated], T0_MS + 1)
        .await
        .unwrap();
    found.sort_by_key(|r| r.patient != ours);
    assert_eq!(
        found,
        vec![
            Relations {
                patient: ours,
                care_team: true,
                break_glass: false,
                proxy_scopes: None,
            },
            Relations {
                patient: stranger,
                care_team: false,
                break_glass: true,
                proxy_scopes: None,
            },
        ]
    );
    // At the moment the grant expires it is over; the care team stays.
    assert_eq!(
        store
            .relations(nurse, &[ours, stranger], T0_MS + 3_600_000)
            .await
            .unwrap(),
        vec![Relations {
            patient: ours,
            care_team: true,
            break_glass: false,
            proxy_scopes: None,
        }]
    );
    // One patient at a time, as every read asks, gives what the list gives.
    for at in [T0_MS + 1, T0_MS + 3_600_000] {
        let listed = store
            .relations(nurse, &[ours, stranger, unrelated], at)
            .await
            .unwrap();
        for patient in [ours, stranger, unrelated] {
            let alone = store.relations(nurse, &[patient], at).await.unwrap();
            let expected: Vec<Relations> = listed
                .iter()
                .filter(|r| r.patient == patient)
                .cloned()
                .collect();
            assert_eq!(alone, expected, "{patient} at {at}");
        }
    }
    // Someone else has no relation through the nurse's.
    let other = haven_domain::UserId::generate();
    assert!(
        store
            .relations(other, &[ours, stranger], T0_MS)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.relations(nurse, &[], T0_MS).await.unwrap().is_empty());
    let too_many: Vec<PatientId> = (0..=limits::RELATIONS_LOOKUP_MAX)
        .map(|_| PatientId::generate())
        .collect();
    assert!(matches!(
        store.relations(nurse, &too_many, T0_MS).await,
        Err(StoreError::Invalid(_))
    ));

    assert!(store.remove_care_team_member(ours, nurse).await.unwrap());
    assert!(!store.remove_care_team_member(ours, nurse).await.unwrap());
    assert!(
        store
            .relations(nurse, &[ours], T0_MS)
            .await
            .unwrap()
            .is_empty()
    );

    // A team has a bound: the member past it is not added.
    for index in 0..limits::CARE_TEAM_MEMBERS_MAX {
        let user = new_user(org.id, "clinician", None);
        store.insert_user(user.clone()).await.unwrap();
        assert!(
            store
                .add_care_team_member(CareTeamMember {
                    patient: unrelated,
                    user: user.user.id,
                    added_by: "front-desk".to_owned(),
                    added_at_ms: T0_MS + i64::from(index),
                })
                .await
                .unwrap()
        );
    }
    assert!(
        !store
            .add_care_team_member(CareTeamMember {
                patient: unrelated,
                ..member
            })
            .await
            .unwrap()
    );
    assert_eq!(
        store.care_team(unrelated).await.unwrap().len(),
        limits::CARE_TEAM_MEMBERS_MAX as usize
    );
}

async fn break_glass_reviews_happen_once_and_page_newest_first(engine: &Engine) {
    use haven_store::care::{BreakGlassQuery, BreakGlassReview, ReviewState};
    let store = engine.store();
    let org = organisation();
    let elsewhere = organisation();
    store.insert_organisation(org.clone()).await.unwrap();
    store.insert_organisation(elsewhere.clone()).await.unwrap();
    let clinician = new_user(org.id, "clinician", None);
    let officer = new_user(org.id, "privacy_officer", None);
    let outsider = new_user(elsewhere.id, "clinician", None);
    for user in [&clinician, &officer, &outsider] {
        store.insert_user(user.clone()).await.unwrap();
    }
    let patient = insert_patient_row(&*store).await;
    let mut ours = Vec::new();
    for index in 0..5 {
        let grant = grant_row(
            org.id,
            clinician.user.id,
            patient,
            T0_MS + index,
            T0_MS + 10_000,
        );
        store.insert_break_glass(grant.clone()).await.unwrap();
        ours.push(grant);
    }
    store
        .insert_break_glass(grant_row(
            elsewhere.id,
            outsider.user.id,
            patient,
            T0_MS,
            T0_MS + 1,
        ))
        .await
        .unwrap();

    let query = |pending_only, before, limit| BreakGlassQuery {
        organisation: org.id,
        pending_only,
        before,
        limit,
    };
    let first = store
        .break_glass_grants(&query(true, None, 2))
        .await
        .unwrap();
    assert_eq!(
        first,
        vec![ours[4].clone(), ours[3].clone()],
        "newest first"
    );
    let last = first.last().unwrap();
    let second = store
        .break_glass_grants(&query(true, Some((last.created_at_ms, last.id)), 10))
        .await
        .unwrap();
    assert_eq!(
        second,
        vec![ours[2].clone(), ours[1].clone(), ours[0].clone()]
    );

    let review = BreakGlassReview {
        id: ours[3].id,
        reviewer: officer.user.id,
        state: ReviewState::Unjustified,
        note_sealed: Some(random_bytes(40)),
        now_ms: T0_MS + 500,
    };
    assert!(store.review_break_glass(review.clone()).await.unwrap());
    assert!(
        !store
            .review_break_glass(BreakGlassReview {
                state: ReviewState::Justified,
                ..review.clone()
            })
            .await
            .unwrap(),
        "a review is final"
    );
    let reviewed = store.break_glass(ours[3].id).await.unwrap().unwrap();
    assert_eq!(reviewed.review_state, ReviewState::Unjustified);
    assert_eq!(reviewed.reviewed_by, Some(officer.user.id));
    assert_eq!(reviewed.reviewed_at_ms, Some(T0_MS + 500));
    assert_eq!(reviewed.review_note_sealed, review.note_sealed);

    let pending = store
        .break_glass_grants(&query(true, None, 100))
        .await
        .unwrap();
    assert_eq!(pending.len(), 4);
    assert!(
        pending
            .iter()
            .all(|g| g.review_state == ReviewState::Pending)
    );
    let all = store
        .break_glass_grants(&query(false, None, 100))
        .await
        .unwrap();
    assert_eq!(all.len(), 5, "only this organisation's");
    let capped = store
        .break_glass_grants(&query(false, None, 100_000))
        .await
        .unwrap();
    assert!(capped.len() <= limits::PAGE_ROWS_MAX as usize);
}

async fn notifications_are_per_user_and_resolved_together(engine: &Engine) {
    use haven_store::care::StoredNotification;
    let store = engine.store();
    let org = organisation();
    store.insert_organisation(org.clone()).await.unwrap();
    let (first, second) = (
        new_user(org.id, "privacy_officer", None),
        new_user(org.id, "privacy_officer", None),
    );
    store.insert_user(first.clone()).await.unwrap();
    store.insert_user(second.clone()).await.unwrap();
    let subject = Uuid::now_v7();
    let notice =
        |user: haven_domain::UserId, at_ms: i64, subject: Option<Uuid>| StoredNotification {
            id: haven_domain::NotificationId::generate(),
            user,
            kind: "break_glass_review".to_owned(),
            subject,
            created_at_ms: at_ms,
            read_at_ms: None,
        };
    let older = notice(first.user.id, T0_MS, None);
    let about = notice(first.user.id, T0_MS + 1, Some(subject));
    let theirs = notice(second.user.id, T0_MS + 1, Some(subject));
    store
        .insert_notifications(vec![older.clone(), about.clone(), theirs.clone()])
        .await
        .unwrap();
    assert_eq!(
        store.notifications(first.user.id).await.unwrap(),
        vec![about.clone(), older.clone()],
        "each user's own, newest first"
    );
    assert!(
        !store
            .mark_notification_read(first.user.id, theirs.id, T0_MS + 2)
            .await
            .unwrap(),
        "not someone else's"
    );
    assert!(
        store
            .mark_notification_read(first.user.id, older.id, T0_MS + 2)
            .await
            .unwrap()
    );
    assert!(
        !store
            .mark_notification_read(first.user.id, older.id, T0_MS + 3)
            .await
            .unwrap()
    );
    store
        .resolve_notifications(subject, T0_MS + 4)
        .await
        .unwrap();
    for user in [first.user.id, second.user.id] {
        assert!(
            store
                .notifications(user)
                .await
                .unwrap()
                .iter()
                .all(|n| n.read_at_ms.is_some()),
            "every notice about a dealt-with matter is read"
        );
    }
}

async fn delegations_are_accepted_once_and_end_when_revoked_or_expired(engine: &Engine) {
    use haven_store::care::{Relations, StoredDelegation};
    let store = engine.store();
    let org = organisation();
    store.insert_organisation(org.clone()).await.unwrap();
    let child = insert_patient_row(&*store).await;
    let parent = new_user(org.id, "patient", None);
    let stranger = new_user(org.id, "patient", None);
    store.insert_user(parent.clone()).await.unwrap();
    store.insert_user(stranger.clone()).await.unwrap();
    let parent = parent.user.id;
    let offer = |created_at_ms: i64| StoredDelegation {
        id: haven_domain::DelegationId::generate(),
        patient: child,
        proxy: None,
        offer_hash: random_bytes(32),
        relationship: "parent".to_owned(),
        scopes: "record,access_log".to_owned(),
        created_by: "front-desk".to_owned(),
        created_at_ms,
        offer_expires_at_ms: created_at_ms + 1_000,
        expires_at_ms: created_at_ms + 100_000,
        accepted_at_ms: None,
        revoked_at_ms: None,
    };
    let first = offer(T0_MS);
    store.insert_delegation(first.clone()).await.unwrap();
    assert_eq!(
        store.delegation_by_offer(&first.offer_hash).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store.delegation_by_offer(&random_bytes(32)).await.unwrap(),
        None
    );
    assert!(
        store
            .relations(parent, &[child], T0_MS)
            .await
            .unwrap()
            .is_empty(),
        "an offer grants nothing"
    );

    // Accepted once, and not after the offer expired.
    assert!(
        store
            .accept_delegation(first.id, parent, T0_MS + 10)
            .await
            .unwrap()
    );
    assert!(
        !store
            .accept_delegation(first.id, stranger.user.id, T0_MS + 11)
            .await
            .unwrap()
    );
    let late = offer(T0_MS);
    store.insert_delegation(late.clone()).await.unwrap();
    assert!(
        !store
            .accept_delegation(late.id, stranger.user.id, T0_MS + 1_000)
            .await
            .unwrap()
    );

    assert_eq!(
        store.relations(parent, &[child], T0_MS + 20).await.unwrap(),
        vec![Relations {
            patient: child,
            care_team: false,
            break_glass: false,
            proxy_scopes: Some("record,access_log".to_owned()),
        }]
    );
    let mine = store.proxy_delegations(parent, T0_MS + 20).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].proxy, Some(parent));
    assert_eq!(mine[0].accepted_at_ms, Some(T0_MS + 10));
    assert!(
        store
            .proxy_delegations(stranger.user.id, T0_MS + 20)
            .await
            .unwrap()
            .is_empty()
    );

    // The live one is listed first, before the unaccepted offer that lapsed.
    let listed = store
        .patient_delegations(child, T0_MS + 2_000)
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|d| d.id).collect::<Vec<_>>(),
        [first.id, late.id]
    );

    // It ends when it expires...
    assert!(
        store
            .relations(parent, &[child], T0_MS + 100_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .proxy_delegations(parent, T0_MS + 100_000)
            .await
            .unwrap()
            .is_empty()
    );
    // ...or when revoked, once, and only through its own patient.
    assert!(
        !store
            .revoke_delegation(PatientId::generate(), first.id, T0_MS + 30)
            .await
            .unwrap()
    );
    assert!(
        store
            .revoke_delegation(child, first.id, T0_MS + 30)
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_delegation(child, first.id, T0_MS + 31)
            .await
            .unwrap()
    );
    assert!(
        store
            .relations(parent, &[child], T0_MS + 40)
            .await
            .unwrap()
            .is_empty()
    );
}
