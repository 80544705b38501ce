//! A realistic example of every resource type Haven serves, as a clinic would send it,
//! about one patient. Tests use them, and they seed demonstration data.

use serde_json::{Value, json};

/// The patient id the examples are written about; [`example`] replaces it.
pub const PATIENT: &str = "0190c2a4-9d7e-7c3a-8f1e-123456789abc";
const SCT: &str = "http://snomed.info/sct";
const LOINC: &str = "http://loinc.org";
const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
const UCUM: &str = "http://unitsofmeasure.org";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";

pub fn patient_ref() -> Value {
    json!({"reference": format!("Patient/{PATIENT}"), "display": "Ana Rivera"})
}

pub fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN-1"}],
        "name": [{"family": "Rivera", "given": ["Ana"]}],
        "gender": "female",
        "birthDate": "1984-07-02"
    })
}

pub fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
        "subject": patient_ref(),
        "effectiveDateTime": "2024-03-15T10:30:00+01:00",
        "valueQuantity": {"value": 72, "unit": "beats/minute", "system": UCUM, "code": "/min"}
    })
}

pub fn condition() -> Value {
    json!({
        "resourceType": "Condition",
        "identifier": [{"system": "https://haven.example/conditions", "value": "COND-1"}],
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis"}]}],
        "severity": {"coding": [{"system": SCT, "code": "255604002", "display": "Mild"}]},
        "code": {"coding": [{"system": SCT, "code": "195662009", "display": "Acute viral pharyngitis"}], "text": "Sore throat"},
        "bodySite": [{"coding": [{"system": SCT, "code": "54066008", "display": "Pharyngeal structure"}]}],
        "subject": patient_ref(),
        "encounter": {"reference": "Encounter/enc-1"},
        "onsetDateTime": "2024-03-10",
        "abatementDateTime": "2024-03-20",
        "recordedDate": "2024-03-15T10:40:00+01:00",
        "recorder": {"reference": "Practitioner/dr-lopez"},
        "asserter": patient_ref(),
        "note": [{"authorReference": {"reference": "Practitioner/dr-lopez"}, "time": "2024-03-15T10:40:00+01:00", "text": "Improving with rest and fluids."}]
    })
}

pub fn allergy_intolerance() -> Value {
    json!({
        "resourceType": "AllergyIntolerance",
        "identifier": [{"system": "https://haven.example/allergies", "value": "ALG-1"}],
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed"}]},
        "type": "allergy",
        "category": ["medication"],
        "criticality": "high",
        "code": {"coding": [{"system": RXNORM, "code": "7980", "display": "Penicillin G"}]},
        "patient": patient_ref(),
        "encounter": {"reference": "Encounter/enc-1"},
        "onsetString": "Childhood",
        "recordedDate": "2024-03-15",
        "recorder": {"reference": "Practitioner/dr-lopez"},
        "asserter": patient_ref(),
        "lastOccurrence": "2019-06",
        "note": [{"text": "Patient carries an allergy card."}],
        "reaction": [{
            "substance": {"coding": [{"system": RXNORM, "code": "7980", "display": "Penicillin G"}]},
            "manifestation": [{"coding": [{"system": SCT, "code": "247472004", "display": "Hives"}]}],
            "description": "Hives on arms and chest",
            "onset": "2019-06-12",
            "severity": "moderate",
            "exposureRoute": {"coding": [{"system": SCT, "code": "26643006", "display": "Oral route"}]},
            "note": [{"text": "Resolved with antihistamines."}]
        }]
    })
}

pub fn medication_request() -> Value {
    json!({
        "resourceType": "MedicationRequest",
        "identifier": [{"system": "https://haven.example/prescriptions", "value": "RX-1001"}],
        "status": "active",
        "intent": "order",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category", "code": "outpatient"}]}],
        "priority": "routine",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "308182", "display": "Amoxicillin 250 MG Oral Capsule"}]},
        "subject": patient_ref(),
        "encounter": {"reference": "Encounter/enc-1"},
        "authoredOn": "2024-03-15T10:45:00+01:00",
        "requester": {"reference": "Practitioner/dr-lopez", "display": "Dr. María López"},
        "reasonCode": [{"coding": [{"system": SCT, "code": "43878008", "display": "Streptococcal sore throat"}]}],
        "reasonReference": [{"reference": "Condition/cond-1"}],
        "note": [{"text": "Check for rash after the first dose."}],
        "dosageInstruction": [{
            "sequence": 1,
            "text": "250 mg three times a day for 7 days",
            "patientInstruction": "Take with food",
            "asNeededBoolean": false,
            "route": {"coding": [{"system": SCT, "code": "26643006", "display": "Oral route"}]},
            "doseAndRate": [{"doseQuantity": {"value": 250, "unit": "mg", "system": UCUM, "code": "mg"}}]
        }],
        "dispenseRequest": {
            "validityPeriod": {"start": "2024-03-15", "end": "2024-04-15"},
            "numberOfRepeatsAllowed": 0,
            "quantity": {"value": 21, "unit": "capsule"},
            "expectedSupplyDuration": {"value": 7, "unit": "days", "system": UCUM, "code": "d"}
        },
        "substitution": {"allowedBoolean": true, "reason": {"text": "A generic is fine"}}
    })
}

