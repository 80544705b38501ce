-- Haven's first schema (SQLite). Health data is only ever stored sealed (`sealed` columns);
-- searchable fields appear only as blind-index tokens.

CREATE TABLE subject_keys (
    subject_id    BLOB PRIMARY KEY,
    key_id        BLOB NOT NULL UNIQUE,
    root_key_id   BLOB NOT NULL,
    wrapped       BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX subject_keys_by_root ON subject_keys (root_key_id);

CREATE TABLE shredded_subjects (
    subject_id     BLOB PRIMARY KEY,
    shredded_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE system_keys (
    name          TEXT PRIMARY KEY,
    root_key_id   BLOB NOT NULL,
    wrapped       BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE patients (
    id            BLOB PRIMARY KEY,
    version       INTEGER NOT NULL,
    sealed        BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE patient_search (
    kind       TEXT NOT NULL,
    token      BLOB NOT NULL,
    patient_id BLOB NOT NULL REFERENCES patients (id),
    PRIMARY KEY (kind, token, patient_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX patient_search_by_patient ON patient_search (patient_id);

CREATE TABLE api_tokens (
    id            BLOB PRIMARY KEY,
    token_hash    BLOB NOT NULL UNIQUE,
    role          TEXT NOT NULL,
    label         TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
) STRICT;

CREATE TABLE audit_events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms         INTEGER NOT NULL,
    actor         TEXT,
    role          TEXT,
    action        TEXT NOT NULL,
    patient_id    BLOB,
    resource_type TEXT,
    resource_id   TEXT,
    outcome       TEXT NOT NULL,
    reason        TEXT NOT NULL,
    request_id    TEXT,
    source_ip     TEXT,
    user_agent    TEXT
) STRICT;
CREATE INDEX audit_events_by_patient ON audit_events (patient_id, seq);

-- The audit trail is append-only: the database itself refuses to change or remove entries.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
