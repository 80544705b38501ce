-- Identity: organisations, users, sessions, invitations and recovery codes.
--
-- A login name (an e-mail address) is personal data, and for a patient the fact of being one
-- is health data: it is stored only as a blind index (`login_index`, for sign-in) and sealed
-- under the user's own subject key (`login_sealed`). Passwords are Argon2id PHC strings;
-- session, invitation and recovery secrets are stored as SHA-256 hashes only.

CREATE TABLE organisations (
    id                    UUID PRIMARY KEY,
    name                  TEXT NOT NULL,
    idle_timeout_secs     BIGINT NOT NULL,
    absolute_timeout_secs BIGINT NOT NULL,
    patient_mfa_required  BOOLEAN NOT NULL,
    created_at_ms         BIGINT NOT NULL
);

CREATE TABLE users (
    id                     UUID PRIMARY KEY,
    organisation_id        UUID NOT NULL REFERENCES organisations (id),
    login_index            BYTEA NOT NULL UNIQUE,
    login_sealed           BYTEA NOT NULL,
    role                   TEXT NOT NULL,
    patient_id             UUID,
    password_hash          TEXT NOT NULL,
    password_changed_at_ms BIGINT NOT NULL,
    totp_sealed            BYTEA,
    totp_enabled           BOOLEAN NOT NULL DEFAULT FALSE,
    totp_last_step         BIGINT NOT NULL DEFAULT 0,
    failed_logins          BIGINT NOT NULL DEFAULT 0,
    locked_until_ms        BIGINT NOT NULL DEFAULT 0,
    created_at_ms          BIGINT NOT NULL,
    disabled_at_ms         BIGINT
);
CREATE INDEX users_by_patient ON users (patient_id);

CREATE TABLE sessions (
    id                     UUID PRIMARY KEY,
    token_hash             BYTEA NOT NULL UNIQUE,
    user_id                UUID NOT NULL REFERENCES users (id),
    created_at_ms          BIGINT NOT NULL,
    last_seen_ms           BIGINT NOT NULL,
    idle_timeout_ms        BIGINT NOT NULL,
    expires_at_ms          BIGINT NOT NULL,
    authenticated_at_ms    BIGINT NOT NULL,
    mfa                    BOOLEAN NOT NULL,
    source_ip              TEXT,
    user_agent             TEXT,
    revoked_at_ms          BIGINT,
    revoked_reason         TEXT
);
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE invitations (
    id              UUID PRIMARY KEY,
    token_hash      BYTEA NOT NULL UNIQUE,
    organisation_id UUID NOT NULL REFERENCES organisations (id),
    role            TEXT NOT NULL,
    patient_id      UUID,
    created_by      TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    expires_at_ms   BIGINT NOT NULL,
    used_at_ms      BIGINT,
    used_by         UUID
);

CREATE TABLE recovery_codes (
    user_id    UUID NOT NULL REFERENCES users (id),
    code_hash  BYTEA NOT NULL,
    used_at_ms BIGINT,
    PRIMARY KEY (user_id, code_hash)
);
