-- Passkeys (WebAuthn credentials) and the challenges of ceremonies in progress. A
-- credential holds a public key only; a challenge is used once and expires.
CREATE TABLE passkeys (
    credential_id   BYTEA PRIMARY KEY,
    user_id         UUID NOT NULL REFERENCES users (id),
    public_key_cose BYTEA NOT NULL,
    sign_count      BIGINT NOT NULL,
    backup_eligible BOOLEAN NOT NULL,
    name            TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    last_used_ms    BIGINT
);
CREATE INDEX passkeys_by_user ON passkeys (user_id);

CREATE TABLE webauthn_challenges (
    id            UUID PRIMARY KEY,
    challenge     BYTEA NOT NULL,
    user_id       UUID,
    purpose       TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
