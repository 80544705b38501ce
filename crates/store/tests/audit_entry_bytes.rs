//! Audit logs written before entries kept their stored bytes (SQLite audit-file migration
//! 0002, PostgreSQL migration 0018) get those bytes computed by the migration, in SQL.
//! Each migrated entry must hash to exactly the leaf Haven signed for it and read back as
//! the same entry: otherwise every log upgraded in place would fail verification.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use haven_audit::{AuditAction, AuditEvent, Outcome, RequestOrigin, StoredAuditEvent};
use haven_domain::PatientId;
use haven_store::{PostgresStore, SqliteStore, Store};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

const POSTGRES_URL_VAR: &str = "HAVEN_TEST_POSTGRES_URL";
const POSTGRES_URL_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Entries as the old migrations stored them: every field present in one, most absent in
/// another, non-ASCII text and an empty string in a third.
fn entries() -> Vec<AuditEvent> {
    let full = AuditEvent {
        at_ms: 1_795_000_000_000,
        actor: Some("user-1".into()),
        role: Some("clinician".into()),
        organisation: Some("org-1".into()),
        session: Some("session-1".into()),
        client_app: Some("app-1".into()),
        action: AuditAction::Read,
        patient: Some("00112233-4455-6677-8899-aabbccddeeff".parse().unwrap()),
        resource_type: Some("Observation".into()),
        resource_id: Some("obs-1".into()),
        outcome: Outcome::Allowed,
        reason: "care_team".into(),
        purpose_of_use: Some("TREAT".into()),
        origin: RequestOrigin {
            request_id: Some("req-1".into()),
            source_ip: Some("192.0.2.1".into()),
            user_agent: Some("agent/1".into()),
        },
    };
    let sparse = AuditEvent {
        at_ms: 2000,
        actor: None,
        role: None,
        organisation: None,
        session: None,
        client_app: None,
        action: AuditAction::KeyRotation,
        patient: None,
        resource_type: None,
        resource_id: None,
        outcome: Outcome::Denied,
        reason: "scheduled".into(),
        purpose_of_use: None,
        origin: RequestOrigin::default(),
    };
    let mut unusual = full.clone();
    unusual.at_ms = 3000;
    unusual.patient = Some(PatientId::generate());
    unusual.resource_id = Some(String::new());
    unusual.origin.user_agent = Some("Navigateur/2 (français; ünïcode ✓)".into());
    vec![full, sparse, unusual]
}

/// An INSERT of the columns the old migrations had, with 16 placeholders.
fn insert_statement(placeholder: impl Fn(usize) -> String) -> String {
    let columns = "at_ms, actor, role, organisation, session_id, client_app, action, \
                   patient_id, resource_type, resource_id, outcome, reason, purpose_of_use, \
                   request_id, source_ip, user_agent";
    let values: Vec<String> = (1..=16).map(placeholder).collect();
    format!(
        "INSERT INTO audit_events ({columns}) VALUES ({})",
        values.join(", ")
    )
}

macro_rules! bind_event {
    ($query:expr, $event:expr) => {{
        let event = $event;
        $query
            .bind(event.at_ms)
            .bind(event.actor.clone())
            .bind(event.role.clone())
            .bind(event.organisation.clone())
            .bind(event.session.clone())
            .bind(event.client_app.clone())
            .bind(event.action.as_str())
            .bind(event.patient.map(|p| p.as_uuid()))
            .bind(event.resource_type.clone())
            .bind(event.resource_id.clone())
            .bind(event.outcome.as_str())
            .bind(event.reason.clone())
            .bind(event.purpose_of_use.clone())
            .bind(event.origin.request_id.clone())
            .bind(event.origin.source_ip.clone())
            .bind(event.origin.user_agent.clone())
    }};
}

/// A migrator holding the migrations of `folder` numbered below `before`.
async fn migrations_before(folder: &str, before: i64, scratch: &Path) -> sqlx::migrate::Migrator {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(folder);
    for file in std::fs::read_dir(&source).unwrap() {
        let file = file.unwrap();
        let name = file.file_name().to_string_lossy().into_owned();
        let number: i64 = name.split('_').next().unwrap().parse().unwrap();
        if number < before {
            std::fs::copy(file.path(), scratch.join(&name)).unwrap();
        }
    }
    sqlx::migrate::Migrator::new(scratch).await.unwrap()
}

/// What the store reads back must be the entries, hashing to their leaves, with search
/// keys that match.
async fn assert_migrated(store: &dyn Store, expected: &[AuditEvent]) {
    let events = store.audit_events(0, 100).await.unwrap();
    let wanted: Vec<StoredAuditEvent> = expected
        .iter()
        .zip(1..)
        .map(|(event, seq)| StoredAuditEvent {
            seq,
            event: event.clone(),
        })
        .collect();
    assert_eq!(events, wanted);
    let leaves = store.audit_leaves(0, 100).await.unwrap();
    assert_eq!(leaves.len(), expected.len());
    for (leaf, event) in leaves.iter().zip(expected) {
        let seq = u64::try_from(leaf.seq).unwrap();
        assert_eq!(leaf.hash, event.leaf_hash(seq), "entry {seq}");
        assert!(leaf.keys_match, "entry {seq}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_entries_from_before_stored_bytes_hash_to_their_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haven.db");
    let audit = SqliteStore::audit_path(&path);
    let scratch = tempfile::tempdir().unwrap();
    let old = migrations_before("sqlite-audit", 2, scratch.path()).await;
    let options = SqliteConnectOptions::new()
        .filename(&audit)
        .create_if_missing(true);
    let mut connection = SqliteConnection::connect_with(&options).await.unwrap();
    old.run_direct(&mut connection).await.unwrap();
    let expected = entries();
    for event in &expected {
        let sql = insert_statement(|_| "?".to_owned());
        bind_event!(sqlx::query(&sql), event)
            .execute(&mut connection)
            .await
            .unwrap();
    }
    connection.close().await.unwrap();

    let store = SqliteStore::open(&path).await.unwrap();
    assert_migrated(&store, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_entries_from_before_stored_bytes_hash_to_their_leaves() {
    let url = std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| POSTGRES_URL_DEFAULT.to_owned());
    let schema = format!("entry_bytes_{}", uuid::Uuid::new_v4().simple());
    let options: PgConnectOptions = url.parse().unwrap();
    let mut admin = PgConnection::connect_with(&options)
        .await
        .unwrap_or_else(|error| panic!("PostgreSQL at {POSTGRES_URL_VAR}: {error}"));
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&mut admin)
        .await
        .unwrap();

    let scratch = tempfile::tempdir().unwrap();
    let old = migrations_before("postgres", 18, scratch.path()).await;
    let mut connection =
        PgConnection::connect_with(&options.clone().options([("search_path", &schema)]))
            .await
            .unwrap();
    old.run_direct(&mut connection).await.unwrap();
    let expected = entries();
    for event in &expected {
        let sql = insert_statement(|n| format!("${n}"));
        bind_event!(sqlx::query(&sql), event)
            .execute(&mut connection)
            .await
            .unwrap();
    }
    connection.close().await.unwrap();

    let store = PostgresStore::connect_in_schema(&url, &schema)
        .await
        .unwrap();
    assert_migrated(&store, &expected).await;
    store.pool().close().await;
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&mut admin)
        .await
        .unwrap();
}