pub fn encounter() -> Value {
    json!({
        "resourceType": "Encounter",
        "identifier": [{"system": "https://haven.example/visits", "value": "V-2024-0042"}],
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR", "display": "virtual"},
        "type": [{"coding": [{"system": SCT, "code": "448337001", "display": "Telemedicine consultation with patient"}]}],
        "serviceType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/service-type", "code": "124", "display": "General Practice"}]},
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActPriority", "code": "R", "display": "routine"}]},
        "subject": patient_ref(),
        "participant": [{
            "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "ATND"}]}],
            "period": {"start": "2024-03-15T10:30:00+01:00", "end": "2024-03-15T10:50:00+01:00"},
            "individual": {"reference": "Practitioner/dr-lopez"}
        }],
        "appointment": [{"reference": "Appointment/appt-1"}],
        "period": {"start": "2024-03-15T10:30:00+01:00", "end": "2024-03-15T10:50:00+01:00"},
        "reasonCode": [{"text": "Sore throat"}],
        "reasonReference": [{"reference": "Condition/cond-1"}],
        "serviceProvider": {"reference": "Organization/clinic"}
    })
}

pub fn appointment() -> Value {
    json!({
        "resourceType": "Appointment",
        "identifier": [{"system": "https://haven.example/appointments", "value": "A-77"}],
        "status": "booked",
        "serviceType": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/service-type", "code": "124", "display": "General Practice"}]}],
        "appointmentType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0276", "code": "FOLLOWUP"}]},
        "reasonCode": [{"text": "Follow-up on sore throat"}],
        "priority": 0,
        "description": "Video follow-up",
        "start": "2024-03-22T09:00:00+01:00",
        "end": "2024-03-22T09:20:00+01:00",
        "minutesDuration": 20,
        "created": "2024-03-15T11:00:00+01:00",
        "comment": "Patient prefers mornings",
        "patientInstruction": "Join the video link 5 minutes early",
        "participant": [
            {"actor": patient_ref(), "required": "required", "status": "accepted"},
            {
                "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "ATND"}]}],
                "actor": {"reference": "Practitioner/dr-lopez"},
                "required": "required",
                "status": "accepted",
                "period": {"start": "2024-03-22T09:00:00+01:00", "end": "2024-03-22T09:20:00+01:00"}
            }
        ]
    })
}

pub fn diagnostic_report() -> Value {
    json!({
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": "https://lab.example/reports", "value": "R-5501"}],
        "basedOn": [{"reference": "ServiceRequest/sr-1"}],
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}],
        "code": {"coding": [{"system": LOINC, "code": "58410-2", "display": "CBC panel - Blood by Automated count"}]},
        "subject": patient_ref(),
        "encounter": {"reference": "Encounter/enc-1"},
        "effectiveDateTime": "2024-03-14T08:00:00+01:00",
        "issued": "2024-03-14T15:00:00.000+01:00",
        "performer": [{"reference": "Organization/lab-1", "display": "Springfield Lab"}],
        "resultsInterpreter": [{"reference": "Practitioner/dr-lopez"}],
        "result": [{"reference": "Observation/hb-1"}, {"reference": "Observation/wbc-1"}],
        "conclusion": "Normal blood count",
        "conclusionCode": [{"coding": [{"system": SCT, "code": "281900007", "display": "No abnormality detected"}]}],
        "presentedForm": [{"contentType": "application/pdf", "url": "https://haven.example/attachments/abc", "title": "CBC report"}]
    })
}

