-- Identity: organisations, users, sessions, invitations and recovery codes.
--
-- A login name (an e-mail address) is personal data, and for a patient the fact of being one
-- is health data: it is stored only as a blind index (`login_index`, for sign-in) and sealed
-- under the user's own subject key (`login_sealed`). Passwords are Argon2id PHC strings;
-- session, invitation and recovery secrets are stored as SHA-256 hashes only.

CREATE TABLE organisations (
    id                    BLOB PRIMARY KEY,
    name                  TEXT NOT NULL,
    idle_timeout_secs     INTEGER NOT NULL,
    absolute_timeout_secs INTEGER NOT NULL,
    patient_mfa_required  INTEGER NOT NULL,
    created_at_ms         INTEGER NOT NULL
) STRICT;

CREATE TABLE users (
    id                     BLOB PRIMARY KEY,
    organisation_id        BLOB NOT NULL REFERENCES organisations (id),
    login_index            BLOB NOT NULL UNIQUE,
    login_sealed           BLOB NOT NULL,
    role                   TEXT NOT NULL,
    patient_id             BLOB,
    password_hash          TEXT NOT NULL,
    password_changed_at_ms INTEGER NOT NULL,
    totp_sealed            BLOB,
    totp_enabled           INTEGER NOT NULL DEFAULT 0,
    totp_last_step         INTEGER NOT NULL DEFAULT 0,
    failed_logins          INTEGER NOT NULL DEFAULT 0,
    locked_until_ms        INTEGER NOT NULL DEFAULT 0,
    created_at_ms          INTEGER NOT NULL,
    disabled_at_ms         INTEGER
) STRICT;
CREATE INDEX users_by_patient ON users (patient_id);

CREATE TABLE sessions (
    id                     BLOB PRIMARY KEY,
    token_hash             BLOB NOT NULL UNIQUE,
    user_id                BLOB NOT NULL REFERENCES users (id),
    created_at_ms          INTEGER NOT NULL,
    last_seen_ms           INTEGER NOT NULL,
    idle_timeout_ms        INTEGER NOT NULL,
    expires_at_ms          INTEGER NOT NULL,
    authenticated_at_ms    INTEGER NOT NULL,
    mfa                    INTEGER NOT NULL,
    source_ip              TEXT,
    user_agent             TEXT,
    revoked_at_ms          INTEGER,
    revoked_reason         TEXT
) STRICT;
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE invitations (
    id              BLOB PRIMARY KEY,
    token_hash      BLOB NOT NULL UNIQUE,
    organisation_id BLOB NOT NULL REFERENCES organisations (id),
    role            TEXT NOT NULL,
    patient_id      BLOB,
    created_by      TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    expires_at_ms   INTEGER NOT NULL,
    used_at_ms      INTEGER,
    used_by         BLOB
) STRICT;

CREATE TABLE recovery_codes (
    user_id    BLOB NOT NULL REFERENCES users (id),
    code_hash  BLOB NOT NULL,
    used_at_ms INTEGER,
    PRIMARY KEY (user_id, code_hash)
) STRICT, WITHOUT ROWID;
