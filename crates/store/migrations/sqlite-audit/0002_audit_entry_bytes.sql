-- Each entry's stored bytes: its canonical encoding (haven.audit.entry.v2) without the
-- format tag and the position, exactly what its Merkle leaf hashes after them. Reports and
-- exports decode what they show from these bytes, and `haven audit verify` hashes them,
-- reading one value per entry instead of sixteen columns. The other columns stay as the
-- search keys reports filter and sort on; verification checks the filter keys (time,
-- actor, action, patient, outcome) against the entry.
--
-- Existing entries get their bytes computed here, field by field: time as 8 big-endian
-- bytes, then each field as a 4-byte big-endian length and its UTF-8 bytes, or FFFFFFFF
-- when absent; the patient as its lower-case hyphenated UUID. (`||` makes TEXT of its
-- operands' bytes, unchanged; the CAST makes the result a BLOB again.)

ALTER TABLE audit_events ADD COLUMN entry BLOB NOT NULL DEFAULT x'';

DROP TRIGGER audit_events_no_update;

UPDATE audit_events SET entry = CAST((
    unhex(printf('%016X', at_ms))
    || CASE WHEN actor IS NULL THEN x'FFFFFFFF'
            ELSE unhex(printf('%08X', length(CAST(actor AS BLOB)))) || CAST(actor AS BLOB) END
    || CASE WHEN role IS NULL THEN x'FFFFFFFF'
            ELSE unhex(printf('%08X', length(CAST(role AS BLOB)))) || CAST(role AS BLOB) END
    || CASE WHEN organisation IS NULL THEN x'FFFFFFFF'
            ELSE unhex(printf('%08X', length(CAST(organisation AS BLOB)))) || CAST(organisation AS BLOB) END
    || CASE WHEN session_id IS NULL THEN x'FFFFFFFF'
            ELSE unhex(printf('%08X', length(CAST(session_id AS BLOB)))) || CAST(session_id AS BLOB) END
    || CASE WHEN client_app IS NULL THEN x'FFFFFFFF'
            ELSE unhex(printf('%08X', length(CAST(client_app AS BLOB)))) || CAST(client_app AS BLOB) END
    || unhex(printf('%08X', length(CAST(action AS BLOB)))) || CAST(action AS BLOB)
    || CASE WHEN patient_id IS NULL THEN x'FFFFFFFF'
            ELSE x'00000024' || CAST(lower(
                substr(hex(patient_id), 1, 8) || '-' || substr(hex(patient_id), 9, 4) || '-'
                || substr(hex(patient_id), 13, 4) || '-' || substr(hex(patient_id), 17, 4) || '-'
                || substr(hex(patient_id), 21, 12)) AS BLOB) END
    || CASE WHEN resource_type IS NULL THEN x'FFFFFFFF'
            ELSE unhex(printf('%08X', length(CAST(resource_type AS BLOB)))) || CAST(resource_type AS BLOB) END
    || CASE WHEN resource_id IS NULL THEN x'FFFFFFFF'
            ELSE unhex(printf('%08X', length(CAST(resource_id AS BLOB)))) || CAST(resource_id AS BLOB) END
    || unhex(printf('%08X', length(CAST(outcome AS BLOB)))) || CAST(outcome AS BLOB)
    || unhex(printf('%08X', length(CAST(reason AS BLOB)))) || CAST(reason AS BLOB)
    || CASE WHEN purpose_of_use IS NULL THEN x'FFFFFFFF'
            ELSE unhex(printf('%08X', length(CAST(purpose_of_use AS BLOB)))) || CAST(purpose_of_use AS BLOB) END
    || CASE WHEN request_id IS NULL THEN x'FFFFFFFF'
            ELSE unhex(printf('%08X', length(CAST(request_id AS BLOB)))) || CAST(request_id AS BLOB) END
    || CASE WHEN source_ip IS NULL THEN x'FFFFFFFF'
            ELSE unhex(printf('%08X', length(CAST(source_ip AS BLOB)))) || CAST(source_ip AS BLOB) END
    || CASE WHEN user_agent IS NULL THEN x'FFFFFFFF'
            ELSE unhex(printf('%08X', length(CAST(user_agent AS BLOB)))) || CAST(user_agent AS BLOB) END
) AS BLOB);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
