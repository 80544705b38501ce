-- Who may open a patient's record beyond the patient: the care team, and clinicians who
-- broke the glass in an emergency; and the notices that tell people what needs them.
--
-- Rows hold ids and times only. A break-the-glass reason, and the privacy officer's review
-- note, may describe the patient's condition: both are sealed under the patient's key.
-- A notice carries a kind and an id, never health data.

CREATE TABLE care_team_members (
    patient_id  BLOB NOT NULL REFERENCES patients (id),
    user_id     BLOB NOT NULL REFERENCES users (id),
    added_by    TEXT NOT NULL,
    added_at_ms INTEGER NOT NULL,
    PRIMARY KEY (patient_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX care_team_members_by_user ON care_team_members (user_id, patient_id);

CREATE TABLE break_glass_grants (
    id                 BLOB PRIMARY KEY,
    organisation_id    BLOB NOT NULL REFERENCES organisations (id),
    user_id            BLOB NOT NULL REFERENCES users (id),
    patient_id         BLOB NOT NULL REFERENCES patients (id),
    reason_sealed      BLOB NOT NULL,
    created_at_ms      INTEGER NOT NULL,
    expires_at_ms      INTEGER NOT NULL,
    review_state       TEXT NOT NULL,
    reviewed_by        BLOB,
    reviewed_at_ms     INTEGER,
    review_note_sealed BLOB
) STRICT;
CREATE INDEX break_glass_by_user ON break_glass_grants (user_id, patient_id, expires_at_ms);
CREATE INDEX break_glass_by_review ON break_glass_grants (organisation_id, review_state, created_at_ms);

CREATE TABLE notifications (
    id            BLOB PRIMARY KEY,
    user_id       BLOB NOT NULL REFERENCES users (id),
    kind          TEXT NOT NULL,
    subject_id    BLOB,
    created_at_ms INTEGER NOT NULL,
    read_at_ms    INTEGER
) STRICT;
CREATE INDEX notifications_by_user ON notifications (user_id, created_at_ms);
CREATE INDEX notifications_by_subject ON notifications (subject_id);

ALTER TABLE organisations ADD COLUMN break_glass_secs INTEGER NOT NULL DEFAULT 3600;
