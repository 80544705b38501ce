//! Every resource type Haven serves: a realistic example of each parses and comes back
//! whole, lands in the right compartment and offers only the search values its type
//! declares; invalid ones are refused at the offending element.

#![recursion_limit = "256"]

use haven_fhir::{Compartment, RESOURCE_TYPES, SearchValue, parse, search_params};
use serde_json::{Value, json};

const PATIENT: &str = "0190c2a4-9d7e-7c3a-8f1e-123456789abc";
const SCT: &str = "http://snomed.info/sct";
const LOINC: &str = "http://loinc.org";
const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
const UCUM: &str = "http://unitsofmeasure.org";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";

fn patient_ref() -> Value {
    json!({"reference": format!("Patient/{PATIENT}"), "display": "Ana Rivera"})
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN-1"}],
        "name": [{"family": "Rivera", "given": ["Ana"]}],
        "gender": "female",
        "birthDate": "1984-07-02"
    })
}

fn observation() -> Value {
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

fn condition() -> Value {
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

fn allergy_intolerance() -> Value {
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

fn medication_request() -> Value {
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

fn encounter() -> Value {
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

fn appointment() -> Value {
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

fn diagnostic_report() -> Value {
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

fn imaging_study() -> Value {
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

fn document_reference() -> Value {
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

fn questionnaire_response() -> Value {
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

fn consent() -> Value {
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

fn communication() -> Value {
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

fn practitioner() -> Value {
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

fn practitioner_role() -> Value {
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

fn organization() -> Value {
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

fn questionnaire() -> Value {
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

/// One example per type, in `RESOURCE_TYPES` order.
fn examples() -> Vec<Value> {
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
        practitioner(),
        practitioner_role(),
        organization(),
        questionnaire(),
    ]
}

fn expected_compartment(resource_type: &str) -> Compartment<'static> {
    match resource_type {
        "Patient" => Compartment::Itself,
        "AllergyIntolerance" | "Consent" => Compartment::Patient {
            element: "patient",
            id: PATIENT,
        },
        "Appointment" => Compartment::Patient {
            element: "participant.actor",
            id: PATIENT,
        },
        "Practitioner" | "PractitionerRole" | "Organization" | "Questionnaire" => Compartment::None,
        _ => Compartment::Patient {
            element: "subject",
            id: PATIENT,
        },
    }
}

/// `value` with the element at `pointer` replaced, added, or (for `null`) removed.
fn with(mut value: Value, pointer: &str, replacement: Value) -> Value {
    let (parent, key) = pointer
        .rsplit_once('/')
        .unwrap_or_else(|| panic!("{pointer} is not a JSON pointer"));
    let target = value
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no {parent}"));
    match target {
        Value::Object(map) => {
            if replacement.is_null() {
                map.remove(key);
            } else {
                map.insert(key.to_owned(), replacement);
            }
        }
        Value::Array(items) => {
            let at: usize = key
                .parse()
                .unwrap_or_else(|_| panic!("{key} is not an index"));
            items[at] = replacement;
        }
        _ => panic!("{pointer} is not in an object or array"),
    }
    value
}

#[test]
fn every_type_has_an_example_that_round_trips_unchanged() {
    let examples = examples();
    let types: Vec<&str> = examples
        .iter()
        .map(|e| e["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types, RESOURCE_TYPES,
        "one example per served type, in order"
    );
    for value in examples {
        let resource = parse(value.to_string().as_bytes())
            .unwrap_or_else(|invalid| panic!("{} refused: {invalid}", value["resourceType"]));
        assert_eq!(resource.to_value(), value);
        assert_eq!(
            resource.compartment(),
            expected_compartment(resource.resource_type()),
            "{}",
            resource.resource_type()
        );
    }
}

#[test]
fn every_search_value_uses_a_declared_parameter_of_its_kind() {
    for value in examples() {
        let resource = parse(value.to_string().as_bytes()).unwrap();
        let kind = resource.resource_type();
        let params = search_params(kind).unwrap();
        let index = resource.index();
        for (name, value) in &index.values {
            let param = params
                .iter()
                .find(|p| p.name == *name)
                .unwrap_or_else(|| panic!("{kind}: `{name}` is indexed but not declared"));
            let matches = match value {
                SearchValue::Token { .. } => param.kind == haven_fhir::ParamKind::Token,
                SearchValue::String(_) => param.kind == haven_fhir::ParamKind::String,
                SearchValue::Date(_) => param.kind == haven_fhir::ParamKind::Date,
                SearchValue::Reference { .. } => param.kind == haven_fhir::ParamKind::Reference,
            };
            assert!(
                matches,
                "{kind}: `{name}` is declared {:?} but indexed as {value:?}",
                param.kind
            );
        }
        // The examples are rich enough to exercise every declared parameter.
        for param in params {
            assert!(
                index.values.iter().any(|(name, _)| *name == param.name),
                "{kind}: the example offers no value for `{}`",
                param.name
            );
            assert!(
                param
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{kind}: `{}` is not a FHIR parameter name",
                param.name
            );
        }
    }
}

#[test]
fn patient_compartment_references_are_searchable_as_patient() {
    for value in examples() {
        let resource = parse(value.to_string().as_bytes()).unwrap();
        if let Compartment::Patient { id, .. } = resource.compartment() {
            let index = resource.index();
            let found = index.values.iter().any(|(name, value)| {
                *name == "patient"
                    && *value
                        == SearchValue::Reference {
                            resource_type: "Patient",
                            id,
                        }
            });
            assert!(
                found,
                "{}: not found by patient={id}",
                resource.resource_type()
            );
        }
    }
}

#[test]
fn invalid_resources_name_the_element() {
    let cases: Vec<(Value, &str, &str)> = vec![
        // Condition
        (
            with(
                condition(),
                "/clinicalStatus/coding/0/code",
                json!("healed"),
            ),
            "Condition.clinicalStatus.coding[0].code",
            "not an allowed code",
        ),
        (
            with(
                condition(),
                "/clinicalStatus/coding/0/system",
                json!("http://snomed.info/sct"),
            ),
            "Condition.clinicalStatus",
            "needs a coding from",
        ),
        (
            with(
                condition(),
                "/clinicalStatus/coding/0/code",
                json!("active"),
            ),
            "Condition.abatement[x]",
            "con-4",
        ),
        (
            with(
                condition(),
                "/verificationStatus/coding/0/code",
                json!("entered-in-error"),
            ),
            "Condition.clinicalStatus",
            "con-5",
        ),
        (
            with(condition(), "/onsetString", json!("Last week")),
            "Condition.onset[x]",
            "only one",
        ),
        (
            with(condition(), "/subject", Value::Null),
            "Condition.subject",
            "required",
        ),
        (
            with(
                condition(),
                "/subject/reference",
                json!("Practitioner/dr-lopez"),
            ),
            "Condition.subject.reference",
            "Patient",
        ),
        (
            with(condition(), "/encounter/reference", json!("Patient/x")),
            "Condition.encounter.reference",
            "Encounter",
        ),
        (
            with(condition(), "/recordedDate", json!("2024-03-15 10:40")),
            "Condition.recordedDate",
            "dateTime",
        ),
        (
            with(condition(), "/stage", json!([{"summary": {"text": "I"}}])),
            "Condition.stage",
            "unknown",
        ),
        // AllergyIntolerance
        (
            with(allergy_intolerance(), "/category/0", json!("pollen")),
            "AllergyIntolerance.category[0]",
            "not an allowed code",
        ),
        (
            with(allergy_intolerance(), "/criticality", json!("severe")),
            "AllergyIntolerance.criticality",
            "low, high, unable-to-assess",
        ),
        (
            with(
                allergy_intolerance(),
                "/reaction/0/manifestation",
                Value::Null,
            ),
            "AllergyIntolerance.reaction[0].manifestation",
            "required",
        ),
        (
            with(
                allergy_intolerance(),
                "/reaction/0/severity",
                json!("extreme"),
            ),
            "AllergyIntolerance.reaction[0].severity",
            "mild, moderate, severe",
        ),
        (
            with(allergy_intolerance(), "/clinicalStatus", Value::Null),
            "AllergyIntolerance.clinicalStatus",
            "ait-1",
        ),
        (
            with(allergy_intolerance(), "/onsetDateTime", json!("2000")),
            "AllergyIntolerance.onset[x]",
            "only one",
        ),
        (
            with(
                allergy_intolerance(),
                "/patient/reference",
                json!("Group/family-1"),
            ),
            "AllergyIntolerance.patient.reference",
            "Patient",
        ),
        // MedicationRequest
        (
            with(medication_request(), "/intent", json!("prescription")),
            "MedicationRequest.intent",
            "not an allowed code",
        ),
        (
            with(medication_request(), "/status", Value::Null),
            "MedicationRequest.status",
            "required",
        ),
        (
            with(
                medication_request(),
                "/medicationCodeableConcept",
                Value::Null,
            ),
            "MedicationRequest.medication[x]",
            "required",
        ),
        (
            with(
                medication_request(),
                "/medicationReference",
                json!({"reference": "Medication/amox"}),
            ),
            "MedicationRequest.medication[x]",
            "only one",
        ),
        (
            with(
                with(
                    medication_request(),
                    "/medicationCodeableConcept",
                    Value::Null,
                ),
                "/medicationReference",
                json!({"reference": "Substance/amox"}),
            ),
            "MedicationRequest.medicationReference.reference",
            "Medication",
        ),
        (
            with(
                medication_request(),
                "/substitution/allowedBoolean",
                Value::Null,
            ),
            "MedicationRequest.substitution.allowedBoolean",
            "required",
        ),
        (
            with(medication_request(), "/priority", json!("high")),
            "MedicationRequest.priority",
            "routine, urgent, asap, stat",
        ),
        (
            with(
                medication_request(),
                "/dispenseRequest/numberOfRepeatsAllowed",
                json!(-1),
            ),
            "MedicationRequest.dispenseRequest.numberOfRepeatsAllowed",
            "invalid value",
        ),
        // Encounter
        (
            with(encounter(), "/status", json!("done")),
            "Encounter.status",
            "not an allowed code",
        ),
        (
            with(encounter(), "/class", Value::Null),
            "Encounter.class",
            "required",
        ),
        (
            with(encounter(), "/class", json!({"coding": [{"code": "VR"}]})),
            "Encounter.class.coding",
            "unknown",
        ),
        (
            with(
                encounter(),
                "/participant/0/individual/reference",
                json!("Patient/x"),
            ),
            "Encounter.participant[0].individual.reference",
            "Practitioner",
        ),
        (
            with(encounter(), "/period/start", json!("2024-03-15T10:30")),
            "Encounter.period.start",
            "dateTime",
        ),
        // Appointment
        (
            with(appointment(), "/status", json!("confirmed")),
            "Appointment.status",
            "not an allowed code",
        ),
        (
            with(
                appointment(),
                "/participant/1/actor/reference",
                json!("Patient/other"),
            ),
            "Appointment.participant",
            "exactly one",
        ),
        (
            with(
                appointment(),
                "/participant/0/actor/reference",
                json!("RelatedPerson/mother"),
            ),
            "Appointment.participant",
            "exactly one",
        ),
        (
            with(appointment(), "/end", json!("2024-03-22T08:59:00+01:00")),
            "Appointment.end",
            "after start",
        ),
        (
            with(appointment(), "/end", json!("2024-03-22T07:59:00Z")),
            "Appointment.end",
            "after start",
        ),
        (
            with(appointment(), "/end", Value::Null),
            "Appointment.end",
            "app-2",
        ),
        (
            with(
                with(appointment(), "/end", Value::Null),
                "/start",
                Value::Null,
            ),
            "Appointment.start",
            "app-3",
        ),
        (
            with(
                appointment(),
                "/cancelationReason",
                json!({"text": "Patient ill"}),
            ),
            "Appointment.cancelationReason",
            "app-4",
        ),
        (
            with(appointment(), "/participant/0/status", Value::Null),
            "Appointment.participant[0].status",
            "required",
        ),
        (
            with(appointment(), "/participant/0/required", json!("mandatory")),
            "Appointment.participant[0].required",
            "not an allowed code",
        ),
        (
            with(
                appointment(),
                "/participant/1/actor/reference",
                json!("Organization/clinic"),
            ),
            "Appointment.participant[1].actor.reference",
            "Practitioner",
        ),
        (
            with(appointment(), "/minutesDuration", json!(0)),
            "Appointment.minutesDuration",
            "positiveInt",
        ),
        (
            with(appointment(), "/start", json!("2024-03-22")),
            "Appointment.start",
            "instant",
        ),
        (
            with(appointment(), "/participant", json!([])),
            "Appointment.participant",
            "empty array",
        ),
        // DiagnosticReport
        (
            with(diagnostic_report(), "/status", json!("done")),
            "DiagnosticReport.status",
            "not an allowed code",
        ),
        (
            with(diagnostic_report(), "/code", Value::Null),
            "DiagnosticReport.code",
            "required",
        ),
        (
            with(
                diagnostic_report(),
                "/effectivePeriod",
                json!({"start": "2024-03-14"}),
            ),
            "DiagnosticReport.effective[x]",
            "only one",
        ),
        (
            with(
                diagnostic_report(),
                "/result/1/reference",
                json!("DiagnosticReport/other"),
            ),
            "DiagnosticReport.result[1].reference",
            "Observation",
        ),
        (
            with(diagnostic_report(), "/issued", json!("2024-03-14")),
            "DiagnosticReport.issued",
            "instant",
        ),
        // ImagingStudy
        (
            with(imaging_study(), "/status", json!("complete")),
            "ImagingStudy.status",
            "not an allowed code",
        ),
        (
            with(imaging_study(), "/series/0/modality", Value::Null),
            "ImagingStudy.series[0].modality",
            "required",
        ),
        (
            with(
                imaging_study(),
                "/series/0/instance/1/sopClass",
                Value::Null,
            ),
            "ImagingStudy.series[0].instance[1].sopClass",
            "required",
        ),
        (
            with(imaging_study(), "/numberOfSeries", json!(-1)),
            "ImagingStudy.numberOfSeries",
            "invalid value",
        ),
        (
            with(
                imaging_study(),
                "/modality/0",
                json!({"coding": [{"code": "XC"}]}),
            ),
            "ImagingStudy.modality[0].coding",
            "unknown",
        ),
        (
            with(
                imaging_study(),
                "/subject/reference",
                json!("Device/camera"),
            ),
            "ImagingStudy.subject.reference",
            "Patient",
        ),
        // DocumentReference
        (
            with(document_reference(), "/status", json!("final")),
            "DocumentReference.status",
            "current, superseded, entered-in-error",
        ),
        (
            with(document_reference(), "/docStatus", json!("draft")),
            "DocumentReference.docStatus",
            "not an allowed code",
        ),
        (
            with(document_reference(), "/content", Value::Null),
            "DocumentReference.content",
            "required",
        ),
        (
            with(document_reference(), "/content/0/attachment", Value::Null),
            "DocumentReference.content[0].attachment",
            "required",
        ),
        (
            with(document_reference(), "/date", json!("2024-03-15")),
            "DocumentReference.date",
            "instant",
        ),
        (
            with(
                document_reference(),
                "/custodian/reference",
                json!("Practitioner/dr-lopez"),
            ),
            "DocumentReference.custodian.reference",
            "Organization",
        ),
        (
            with(
                document_reference(),
                "/content/0/attachment/data",
                json!("not base64!"),
            ),
            "DocumentReference.content[0].attachment.data",
            "base64",
        ),
        // QuestionnaireResponse
        (
            with(questionnaire_response(), "/status", json!("done")),
            "QuestionnaireResponse.status",
            "not an allowed code",
        ),
        (
            with(
                questionnaire_response(),
                "/item/0/answer/0/valueBoolean",
                json!(true),
            ),
            "QuestionnaireResponse.item[0].answer[0].value[x]",
            "only one",
        ),
        (
            with(questionnaire_response(), "/item/0/answer/0", json!({})),
            "QuestionnaireResponse.item[0].answer[0].value[x]",
            "required",
        ),
        (
            with(
                questionnaire_response(),
                "/item/1/item/0/answer/0/item/0/answer/0/valueString",
                json!("38.4"),
            ),
            "QuestionnaireResponse.item[1].item[0].answer[0].item[0].answer[0].value[x]",
            "only one",
        ),
        (
            with(
                questionnaire_response(),
                "/item/1/item/2/linkId",
                Value::Null,
            ),
            "QuestionnaireResponse.item[1].item[2].linkId",
            "required",
        ),
        (
            with(
                questionnaire_response(),
                "/item/1/item/2/answer/0/valueDate",
                json!("2024-03-10T08:00:00Z"),
            ),
            "QuestionnaireResponse.item[1].item[2].answer[0].valueDate",
            "date",
        ),
        (
            with(
                questionnaire_response(),
                "/item/0/item",
                json!([{"linkId": "x"}]),
            ),
            "QuestionnaireResponse.item[0]",
            "qrs-1",
        ),
        (
            with(questionnaire_response(), "/subject", Value::Null),
            "QuestionnaireResponse.subject",
            "required",
        ),
        (
            with(questionnaire_response(), "/identifier", json!("QR-314")),
            "QuestionnaireResponse.identifier",
            "invalid type",
        ),
        // Consent
        (
            with(consent(), "/status", json!("signed")),
            "Consent.status",
            "not an allowed code",
        ),
        (
            with(consent(), "/category", Value::Null),
            "Consent.category",
            "required",
        ),
        (
            with(consent(), "/scope", Value::Null),
            "Consent.scope",
            "required",
        ),
        (
            with(consent(), "/provision/type", json!("allow")),
            "Consent.provision.type",
            "deny, permit",
        ),
        (
            with(consent(), "/provision/provision/0/type", json!("allow")),
            "Consent.provision.provision[0].type",
            "deny, permit",
        ),
        (
            with(consent(), "/provision/actor/0/reference", Value::Null),
            "Consent.provision.actor[0].reference",
            "required",
        ),
        (
            with(consent(), "/policyRule", Value::Null),
            "Consent.policyRule",
            "ppc-1",
        ),
        (
            with(
                consent(),
                "/patient/reference",
                json!("Practitioner/dr-lopez"),
            ),
            "Consent.patient.reference",
            "Patient",
        ),
        // Communication
        (
            with(communication(), "/status", json!("sent")),
            "Communication.status",
            "not an allowed code",
        ),
        (
            with(
                communication(),
                "/payload/0/contentAttachment",
                json!({"url": "https://haven.example/a"}),
            ),
            "Communication.payload[0].content[x]",
            "only one",
        ),
        (
            with(communication(), "/payload/1", json!({})),
            "Communication.payload[1].content[x]",
            "required",
        ),
        (
            with(
                communication(),
                "/sender/reference",
                json!("Observation/obs-1"),
            ),
            "Communication.sender.reference",
            "Practitioner",
        ),
        (
            with(
                communication(),
                "/recipient/0/reference",
                json!("Encounter/enc-1"),
            ),
            "Communication.recipient[0].reference",
            "Patient",
        ),
        (
            with(communication(), "/sent", json!("16/03/2024")),
            "Communication.sent",
            "dateTime",
        ),
        // Practitioner
        (
            with(practitioner(), "/gender", json!("f")),
            "Practitioner.gender",
            "male, female, other, unknown",
        ),
        (
            with(practitioner(), "/qualification/0/code", Value::Null),
            "Practitioner.qualification[0].code",
            "required",
        ),
        (
            with(
                practitioner(),
                "/qualification/0/issuer/reference",
                json!("Practitioner/x"),
            ),
            "Practitioner.qualification[0].issuer.reference",
            "Organization",
        ),
        (
            with(practitioner(), "/birthDate", json!("1979-13-01")),
            "Practitioner.birthDate",
            "date",
        ),
        (
            with(practitioner(), "/photo", json!([{"url": "https://x"}])),
            "Practitioner.photo",
            "unknown",
        ),
        // PractitionerRole
        (
            with(
                practitioner_role(),
                "/practitioner/reference",
                json!("Patient/x"),
            ),
            "PractitionerRole.practitioner.reference",
            "Practitioner",
        ),
        (
            with(
                practitioner_role(),
                "/organization/reference",
                json!("Organization/"),
            ),
            "PractitionerRole.organization.reference",
            "Organization",
        ),
        (
            with(practitioner_role(), "/specialty", json!({"text": "GP"})),
            "PractitionerRole.specialty",
            "invalid type",
        ),
        (
            with(
                practitioner_role(),
                "/location",
                json!([{"reference": "Location/1"}]),
            ),
            "PractitionerRole.location",
            "unknown",
        ),
        // Organization
        (
            with(
                with(organization(), "/name", Value::Null),
                "/identifier",
                Value::Null,
            ),
            "Organization",
            "org-1",
        ),
        (
            with(organization(), "/telecom/0/use", json!("home")),
            "Organization.telecom[0].use",
            "org-3",
        ),
        (
            with(organization(), "/address/0/use", json!("home")),
            "Organization.address[0].use",
            "org-2",
        ),
        (
            with(organization(), "/partOf/reference", json!("Patient/x")),
            "Organization.partOf.reference",
            "Organization",
        ),
        (
            with(organization(), "/name", json!("  ")),
            "Organization.name",
            "empty",
        ),
        // Questionnaire
        (
            with(questionnaire(), "/status", Value::Null),
            "Questionnaire.status",
            "required",
        ),
        (
            with(questionnaire(), "/status", json!("published")),
            "Questionnaire.status",
            "draft, active, retired, unknown",
        ),
        (
            with(questionnaire(), "/item/1/item", Value::Null),
            "Questionnaire.item[1]",
            "group",
        ),
        (
            with(
                questionnaire(),
                "/item/1/item/4/item",
                json!([{"linkId": "x", "type": "string"}]),
            ),
            "Questionnaire.item[1].item[4]",
            "display",
        ),
        (
            with(questionnaire(), "/item/1/item/0/linkId", json!("notes")),
            "Questionnaire.item[1].item[0].linkId",
            "unique",
        ),
        (
            with(questionnaire(), "/item/0/type", json!("number")),
            "Questionnaire.item[0].type",
            "not an allowed code",
        ),
        (
            with(questionnaire(), "/item/0/linkId", Value::Null),
            "Questionnaire.item[0].linkId",
            "required",
        ),
        (
            with(
                questionnaire(),
                "/item/1/item/1/answerOption/0/valueString",
                json!("Sore throat"),
            ),
            "Questionnaire.item[1].item[1].answerOption[0].value[x]",
            "only one",
        ),
        (
            with(
                questionnaire(),
                "/item/1/item/1/answerOption/1",
                json!({"initialSelected": false}),
            ),
            "Questionnaire.item[1].item[1].answerOption[1].value[x]",
            "required",
        ),
        (
            with(
                questionnaire(),
                "/item/1/item/0/answerOption",
                json!([{"valueString": "yes"}]),
            ),
            "Questionnaire.item[1].item[0].answerOption",
            "que-5",
        ),
        (
            with(questionnaire(), "/item/1/item/4/required", json!(true)),
            "Questionnaire.item[1].item[4]",
            "que-6",
        ),
        (
            with(questionnaire(), "/item/1/item/3/maxLength", json!(10)),
            "Questionnaire.item[1].item[3].maxLength",
            "que-10",
        ),
    ];
    let mut failures = Vec::new();
    let mut per_type = std::collections::BTreeMap::<String, usize>::new();
    for (value, path, fragment) in cases {
        *per_type
            .entry(value["resourceType"].as_str().unwrap().to_owned())
            .or_default() += 1;
        match parse(value.to_string().as_bytes()) {
            Ok(_) => failures.push(format!("{path}: accepted\n  {value}")),
            Err(invalid) if invalid.path != path || !invalid.message.contains(fragment) => {
                failures.push(format!("expected {path}: …{fragment}…\n  got {invalid}"));
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for kind in RESOURCE_TYPES {
        if *kind != "Patient" && *kind != "Observation" {
            assert!(
                per_type.get(*kind).copied().unwrap_or(0) >= 2,
                "{kind}: fewer than two invalid cases"
            );
        }
    }
}
