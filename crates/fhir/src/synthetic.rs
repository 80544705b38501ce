//! Synthetic charts, in the manner of Synthea: for a patient, a few years of telemedicine
//! care as one `transaction` Bundle of about a hundred resources (visits with vital signs,
//! laboratory panels with their reports, visit notes, problems, prescriptions, allergies,
//! appointments, an intake form, messages, a consent). For demonstrations and benchmarks;
//! deterministic for a given seed, so two runs load the same data. No real person's data.

use serde_json::{Value, json};

use crate::examples;

const LOINC: &str = "http://loinc.org";
const SCT: &str = "http://snomed.info/sct";
const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
const UCUM: &str = "http://unitsofmeasure.org";
const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// Visits per chart; each has six vital signs and a note, every other one a lab panel.
pub const VISITS: usize = 8;

/// Problems a chart draws from: (SNOMED CT code, display).
const PROBLEMS: &[(&str, &str)] = &[
    ("38341003", "Hypertensive disorder"),
    ("44054006", "Diabetes mellitus type 2"),
    ("195967001", "Asthma"),
    ("55822004", "Hyperlipidemia"),
    ("197480006", "Anxiety disorder"),
    ("35489007", "Depressive disorder"),
    ("396275006", "Osteoarthritis"),
    ("73430006", "Sleep apnea"),
];

/// Medications: (RxNorm code, display).
const MEDICATIONS: &[(&str, &str)] = &[
    ("314076", "Lisinopril 10 MG Oral Tablet"),
    ("860975", "Metformin hydrochloride 500 MG Oral Tablet"),
    ("745679", "Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"),
    ("617312", "Atorvastatin 10 MG Oral Tablet"),
    ("312938", "Sertraline 50 MG Oral Tablet"),
    ("197361", "Amlodipine 5 MG Oral Tablet"),
];

/// Allergens: (RxNorm or SNOMED CT system, code, display, category).
const ALLERGENS: &[(&str, &str, &str, &str)] = &[
    (RXNORM, "7980", "Penicillin G", "medication"),
    (SCT, "91935009", "Peanut allergy", "food"),
    (SCT, "300913006", "Shellfish allergy", "food"),
    (RXNORM, "10831", "Sulfamethoxazole", "medication"),
];

/// A measurement a chart records: its LOINC code and name, unit (as written and in UCUM),
/// typical value and spread, and for a laboratory result its reference range.
struct Measure {
    code: &'static str,
    display: &'static str,
    unit: &'static str,
    ucum: &'static str,
    mean: f64,
    spread: f64,
    range: (f64, f64),
}

const fn measure(
    code: &'static str,
    display: &'static str,
    unit: &'static str,
    ucum: &'static str,
    (mean, spread): (f64, f64),
    range: (f64, f64),
) -> Measure {
    Measure {
        code,
        display,
        unit,
        ucum,
        mean,
        spread,
        range,
    }
}

const VITALS: &[Measure] = &[
    measure(
        "8867-4",
        "Heart rate",
        "beats/minute",
        "/min",
        (74.0, 12.0),
        (60.0, 100.0),
    ),
    measure(
        "8310-5",
        "Body temperature",
        "°C",
        "Cel",
        (36.8, 0.5),
        (36.1, 37.2),
    ),
    measure(
        "9279-1",
        "Respiratory rate",
        "breaths/minute",
        "/min",
        (15.0, 3.0),
        (12.0, 20.0),
    ),
    measure(
        "59408-5",
        "Oxygen saturation",
        "%",
        "%",
        (97.0, 2.0),
        (95.0, 100.0),
    ),
    measure(
        "29463-7",
        "Body weight",
        "kg",
        "kg",
        (76.0, 14.0),
        (0.0, 0.0),
    ),
];

const LABS: &[Measure] = &[
    measure("4548-4", "Hemoglobin A1c", "%", "%", (6.1, 0.9), (4.0, 5.6)),
    measure(
        "2345-7",
        "Glucose",
        "mg/dL",
        "mg/dL",
        (104.0, 18.0),
        (70.0, 99.0),
    ),
    measure(
        "2093-3",
        "Cholesterol",
        "mg/dL",
        "mg/dL",
        (196.0, 30.0),
        (125.0, 200.0),
    ),
    measure(
        "2160-0",
        "Creatinine",
        "mg/dL",
        "mg/dL",
        (0.95, 0.2),
        (0.6, 1.2),
    ),
    measure(
        "718-7",
        "Hemoglobin",
        "g/dL",
        "g/dL",
        (14.0, 1.4),
        (12.0, 17.5),
    ),
];

