-- A patient's current resources of one type, read from the index alone (with their version's
-- `seq`), so a search within one patient's chart never walks the whole type: without
-- statistics the planner preferred the primary key to an index that still needed the table.
DROP INDEX fhir_current_by_patient;
CREATE INDEX fhir_current_by_patient ON fhir_current (patient_id, resource_type, deleted, id, seq);
