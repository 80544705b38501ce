-- FHIR resources other than Patient (which stays in `patients`). Every version of every
-- resource is kept sealed under its subject's key (the patient whose compartment holds it,
-- or the deployment's directory subject for practitioners, organisations and
-- questionnaires); a deleted version has no content. `fhir_current` points at each
-- resource's latest version, and `fhir_search` holds the blind-index tokens of current
-- versions only, so a search never finds an old or deleted version.

CREATE TABLE fhir_resources (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    version       INTEGER NOT NULL,
    subject_id    BLOB NOT NULL,
    patient_id    BLOB REFERENCES patients (id),
    sealed        BLOB,
    updated_at_ms INTEGER NOT NULL,
    UNIQUE (resource_type, id, version)
) STRICT;
CREATE INDEX fhir_resources_by_type ON fhir_resources (resource_type, seq);

CREATE TABLE fhir_current (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    version       INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    patient_id    BLOB,
    deleted       INTEGER NOT NULL,
    PRIMARY KEY (resource_type, id)
) STRICT, WITHOUT ROWID;
CREATE INDEX fhir_current_by_patient ON fhir_current (patient_id, resource_type, id);

CREATE TABLE fhir_search (
    resource_type TEXT NOT NULL,
    param         TEXT NOT NULL,
    token         BLOB NOT NULL,
    id            TEXT NOT NULL,
    PRIMARY KEY (resource_type, param, token, id)
) STRICT, WITHOUT ROWID;
CREATE INDEX fhir_search_by_resource ON fhir_search (resource_type, id);

-- Versions are history: they are never changed, only added.
CREATE TRIGGER fhir_resources_no_update BEFORE UPDATE ON fhir_resources
BEGIN
    SELECT RAISE(ABORT, 'fhir_resources keeps every version unchanged');
END;