pub fn imaging_study() -> Value {
    json!({
        "resourceType": "ImagingStudy",
        "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:2.16.124.113543.6003.1154777499.30246.19789.3503430045"}],
        "status": "available",
        "modality": [{"system": DCM, "code": "XC", "display": "External-camera Photography"}],
        "subject": patient_ref(),
        "encounter": {"reference": "Encounter/enc-1"},
        "started": "2024-03-15T10:35:00+01:00",
        "basedOn": [{"reference": "ServiceRequest/sr-2"}],
        "referrer": {"reference": "Practitioner/dr-lopez"},
        "numberOfSeries": 1,
        "numberOfInstances": 2,
        "procedureCode": [{"coding": [{"system": SCT, "code": "277362009", "display": "Clinical photography"}]}],
        "reasonCode": [{"text": "Rash on the left forearm"}],
        "note": [{"text": "Photographs taken by the patient during the visit."}],
        "description": "Skin photographs",
        "series": [{
            "uid": "2.16.124.113543.6003.2588828330.45298.17418.2723805630",
            "number": 1,
            "modality": {"system": DCM, "code": "XC"},
            "description": "Left forearm",
            "numberOfInstances": 2,
            "bodySite": {"system": SCT, "code": "14975008", "display": "Forearm"},
            "started": "2024-03-15T10:35:00+01:00",
            "instance": [
                {"uid": "2.16.124.113543.6003.189642796.63084.16748.2599092903", "sopClass": {"system": "urn:ietf:rfc:3986", "code": "urn:oid:1.2.840.10008.5.1.4.1.1.77.1.4"}, "number": 1, "title": "Overview"},
                {"uid": "2.16.124.113543.6003.189642796.63084.16748.2599092904", "sopClass": {"system": "urn:ietf:rfc:3986", "code": "urn:oid:1.2.840.10008.5.1.4.1.1.77.1.4"}, "number": 2, "title": "Close-up"}
            ]
        }]
    })
}

pub fn document_reference() -> Value {
    json!({
        "resourceType": "DocumentReference",
        "identifier": [{"system": "https://haven.example/documents", "value": "DOC-9"}],
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [{"system": LOINC, "code": "57133-1", "display": "Referral note"}]},
        "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "code": "clinical-note"}]}],
        "subject": patient_ref(),
        "date": "2024-03-15T11:05:00+01:00",
        "author": [{"reference": "Practitioner/dr-lopez"}],
        "authenticator": {"reference": "Practitioner/dr-lopez"},
        "custodian": {"reference": "Organization/clinic"},
        "description": "Referral to dermatology",
        "securityLabel": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]}],
        "content": [{
            "attachment": {"contentType": "application/pdf", "url": "https://haven.example/attachments/def", "size": 48213, "title": "Referral letter", "creation": "2024-03-15T11:00:00+01:00"},
            "format": {"system": "http://ihe.net/fhir/ValueSet/IHE.FormatCode.codesystem", "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient"}
        }],
        "context": {"encounter": [{"reference": "Encounter/enc-1"}], "period": {"start": "2024-03-15"}}
    })
}

pub fn questionnaire_response() -> Value {
    json!({
        "resourceType": "QuestionnaireResponse",
        "identifier": {"system": "https://haven.example/forms", "value": "QR-314"},
        "basedOn": [{"reference": "ServiceRequest/sr-3"}],
        "partOf": [{"reference": "Procedure/proc-1"}],
        "questionnaire": "https://haven.example/fhir/Questionnaire/intake|1.0",
        "status": "completed",
        "subject": patient_ref(),
        "encounter": {"reference": "Encounter/enc-1"},
        "authored": "2024-03-15T10:20:00+01:00",
        "author": patient_ref(),
        "source": patient_ref(),
        "item": [
            {"linkId": "notes", "text": "Anything else?", "answer": [{"valueString": "Worse at night"}]},
            {"linkId": "symptoms", "text": "Symptoms", "item": [
                {"linkId": "fever", "text": "Do you have a fever?", "answer": [{"valueBoolean": true, "item": [
                    {"linkId": "fever-temp", "text": "Highest temperature", "answer": [{"valueQuantity": {"value": 38.4, "unit": "°C", "system": UCUM, "code": "Cel"}}]}
                ]}]},
                {"linkId": "symptom", "definition": "https://haven.example/fhir/Questionnaire/intake#symptom", "answer": [{"valueCoding": {"system": SCT, "code": "267102003", "display": "Sore throat"}}]},
                {"linkId": "onset", "answer": [{"valueDate": "2024-03-10"}]},
                {"linkId": "pain", "answer": [{"valueInteger": 6}]}
            ]},
            {"linkId": "weight", "answer": [{"valueDecimal": 64.5}]},
            {"linkId": "photo", "answer": [{"valueAttachment": {"contentType": "image/jpeg", "url": "https://haven.example/attachments/ghi"}}]},
            {"linkId": "gp", "answer": [{"valueReference": {"reference": "Practitioner/dr-lopez"}}]},
            {"linkId": "website", "answer": [{"valueUri": "https://example.org/diary"}]},
            {"linkId": "last-visit", "answer": [{"valueDateTime": "2024-01-05T09:00:00+01:00"}]}
        ]
    })
}

