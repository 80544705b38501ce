-- Video visits that are over. The call itself lives in memory on the instance holding its
-- room; that a visit ended must outlive a restart so nobody joins it again. A visit is
-- named by the FHIR Appointment it was booked as (its logical id).
CREATE TABLE visit_endings (
    appointment_id  TEXT PRIMARY KEY,
    organisation_id UUID NOT NULL REFERENCES organisations (id),
    patient_id      UUID NOT NULL REFERENCES patients (id),
    ended_by        TEXT NOT NULL,
    ended_at_ms     BIGINT NOT NULL
);
