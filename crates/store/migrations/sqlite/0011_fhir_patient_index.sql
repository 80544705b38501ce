-- A patient's current resources of one type, read from the index alone (with their version's
-- `seq`), so a search within one patient's chart never walks the whole type: without
-- statistics the planner preferred the primary key to an index that still needed the table.
DROP INDEX fhir_current_by_patient;
CREATE INDEX fhir_current_by_patient ON fhir_current (patient_id, resource_type, deleted, id, seq);

-- Whether one resource has a token of a parameter, answered from the index alone: the
-- primary key leads with the token, which a check of one resource does not know.
DROP INDEX fhir_search_by_resource;
CREATE INDEX fhir_search_by_resource ON fhir_search (resource_type, id, param, token);