/// xorshift64*, seeded per patient: deterministic and dependency-free.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Random {
        Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap_or(1)).unwrap_or(0)
    }

    /// Roughly normal around `mean` (sum of uniforms), rounded to one decimal.
    fn around(&mut self, mean: f64, spread: f64) -> f64 {
        let uniform: f64 = (0..4)
            .map(|_| (self.next() >> 11) as f64 / (1u64 << 53) as f64)
            .sum::<f64>()
            / 4.0;
        ((mean + (uniform - 0.5) * 2.0 * spread) * 10.0).round() / 10.0
    }
}

fn reference(patient: &str) -> Value {
    json!({"reference": format!("Patient/{patient}")})
}

fn post(full_url: String, resource: Value) -> Value {
    let resource_type = resource["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    json!({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": resource_type}})
}

/// A visit date: `visit` months before `year_now`-06, at a clinic hour, UTC.
fn visit_date(seed_day: usize, visit: usize, year_now: i32) -> (String, String) {
    let months_back = (VISITS - visit) * 4;
    let total = i64::from(year_now) * 12 + 5 - i64::try_from(months_back).unwrap_or(0);
    let (year, month) = (total.div_euclid(12), total.rem_euclid(12) + 1);
    let day = 1 + seed_day % 27;
    let hour = 8 + (seed_day + visit) % 9;
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:15:00Z"),
    )
}

