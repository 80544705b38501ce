-- Passkeys (WebAuthn credentials) and the challenges of ceremonies in progress. A
-- credential holds a public key only; a challenge is used once and expires.
CREATE TABLE passkeys (
    credential_id   BLOB PRIMARY KEY,
    user_id         BLOB NOT NULL REFERENCES users (id),
    public_key_cose BLOB NOT NULL,
    sign_count      INTEGER NOT NULL,
    backup_eligible INTEGER NOT NULL,
    name            TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    last_used_ms    INTEGER
) STRICT;
CREATE INDEX passkeys_by_user ON passkeys (user_id);

CREATE TABLE webauthn_challenges (
    id            BLOB PRIMARY KEY,
    challenge     BLOB NOT NULL,
    user_id       BLOB,
    purpose       TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
) STRICT;
