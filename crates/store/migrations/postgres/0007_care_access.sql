-- Who may open a patient's record beyond the patient: the care team, and clinicians who
-- broke the glass in an emergency; and the notices that tell people what needs them.
--
-- Rows hold ids and times only. A break-the-glass reason, and the privacy officer's review
-- note, may describe the patient's condition: both are sealed under the patient's key.
-- A notice carries a kind and an id, never health data.

CREATE TABLE care_team_members (
    patient_id  UUID NOT NULL REFERENCES patients (id),
    user_id     UUID NOT NULL REFERENCES users (id),
    added_by    TEXT NOT NULL,
    added_at_ms BIGINT NOT NULL,
    PRIMARY KEY (patient_id, user_id)
);
CREATE INDEX care_team_members_by_user ON care_team_members (user_id, patient_id);

CREATE TABLE break_glass_grants (
    id                 UUID PRIMARY KEY,
    organisation_id    UUID NOT NULL REFERENCES organisations (id),
    user_id            UUID NOT NULL REFERENCES users (id),
    patient_id         UUID NOT NULL REFERENCES patients (id),
    reason_sealed      BYTEA NOT NULL,
    created_at_ms      BIGINT NOT NULL,
    expires_at_ms      BIGINT NOT NULL,
    review_state       TEXT NOT NULL,
    reviewed_by        UUID,
    reviewed_at_ms     BIGINT,
    review_note_sealed BYTEA
);
CREATE INDEX break_glass_by_user ON break_glass_grants (user_id, patient_id, expires_at_ms);
CREATE INDEX break_glass_by_review ON break_glass_grants (organisation_id, review_state, created_at_ms);

CREATE TABLE notifications (
    id            UUID PRIMARY KEY,
    user_id       UUID NOT NULL REFERENCES users (id),
    kind          TEXT NOT NULL,
    subject_id    UUID,
    created_at_ms BIGINT NOT NULL,
    read_at_ms    BIGINT
);
CREATE INDEX notifications_by_user ON notifications (user_id, created_at_ms);
CREATE INDEX notifications_by_subject ON notifications (subject_id);

ALTER TABLE organisations ADD COLUMN break_glass_secs BIGINT NOT NULL DEFAULT 3600;
