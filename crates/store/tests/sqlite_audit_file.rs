//! The embedded engine keeps its audit log in a file of its own beside the records' file.
//! Databases created before that held the log in the records' file (migrations 0001–0012);
//! opening one moves the log over without losing or duplicating an entry, also when an
//! earlier move was interrupted after copying and before dropping the old tables.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use haven_store::{SqliteStore, Store, StoredCheckpoint};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

/// The records' file as migrations 0001–0012 leave it, holding an audit log of three
/// entries, a checkpoint, its tree leaves and a SIEM cursor.
async fn legacy_database(path: &Path) {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    let mut connection = SqliteConnection::connect_with(&options).await.unwrap();
    sqlx::migrate!("./migrations/sqlite")
        .run_direct(&mut connection)
        .await
        .unwrap();
    for statement in [
        "INSERT INTO audit_events (at_ms, actor, role, action, patient_id, outcome, reason,
                                   organisation, purpose_of_use, user_agent)
         VALUES (1000, 'user-1', 'clinician', 'read', x'00112233445566778899aabbccddeeff',
                 'allowed', 'care_team', 'org-1', 'TREAT', 'agent/1'),
                (2000, 'user-2', 'patient', 'search', NULL, 'denied', 'not_own_record',
                 NULL, NULL, NULL),
                (3000, NULL, NULL, 'key_rotation', NULL, 'allowed', 'scheduled',
                 NULL, 'HSYSADMIN', NULL)",
        "INSERT INTO audit_checkpoints (size, root, note, created_at_ms)
         VALUES (3, x'0101010101010101010101010101010101010101010101010101010101010101',
                 'signed note', 3500)",
        "INSERT INTO audit_tree_leaves (idx, seq, hash) VALUES
             (0, 1, x'0202020202020202020202020202020202020202020202020202020202020202')",
        "INSERT INTO siem_cursors (name, after_seq, updated_at_ms) VALUES ('collector', 2, 3600)",
    ] {
        sqlx::query(statement)
            .execute(&mut connection)
            .await
            .unwrap();
    }
    connection.close().await.unwrap();
}

/// The names of the tables the file at `path` holds.
async fn tables_in(path: &Path) -> Vec<String> {
    let mut connection =
        SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
            .await
            .unwrap();
    let tables = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%audit%'
         OR name = 'siem_cursors' ORDER BY name",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    connection.close().await.unwrap();
    tables
}

/// What a reader of the store sees of the audit log.
async fn audit_state(
    store: &SqliteStore,
) -> (
    Vec<haven_audit::StoredAuditEvent>,
    Vec<StoredCheckpoint>,
    Vec<haven_store::TreeLeaf>,
    Option<i64>,
) {
    (
        store.audit_events(0, 100).await.unwrap(),
        store.checkpoints(0, 100).await.unwrap(),
        store.tree_leaves(0, 100).await.unwrap(),
        store.siem_cursor("collector").await.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_log_in_the_records_file_moves_to_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haven.db");
    legacy_database(&path).await;

    let store = SqliteStore::open(&path).await.unwrap();
    let (events, checkpoints, leaves, cursor) = audit_state(&store).await;
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let first = &events[0].event;
    assert_eq!(first.actor.as_deref(), Some("user-1"));
    assert_eq!(first.organisation.as_deref(), Some("org-1"));
    assert_eq!(first.purpose_of_use.as_deref(), Some("TREAT"));
    assert_eq!(first.origin.user_agent.as_deref(), Some("agent/1"));
    assert_eq!(
        first.patient.map(|p| p.to_string()).as_deref(),
        Some("00112233-4455-6677-8899-aabbccddeeff")
    );
    assert_eq!(events[1].event.reason, "not_own_record");
    // Each moved entry is stored with its bytes, which hash to its leaf.
    let hashed = store.audit_leaves(0, 100).await.unwrap();
    for (leaf, entry) in hashed.iter().zip(&events) {
        assert_eq!(leaf.hash, entry.event.leaf_hash(entry.seq as u64));
        assert!(leaf.keys_match);
    }
    assert_eq!(hashed.len(), 3);
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(checkpoints[0].note, "signed note");
    assert_eq!(leaves.len(), 1);
    assert_eq!(cursor, Some(2));

    assert_eq!(tables_in(&path).await, Vec::<String>::new());
    assert_eq!(
        tables_in(&SqliteStore::audit_path(&path)).await,
        [
            "audit_checkpoints",
            "audit_events",
            "audit_tree_leaves",
            "audit_tree_nodes",
            "siem_cursors"
        ]
    );

    // The log goes on from where it was: new entries follow the moved ones.
    let mut next = first.clone();
    next.at_ms = 4000;
    store.append_audit(vec![next]).await.unwrap();
    assert_eq!(store.audit_events(3, 10).await.unwrap()[0].seq, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_interrupted_after_copying_is_finished_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haven.db");
    legacy_database(&path).await;

    // A finished move of the same log elsewhere gives the audit file as the interrupted
    // move left it: every row copied, while the records' file still holds the old tables.
    let elsewhere = tempfile::tempdir().unwrap();
    let moved = elsewhere.path().join("haven.db");
    std::fs::copy(&path, &moved).unwrap();
    let moved_store = SqliteStore::open(&moved).await.unwrap();
    let expected = audit_state(&moved_store).await;
    let moved_audit = SqliteStore::audit_path(&moved);
    let audit = SqliteStore::audit_path(&path);
    std::fs::copy(&moved_audit, &audit).unwrap();
    let wal = moved_audit.with_extension("db-wal");
    if wal.exists() {
        std::fs::copy(&wal, audit.with_extension("db-wal")).unwrap();
    }

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(audit_state(&store).await, expected);
    assert_eq!(expected.0.len(), 3);
    assert_eq!(tables_in(&path).await, Vec::<String>::new());
}
