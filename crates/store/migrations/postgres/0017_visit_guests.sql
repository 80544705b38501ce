-- Guests of video visits (an interpreter, a relative), invited by a clinician of the visit.
-- The invitation's secret and the guest's session secret are kept only as SHA-256 hashes;
-- `kind` is a word from a fixed list, so no name or health data is kept. An invitation is
-- redeemed once (redeemed_at_ms), and everything ends at expires_at_ms.
CREATE TABLE visit_guests (
    id              UUID PRIMARY KEY,
    appointment_id  TEXT NOT NULL,
    organisation_id UUID NOT NULL REFERENCES organisations (id),
    patient_id      UUID NOT NULL REFERENCES patients (id),
    kind            TEXT NOT NULL,
    invitation_hash BYTEA NOT NULL UNIQUE,
    session_hash    BYTEA UNIQUE,
    invited_by      TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    expires_at_ms   BIGINT NOT NULL,
    redeemed_at_ms  BIGINT
);
CREATE INDEX visit_guests_by_appointment ON visit_guests (appointment_id);
