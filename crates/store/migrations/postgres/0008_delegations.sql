-- Proxy delegations: a parent, guardian or caregiver acting for a patient within scopes the
-- patient (or the front desk, in person) granted, until a set time. A delegation is offered
-- by a single-use link (its secret stored as a SHA-256 only) and becomes active when a
-- signed-in person accepts it; it can be revoked at any time.

CREATE TABLE delegations (
    id                  UUID PRIMARY KEY,
    patient_id          UUID NOT NULL REFERENCES patients (id),
    proxy_user_id       UUID REFERENCES users (id),
    offer_hash          BYTEA NOT NULL UNIQUE,
    relationship        TEXT NOT NULL,
    scopes              TEXT NOT NULL,
    created_by          TEXT NOT NULL,
    created_at_ms       BIGINT NOT NULL,
    offer_expires_at_ms BIGINT NOT NULL,
    expires_at_ms       BIGINT NOT NULL,
    accepted_at_ms      BIGINT,
    revoked_at_ms       BIGINT
);
CREATE INDEX delegations_by_patient ON delegations (patient_id, created_at_ms);
CREATE INDEX delegations_by_proxy ON delegations (proxy_user_id, patient_id);