pub fn consent() -> Value {
    json!({
        "resourceType": "Consent",
        "identifier": [{"system": "https://haven.example/consents", "value": "C-12"}],
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": patient_ref(),
        "dateTime": "2024-03-15T10:15:00+01:00",
        "performer": [patient_ref()],
        "organization": [{"reference": "Organization/clinic"}],
        "sourceAttachment": {"contentType": "application/pdf", "url": "https://haven.example/attachments/jkl", "title": "Signed telehealth consent"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "period": {"start": "2024-03-15", "end": "2025-03-15"},
            "actor": [{
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]},
                "reference": {"reference": "Organization/clinic"}
            }],
            "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}],
            "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}],
            "code": [{"coding": [{"system": LOINC, "code": "8867-4"}]}],
            "dataPeriod": {"start": "2020-01-01"},
            "provision": [{
                "type": "deny",
                "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "DocumentReference"}],
                "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}]
            }]
        }
    })
}

pub fn communication() -> Value {
    json!({
        "resourceType": "Communication",
        "identifier": [{"system": "https://haven.example/messages", "value": "M-808"}],
        "basedOn": [{"reference": "ServiceRequest/sr-1"}],
        "partOf": [{"reference": "Encounter/enc-1"}],
        "inResponseTo": [{"reference": "Communication/msg-0"}],
        "status": "completed",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category", "code": "notification"}]}],
        "priority": "routine",
        "medium": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode", "code": "ELECTRONIC"}]}],
        "subject": patient_ref(),
        "topic": {"text": "Blood test results"},
        "encounter": {"reference": "Encounter/enc-1"},
        "sent": "2024-03-16T09:00:00+01:00",
        "received": "2024-03-16T09:05:00+01:00",
        "recipient": [patient_ref()],
        "sender": {"reference": "Practitioner/dr-lopez"},
        "reasonCode": [{"text": "Result follow-up"}],
        "payload": [
            {"contentString": "Your blood count is normal."},
            {"contentReference": {"reference": "DiagnosticReport/dr-1"}},
            {"contentAttachment": {"contentType": "application/pdf", "url": "https://haven.example/attachments/abc"}}
        ],
        "note": [{"text": "Patient read the message in the app."}]
    })
}

/// A patient's request to correct a record (an amendment request). The focus names an
/// Observation of the demonstration clinic; a test points it at one it has created.
pub fn task() -> Value {
    json!({
        "resourceType": "Task",
        "status": "requested",
        "intent": "proposal",
        "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "change", "display": "Change the focal resource"}]},
        "description": "The heart rate recorded on 15 March was taken after I climbed the stairs; please note it was not at rest.",
        "focus": {"reference": "Observation/obs-1"},
        "for": patient_ref(),
        "authoredOn": "2024-03-20T09:00:00Z",
        "requester": {"reference": format!("Patient/{PATIENT}")},
        "input": [{"type": {"text": "Requested correction"}, "valueString": "Add that the reading was taken after exertion."}]
    })
}

pub fn practitioner() -> Value {
    json!({
        "resourceType": "Practitioner",
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
        "active": true,
        "name": [{"use": "official", "family": "López", "given": ["María", "José"], "prefix": ["Dr."]}],
        "telecom": [{"system": "email", "value": "m.lopez@clinic.example", "use": "work"}],
        "address": [{"use": "work", "line": ["1 Health St"], "city": "Springfield", "postalCode": "12345", "country": "US"}],
        "gender": "female",
        "birthDate": "1979-04-12",
        "qualification": [{
            "identifier": [{"system": "https://medboard.example/licences", "value": "MD-55123"}],
            "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0360", "code": "MD", "display": "Doctor of Medicine"}]},
            "period": {"start": "2005-06-01"},
            "issuer": {"reference": "Organization/state-board", "display": "State Medical Board"}
        }]
    })
}

