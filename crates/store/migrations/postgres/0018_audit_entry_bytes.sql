-- Each entry's stored bytes: its canonical encoding (haven.audit.entry.v2) without the
-- format tag and the position, exactly what its Merkle leaf hashes after them. Reports and
-- exports decode what they show from these bytes, and `haven audit verify` hashes them,
-- reading one value per entry instead of sixteen columns. The other columns stay as the
-- search keys reports filter and sort on; verification checks the filter keys (time,
-- actor, action, patient, outcome) against the entry.
--
-- Existing entries get their bytes computed here, field by field: time as 8 big-endian
-- bytes, then each field as a 4-byte big-endian length and its UTF-8 bytes, or FFFFFFFF
-- when absent; the patient as its lower-case hyphenated UUID.

CREATE FUNCTION pg_temp.audit_field(value TEXT) RETURNS BYTEA AS $$
    SELECT CASE WHEN value IS NULL THEN '\xffffffff'::bytea
                ELSE int4send(octet_length(value)) || convert_to(value, 'UTF8') END
$$ LANGUAGE sql IMMUTABLE;

ALTER TABLE audit_events ADD COLUMN entry BYTEA;

ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change;

UPDATE audit_events SET entry =
    int8send(at_ms)
    || pg_temp.audit_field(actor)
    || pg_temp.audit_field(role)
    || pg_temp.audit_field(organisation)
    || pg_temp.audit_field(session_id)
    || pg_temp.audit_field(client_app)
    || pg_temp.audit_field(action)
    || pg_temp.audit_field(patient_id::text)
    || pg_temp.audit_field(resource_type)
    || pg_temp.audit_field(resource_id)
    || pg_temp.audit_field(outcome)
    || pg_temp.audit_field(reason)
    || pg_temp.audit_field(purpose_of_use)
    || pg_temp.audit_field(request_id)
    || pg_temp.audit_field(source_ip)
    || pg_temp.audit_field(user_agent);

ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_change;

ALTER TABLE audit_events ALTER COLUMN entry SET NOT NULL;
