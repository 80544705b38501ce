-- FHIR resources other than Patient (which stays in `patients`). Every version of every
-- resource is kept sealed under its subject's key (the patient whose compartment holds it,
-- or the deployment's directory subject for practitioners, organisations and
-- questionnaires); a deleted version has no content. `fhir_current` points at each
-- resource's latest version, and `fhir_search` holds the blind-index tokens of current
-- versions only, so a search never finds an old or deleted version.

CREATE TABLE fhir_resources (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    version       BIGINT NOT NULL,
    subject_id    UUID NOT NULL,
    patient_id    UUID REFERENCES patients (id),
    sealed        BYTEA,
    updated_at_ms BIGINT NOT NULL,
    UNIQUE (resource_type, id, version)
);
CREATE INDEX fhir_resources_by_type ON fhir_resources (resource_type, seq);

CREATE TABLE fhir_current (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    version       BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    patient_id    UUID,
    deleted       BIGINT NOT NULL,
    PRIMARY KEY (resource_type, id)
);
CREATE INDEX fhir_current_by_patient ON fhir_current (patient_id, resource_type, id);

CREATE TABLE fhir_search (
    resource_type TEXT NOT NULL,
    param         TEXT NOT NULL,
    token         BYTEA NOT NULL,
    id            TEXT NOT NULL,
    PRIMARY KEY (resource_type, param, token, id)
);
CREATE INDEX fhir_search_by_resource ON fhir_search (resource_type, id);

-- Versions are history: they are never changed, only added.
CREATE FUNCTION fhir_resources_unchanged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'fhir_resources keeps every version unchanged';
END;
$$;
CREATE TRIGGER fhir_resources_no_update BEFORE UPDATE ON fhir_resources
    FOR EACH ROW EXECUTE FUNCTION fhir_resources_unchanged();