pub fn practitioner_role() -> Value {
    json!({
        "resourceType": "PractitionerRole",
        "identifier": [{"system": "https://haven.example/roles", "value": "R-3"}],
        "active": true,
        "period": {"start": "2020-01-01"},
        "practitioner": {"reference": "Practitioner/dr-lopez"},
        "organization": {"reference": "Organization/clinic"},
        "code": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/practitioner-role", "code": "doctor"}]}],
        "specialty": [{"coding": [{"system": SCT, "code": "419772000", "display": "Family practice"}]}],
        "telecom": [{"system": "phone", "value": "+1 555 0100", "use": "work"}]
    })
}

pub fn organization() -> Value {
    json!({
        "resourceType": "Organization",
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.4.4", "value": "12-3456789"}],
        "active": true,
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}]}],
        "name": "Haven Family Clinic",
        "alias": ["HFC"],
        "telecom": [{"system": "phone", "value": "+1 555 0100", "use": "work"}],
        "address": [{"use": "work", "line": ["1 Health St"], "city": "Springfield"}],
        "partOf": {"reference": "Organization/haven-network"}
    })
}

pub fn questionnaire() -> Value {
    json!({
        "resourceType": "Questionnaire",
        "url": "https://haven.example/fhir/Questionnaire/intake",
        "identifier": [{"system": "https://haven.example/forms", "value": "intake"}],
        "version": "1.0",
        "name": "TelehealthIntake",
        "title": "Telehealth intake",
        "status": "active",
        "date": "2024-01-10",
        "publisher": "Haven Family Clinic",
        "description": "Questions asked before a **video visit**.",
        "code": [{"system": LOINC, "code": "74465-6", "display": "Questionnaire response Document"}],
        "item": [
            {"linkId": "notes", "text": "Anything else?", "type": "text", "maxLength": 2000},
            {"linkId": "symptoms", "text": "Symptoms", "type": "group", "code": [{"system": SCT, "code": "418799008", "display": "Symptom"}], "item": [
                {"linkId": "fever", "prefix": "1.", "text": "Do you have a fever?", "type": "boolean", "required": true},
                {"linkId": "symptom", "prefix": "2.", "text": "Main symptom", "type": "choice", "repeats": false, "answerOption": [
                    {"valueCoding": {"system": SCT, "code": "267102003", "display": "Sore throat"}, "initialSelected": true},
                    {"valueCoding": {"system": SCT, "code": "49727002", "display": "Cough"}}
                ]},
                {"linkId": "pain", "text": "How bad is it?", "type": "open-choice", "answerOption": [
                    {"valueInteger": 1}, {"valueString": "Unbearable"}, {"valueDate": "2024-01-01"}
                ]},
                {"linkId": "onset", "text": "Since when?", "type": "date", "readOnly": false},
                {"linkId": "emergency", "text": "In an emergency, call 911.", "type": "display"}
            ]}
        ]
    })
}

/// One example per type, in `RESOURCE_TYPES` order, about [`PATIENT`].
pub fn examples() -> Vec<Value> {
    vec![
        patient(),
        observation(),
        condition(),
        allergy_intolerance(),
        medication_request(),
        encounter(),
        appointment(),
        diagnostic_report(),
        imaging_study(),
        document_reference(),
        questionnaire_response(),
        consent(),
        communication(),
        task(),
        practitioner(),
        practitioner_role(),
        organization(),
        questionnaire(),
    ]
}

/// The example of `resource_type` about `patient` (a Patient's id, or the patient whose
/// compartment holds it), without an id of its own.
pub fn example(resource_type: &str, patient: &str) -> Option<Value> {
    let found = examples()
        .into_iter()
        .find(|e| e.get("resourceType").and_then(Value::as_str) == Some(resource_type))?;
    // The placeholder id is a UUID no other text in the examples contains.
    let text = found.to_string().replace(PATIENT, patient);
    serde_json::from_str(&text).ok()
}

/// `value` with the element at the JSON pointer `pointer` replaced, added, or (for `null`)
/// removed: a variant of an example, to show what is refused. `None` when the pointer's
/// parent is not in `value`.
pub fn with(mut value: Value, pointer: &str, replacement: Value) -> Option<Value> {
    let (parent, key) = pointer.rsplit_once('/')?;
    match value.pointer_mut(parent)? {
        Value::Object(map) => {
            if replacement.is_null() {
                map.remove(key);
            } else {
                map.insert(key.to_owned(), replacement);
            }
        }
        Value::Array(items) => *items.get_mut(key.parse::<usize>().ok()?)? = replacement,
        _ => return None,
    }
    Some(value)
}
