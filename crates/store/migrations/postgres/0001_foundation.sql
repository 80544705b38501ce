-- Haven's first schema (PostgreSQL). Health data is only ever stored sealed (`sealed`
-- columns); searchable fields appear only as blind-index tokens.

CREATE TABLE subject_keys (
    subject_id    UUID PRIMARY KEY,
    key_id        BYTEA NOT NULL UNIQUE,
    root_key_id   BYTEA NOT NULL,
    wrapped       BYTEA NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX subject_keys_by_root ON subject_keys (root_key_id);

CREATE TABLE shredded_subjects (
    subject_id     UUID PRIMARY KEY,
    shredded_at_ms BIGINT NOT NULL
);

CREATE TABLE system_keys (
    name          TEXT PRIMARY KEY,
    root_key_id   BYTEA NOT NULL,
    wrapped       BYTEA NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE patients (
    id            UUID PRIMARY KEY,
    version       BIGINT NOT NULL,
    sealed        BYTEA NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE patient_search (
    kind       TEXT NOT NULL,
    token      BYTEA NOT NULL,
    patient_id UUID NOT NULL REFERENCES patients (id),
    PRIMARY KEY (kind, token, patient_id)
);
CREATE INDEX patient_search_by_patient ON patient_search (patient_id);

CREATE TABLE api_tokens (
    id            UUID PRIMARY KEY,
    token_hash    BYTEA NOT NULL UNIQUE,
    role          TEXT NOT NULL,
    label         TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);

CREATE TABLE audit_events (
    seq           BIGSERIAL PRIMARY KEY,
    at_ms         BIGINT NOT NULL,
    actor         TEXT,
    role          TEXT,
    action        TEXT NOT NULL,
    patient_id    UUID,
    resource_type TEXT,
    resource_id   TEXT,
    outcome       TEXT NOT NULL,
    reason        TEXT NOT NULL,
    request_id    TEXT,
    source_ip     TEXT,
    user_agent    TEXT
);
CREATE INDEX audit_events_by_patient ON audit_events (patient_id, seq);

-- The audit trail is append-only: the database itself refuses to change or remove entries.
CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
