-- Proxy delegations: a parent, guardian or caregiver acting for a patient within scopes the
-- patient (or the front desk, in person) granted, until a set time. A delegation is offered
-- by a single-use link (its secret stored as a SHA-256 only) and becomes active when a
-- signed-in person accepts it; it can be revoked at any time.

CREATE TABLE delegations (
    id                  BLOB PRIMARY KEY,
    patient_id          BLOB NOT NULL REFERENCES patients (id),
    proxy_user_id       BLOB REFERENCES users (id),
    offer_hash          BLOB NOT NULL UNIQUE,
    relationship        TEXT NOT NULL,
    scopes              TEXT NOT NULL,
    created_by          TEXT NOT NULL,
    created_at_ms       INTEGER NOT NULL,
    offer_expires_at_ms INTEGER NOT NULL,
    expires_at_ms       INTEGER NOT NULL,
    accepted_at_ms      INTEGER,
    revoked_at_ms       INTEGER
) STRICT;
CREATE INDEX delegations_by_patient ON delegations (patient_id, created_at_ms);
CREATE INDEX delegations_by_proxy ON delegations (proxy_user_id, patient_id);