/// A chart for `patient` (an id the server gave), as a `transaction` Bundle; `seed` picks
/// the problems, values and dates, `year_now` anchors the dates (the last visit falls in
/// that year).
pub fn chart(patient: &str, seed: u64, year_now: i32) -> Value {
    let mut random = Random::new(seed);
    let mut entries = Vec::new();
    let mut next_urn = 0u32;
    let mut urn = || {
        next_urn += 1;
        format!(
            "urn:uuid:{:08x}-0000-4000-8000-{:012x}",
            seed & 0xffff_ffff,
            next_urn
        )
    };
    let seed_day = random.below(1000);

    // Problems and their prescriptions.
    let first_problem = random.below(PROBLEMS.len());
    for i in 0..4 {
        let (code, display) = PROBLEMS[(first_problem + i * 3) % PROBLEMS.len()];
        let onset = visit_date(seed_day, i, year_now).0;
        entries.push(post(urn(), json!({
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
            "code": {"coding": [{"system": SCT, "code": code, "display": display}]},
            "subject": reference(patient),
            "onsetDateTime": onset,
            "recordedDate": onset
        })));
        let (rx, rx_display) = MEDICATIONS[(first_problem + i) % MEDICATIONS.len()];
        entries.push(post(urn(), json!({
            "resourceType": "MedicationRequest",
            "status": if i == 3 { "completed" } else { "active" },
            "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": rx, "display": rx_display}]},
            "subject": reference(patient),
            "authoredOn": onset,
            "dosageInstruction": [{"text": "One tablet by mouth daily", "route": {"coding": [{"system": SCT, "code": "26643006", "display": "Oral route"}]}}]
        })));
    }
    for i in 0..2 {
        let (system, code, display, category) = ALLERGENS[(first_problem + i) % ALLERGENS.len()];
        entries.push(post(urn(), json!({
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed"}]},
            "type": "allergy",
            "category": [category],
            "criticality": if i == 0 { "high" } else { "low" },
            "code": {"coding": [{"system": system, "code": code, "display": display}]},
            "patient": reference(patient),
            "recordedDate": visit_date(seed_day, 0, year_now).0
        })));
    }

    // Visits: an encounter, vital signs, a note; every other visit a lab panel and report.
    for visit in 0..VISITS {
        let (day, at) = visit_date(seed_day, visit, year_now);
        let encounter_urn = urn();
        entries.push(post(encounter_urn.clone(), json!({
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR", "display": "virtual"},
            "type": [{"coding": [{"system": SCT, "code": "448337001", "display": "Telemedicine consultation with patient"}]}],
            "subject": reference(patient),
            "period": {"start": at, "end": at}
        })));
        let encounter = json!({"reference": encounter_urn});
        for m in VITALS {
            entries.push(post(urn(), json!({
                "resourceType": "Observation",
                "status": "final",
                "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "vital-signs"}]}],
                "code": {"coding": [{"system": LOINC, "code": m.code, "display": m.display}]},
                "subject": reference(patient),
                "encounter": encounter,
                "effectiveDateTime": at,
                "valueQuantity": {"value": random.around(m.mean, m.spread), "unit": m.unit, "system": UCUM, "code": m.ucum}
            })));
        }
        entries.push(post(urn(), json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}]},
            "subject": reference(patient),
            "encounter": encounter,
            "effectiveDateTime": at,
            "component": [
                {"code": {"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]},
                 "valueQuantity": {"value": random.around(128.0, 18.0), "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure"}]},
                 "valueQuantity": {"value": random.around(82.0, 10.0), "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}
            ]
        })));
        if visit % 2 == 1 {
            let mut results = Vec::new();
            for m in LABS {
                let result_urn = urn();
                results.push(json!({"reference": result_urn}));
                let (low, high) = m.range;
                entries.push(post(result_urn, json!({
                    "resourceType": "Observation",
                    "status": "final",
                    "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}],
                    "code": {"coding": [{"system": LOINC, "code": m.code, "display": m.display}]},
                    "subject": reference(patient),
                    "encounter": encounter,
                    "effectiveDateTime": at,
                    "valueQuantity": {"value": random.around(m.mean, m.spread), "unit": m.unit, "system": UCUM, "code": m.ucum},
                    "referenceRange": [{"low": {"value": low, "unit": m.unit, "system": UCUM, "code": m.ucum},
                                        "high": {"value": high, "unit": m.unit, "system": UCUM, "code": m.ucum}}]
                })));
            }
            entries.push(post(urn(), json!({
                "resourceType": "DiagnosticReport",
                "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}],
                "code": {"coding": [{"system": LOINC, "code": "24323-8", "display": "Comprehensive metabolic panel"}]},
                "subject": reference(patient),
                "encounter": encounter,
                "effectiveDateTime": at,
                "result": results,
                "conclusion": "Results reviewed with the patient."
            })));
        }
        let note = format!(
            "Video visit on {day}. Patient reports feeling {}. Vital signs reviewed; plan unchanged. Follow up in four months.",
            [
                "well",
                "tired",
                "better than last time",
                "some shortness of breath"
            ][random.below(4)]
        );
        entries.push(post(urn(), json!({
            "resourceType": "DocumentReference",
            "status": "current",
            "docStatus": "final",
            "type": {"coding": [{"system": LOINC, "code": "11506-3", "display": "Progress note"}]},
            "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "code": "clinical-note"}]}],
            "subject": reference(patient),
            "date": at,
            "description": "Visit note",
            "content": [{"attachment": {"contentType": "text/plain", "data": base64(&note), "title": "Progress note"}}],
            "context": {"encounter": [encounter]}
        })));
    }

    // Scheduling, forms, messages and consent, from the examples with this patient's dates.
    let (_, last_visit) = visit_date(seed_day, VISITS - 1, year_now);
    for resource_type in [
        "Appointment",
        "QuestionnaireResponse",
        "Communication",
        "Consent",
    ] {
        if let Some(mut resource) = examples::example(resource_type, patient) {
            strip_local_references(&mut resource);
            if resource_type == "Appointment" {
                resource["start"] = json!(last_visit);
                resource["end"] = json!(last_visit.replace(":15:00Z", ":35:00Z"));
                resource["status"] = json!("fulfilled");
                resource["participant"][1]["period"] = json!({"start": last_visit});
            }
            entries.push(post(urn(), resource));
        }
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// The examples point at resources of a demonstration clinic (`Encounter/enc-1`); a
/// synthetic chart keeps only references to its patient.
fn strip_local_references(value: &mut Value) {
    if let Value::Object(map) = value {
        for key in [
            "encounter",
            "basedOn",
            "partOf",
            "inResponseTo",
            "recipient",
            "sender",
        ] {
            if map.get(key).is_some_and(|v| {
                v.to_string().contains("Encounter/")
                    || v.to_string().contains("ServiceRequest/")
                    || v.to_string().contains("Procedure/")
                    || v.to_string().contains("Communication/")
            }) {
                map.remove(key);
            }
        }
    }
}

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_about_a_hundred_valid_resources_of_one_patient() {
        let patient = "0190c2a4-9d7e-7c3a-8f1e-000000000001";
        let bundle = chart(patient, 7, 2026);
        let entries = bundle["entry"].as_array().unwrap();
        assert!(
            (90..=130).contains(&entries.len()),
            "{} resources",
            entries.len()
        );
        let parsed = crate::bundle::parse_request(bundle.clone()).unwrap();
        // References between entries are resolved by the server; here, to made-up ids.
        let types: std::collections::HashMap<String, String> = parsed
            .entries
            .iter()
            .map(|e| (e.full_url.clone().unwrap(), format!("{}/x", e.url)))
            .collect();
        for entry in parsed.entries {
            let mut resource = entry.resource.unwrap();
            crate::bundle::resolve_references(&mut resource, &|r| types.get(r).cloned());
            let parsed =
                crate::from_value(resource.clone()).unwrap_or_else(|e| panic!("{e}: {resource}"));
            match parsed.compartment() {
                crate::Compartment::Patient { id, .. } => assert_eq!(id, patient),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(chart(patient, 7, 2026), bundle, "deterministic");
        assert_ne!(chart(patient, 8, 2026), bundle, "the seed matters");
    }
}
