//! Every role × every endpoint × the caller's own patient and another patient: exactly the
//! allowed outcomes, every denial in the audit trail, and no answer that tells someone not
//! allowed whether a record exists. On SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use haven_domain::{PatientId, Role};
use haven_test_support::{Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

haven_test_support::on_every_backend!(
    every_role_gets_exactly_what_the_policy_allows,
    every_route_refuses_anonymous_callers_unless_declared_public,
);

/// Routes that act only on the caller's own session or account, with no other user's or
/// patient's id to try: the same for every role, tested in `identity.rs`.
const SELF_SERVICE_ROUTES: &[&str] = &[
    "/api/v1/auth/second-factor",
    "/api/v1/auth/totp/setup",
    "/api/v1/auth/totp/confirm",
    "/api/v1/auth/sign-out",
    "/api/v1/auth/sign-out-everywhere",
    "/api/v1/auth/password",
    "/api/v1/auth/step-up",
    "/api/v1/auth/passkeys/registration/options",
    "/api/v1/auth/passkeys/registration",
];

/// A route with every `{placeholder}` and any query left out, for comparing. A FHIR type
/// name (a capitalised segment, `/fhir/Observation`) stands for the router's `{type}`.
fn shape(route: &str) -> String {
    let route = route.split('?').next().unwrap_or(route);
    let typed: Vec<String> = route
        .split('/')
        .map(|segment| {
            if segment.starts_with(|c: char| c.is_ascii_uppercase()) {
                "{type}".to_owned()
            } else {
                segment.to_owned()
            }
        })
        .collect();
    let typed = typed.join("/");
    let route = typed.as_str();
    let mut shaped = String::new();
    let mut rest = route;
    while let Some(start) = rest.find('{') {
        let end = start + rest[start..].find('}').unwrap();
        shaped.push_str(&rest[..start]);
        shaped.push_str("{}");
        rest = &rest[end + 1..];
    }
    shaped.push_str(rest);
    shaped
}

/// Deny by default, checked: a route the router declares must be in the matrix below (with
/// the outcome for every role), or be public, or act only on the caller's own account.
#[test]
fn every_declared_route_has_a_declared_policy() {
    let covered: Vec<String> = endpoints().iter().map(|e| shape(e.path)).collect();
    let undeclared: Vec<String> = declared_routes()
        .into_iter()
        .filter(|route| {
            !covered.contains(&shape(route))
                && !PUBLIC_ROUTES.contains(&route.as_str())
                && !SELF_SERVICE_ROUTES.contains(&route.as_str())
        })
        .collect();
    assert!(
        undeclared.is_empty(),
        "routes with no expected outcome per role in the access matrix:\n{}",
        undeclared.join("\n")
    );
}

/// Routes anyone may call: health, and the ways in. Everything else must answer 401 to a
/// caller without credentials.
const PUBLIC_ROUTES: &[&str] = &[
    "/healthz",
    "/readyz",
    "/api/v1/auth/sign-in",
    "/api/v1/auth/enrol",
    "/api/v1/auth/passkeys/sign-in/options",
    "/api/v1/auth/passkeys/sign-in",
    // A visit's guest has no account: their invitation is their credential (tested in
    // `visits.rs`).
    "/api/v1/visits/guest-sessions",
    // The CapabilityStatement: what the server offers, no data.
    "/fhir/metadata",
    // The web app's code and styles (the sign-in page needs them before anyone signs in).
    "/assets/{*path}",
];

/// Every route path the router declares, read from its source so that a new route is
/// covered the moment it is added.
fn declared_routes() -> Vec<String> {
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/src/lib.rs"),
    )
    .unwrap();
    let mut routes = Vec::new();
    for (index, _) in source.match_indices(".route(") {
        let rest = &source[index..];
        let start = rest.find('"').unwrap() + 1;
        let end = start + rest[start..].find('"').unwrap();
        routes.push(rest[start..end].to_owned());
    }
    routes
}

async fn every_route_refuses_anonymous_callers_unless_declared_public(backend: Backend) {
    let server = TestServer::start(backend).await;
    let routes = declared_routes();
    assert!(routes.len() >= 25, "{routes:?}");
    let mut open = Vec::new();
    for route in &routes {
        let path = with_ids(route);
        for method in [Method::GET, Method::POST, Method::PUT, Method::DELETE] {
            let status = server
                .client
                .request(method.clone(), server.endpoint(&path))
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .status();
            assert!(!status.is_server_error(), "{method} {route}: {status}");
            let refused =
                status == StatusCode::UNAUTHORIZED || status == StatusCode::METHOD_NOT_ALLOWED;
            if !refused && !PUBLIC_ROUTES.contains(&route.as_str()) {
                open.push(format!("{method} {route}: {status}"));
            }
        }
    }
    assert!(
        open.is_empty(),
        "routes open without credentials:\n{}",
        open.join("\n")
    );
}

/// The route with a fresh id in every `{placeholder}`.
fn with_ids(route: &str) -> String {
    let mut path = String::new();
    let mut rest = route;
    while let Some(start) = rest.find('{') {
        let end = start + rest[start..].find('}').unwrap();
        path.push_str(&rest[..start]);
        path.push_str(&PatientId::generate().to_string());
        rest = &rest[end + 1..];
    }
    path.push_str(rest);
    path
}

/// How the caller authenticates: a person's session, or an operator's API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credential {
    Person,
    Token,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Own,
    Other,
    /// An id no record has.
    Missing,
}

/// One request; `{id}` stands for the target patient, `{obs}` for an Observation in the
/// target patient's chart (`{doomed}` for one that may be deleted; `{first}` for its first version), `{member}` for a
/// clinician who may join a care team, `{stranger}` for someone on no care team, `{glass}`
/// for a pending break-the-glass access, `{notice}` for a notification that is not the
/// caller's. Placeholders in the body are replaced too.
struct Endpoint {
    method: Method,
    path: &'static str,
    body: Option<Value>,
}

fn endpoints() -> Vec<Endpoint> {
    let patient_body = json!({ "name": { "family": "Matrix" }, "birth_date": "1970-01-01" });
    vec![
        Endpoint {
            method: Method::GET,
            path: "/api/v1/patients/{id}",
            body: None,
        },
        Endpoint {
            method: Method::PUT,
            path: "/api/v1/patients/{id}",
            body: Some(patient_body.clone()),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/patients/{id}/access-log",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/patients",
            body: None,
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/patients",
            body: Some(patient_body),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/audit/events",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/audit/verification",
            body: None,
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/audit/verification",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/audit/checkpoints",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/audit/checkpoints/latest",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/audit/proofs/inclusion?seq=1",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/audit/proofs/consistency?first=1",
            body: None,
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/invitations",
            body: Some(json!({ "role": "nurse" })),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/me",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/patients/{id}/care-team",
            body: None,
        },
        Endpoint {
            method: Method::PUT,
            path: "/api/v1/patients/{id}/care-team/{member}",
            body: None,
        },
        Endpoint {
            method: Method::DELETE,
            path: "/api/v1/patients/{id}/care-team/{stranger}",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/break-glass",
            body: None,
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/break-glass/{glass}/review",
            body: Some(json!({ "outcome": "justified" })),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/notifications",
            body: None,
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/notifications/{notice}/read",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/patients/{id}/delegations",
            body: None,
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/patients/{id}/delegations",
            body: Some(json!({ "relationship": "parent", "scopes": ["record"], "days": 30 })),
        },
        Endpoint {
            method: Method::DELETE,
            path: "/api/v1/patients/{id}/delegations/{stranger}",
            body: None,
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/delegations/accept",
            body: Some(json!({ "offer": "hvp_not-an-offer" })),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/users",
            body: None,
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/users/{stranger}/disable",
            body: None,
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/users/{stranger}/enable",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/organisation",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/keys/status",
            body: None,
        },
        // End-to-end messaging: devices and conversations are a person's; `{stranger}`
        // stands for a conversation, device or file the caller has no part in.
        Endpoint {
            method: Method::GET,
            path: "/api/v1/devices",
            body: None,
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/devices",
            // Keys of the wrong length: refused before anything is stored.
            body: Some(json!({
                "label": "Matrix laptop",
                "hpke_public_key": "AAAA",
                "signing_public_key": "AAAA",
                "self_signature": "AAAA",
            })),
        },
        Endpoint {
            method: Method::DELETE,
            path: "/api/v1/devices/{stranger}",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/threads",
            body: None,
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/threads",
            // Nobody to talk to: refused before anything is stored.
            body: Some(json!({ "patient": "{id}", "participants": [] })),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/threads/{stranger}",
            body: None,
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/threads/{stranger}/participants",
            body: Some(json!({ "user": "{member}" })),
        },
        Endpoint {
            method: Method::DELETE,
            path: "/api/v1/threads/{stranger}/participants/{member}",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/threads/{stranger}/devices",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/threads/{stranger}/messages?device={notice}",
            body: None,
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/threads/{stranger}/messages",
            body: Some(json!({
                "id": "{notice}",
                "sender_device": "{notice}",
                "ciphertext": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                "signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
                "keys": [{ "device": "{notice}", "enc": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "sealed_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }],
            })),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/threads/{stranger}/read",
            body: Some(json!({ "seq": 1 })),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/threads/{stranger}/attachments/{notice}",
            body: None,
        },
        Endpoint {
            method: Method::PUT,
            path: "/api/v1/threads/{stranger}/attachments/{notice}",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/events",
            body: None,
        },
        // A visit is entered over its signaling socket; `{stranger}` names no appointment.
        Endpoint {
            method: Method::GET,
            path: "/api/v1/visits/{stranger}",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/visits/{stranger}/signal",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/visits/{stranger}/devices",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/visits/{stranger}/guests",
            body: None,
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/visits/{stranger}/guests",
            body: Some(json!({ "kind": "interpreter" })),
        },
        Endpoint {
            method: Method::PUT,
            path: "/api/v1/organisation",
            body: Some(json!({
                "idle_timeout_secs": 900,
                "absolute_timeout_secs": 43200,
                "patient_mfa_required": false,
            })),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/auth/session",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/auth/sessions",
            body: None,
        },
        Endpoint {
            method: Method::DELETE,
            path: "/api/v1/auth/sessions/{stranger}",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/auth/passkeys",
            body: None,
        },
        Endpoint {
            method: Method::DELETE,
            path: "/api/v1/auth/passkeys/{stranger}",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/audit/vkey",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/fhir/Patient/{id}",
            body: None,
        },
        Endpoint {
            method: Method::PUT,
            path: "/fhir/Patient/{id}",
            body: Some(json!({
                "resourceType": "Patient", "id": "{id}",
                "name": [{"family": "Matrix"}], "birthDate": "1970-01-01"
            })),
        },
        Endpoint {
            method: Method::DELETE,
            path: "/fhir/Patient/{id}",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/fhir/Patient?family=Own",
            body: None,
        },
        Endpoint {
            method: Method::POST,
            path: "/fhir/Patient",
            body: Some(json!({
                "resourceType": "Patient", "name": [{"family": "Matrix"}], "birthDate": "1970-01-01"
            })),
        },
        Endpoint {
            method: Method::GET,
            path: "/fhir/Observation/{obs}",
            body: None,
        },
        Endpoint {
            method: Method::PUT,
            path: "/fhir/Observation/{obs}",
            body: Some(observation_body(Some("{obs}"))),
        },
        Endpoint {
            method: Method::GET,
            path: "/fhir/Observation/{obs}/_history",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/fhir/Observation/{obs}/_history/{first}",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/fhir/Observation?patient={id}",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/fhir/Observation?patient={id}&date=ge2020&_include=Observation:patient",
            body: None,
        },
        Endpoint {
            method: Method::POST,
            path: "/fhir/Observation",
            body: Some(observation_body(None)),
        },
        Endpoint {
            method: Method::GET,
            path: "/fhir/Observation/_history",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/fhir/Appointment?patient={id}",
            body: None,
        },
        Endpoint {
            method: Method::POST,
            path: "/fhir",
            body: Some(json!({
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"resource": observation_body(None), "request": {"method": "POST", "url": "Observation"}}]
            })),
        },
        Endpoint {
            method: Method::GET,
            path: "/fhir/Patient/{id}/{everything}",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/fhir/Patient/{id}/{export}",
            body: None,
        },
        Endpoint {
            method: Method::POST,
            path: "/fhir/Observation/{obs}/{release}",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/fhir/Organization?name=Clinic",
            body: None,
        },
        Endpoint {
            method: Method::POST,
            path: "/fhir/Organization",
            body: Some(json!({"resourceType": "Organization", "name": "Matrix Clinic"})),
        },
        Endpoint {
            method: Method::GET,
            path: "/fhir/AuditEvent?patient={id}",
            body: None,
        },
        // The body of an upload is the file itself (see `check_every_endpoint`).
        Endpoint {
            method: Method::POST,
            path: "/fhir/Binary",
            body: None,
        },
        Endpoint {
            method: Method::GET,
            path: "/fhir/Binary/{file}",
            body: None,
        },
        Endpoint {
            method: Method::DELETE,
            path: "/fhir/Observation/{doomed}",
            body: None,
        },
        // An amendment request about a record of the target's chart.
        Endpoint {
            method: Method::POST,
            path: "/fhir/Task",
            body: Some(json!({
                "resourceType": "Task",
                "status": "requested",
                "intent": "proposal",
                "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "change"}]},
                "focus": {"reference": "Observation/{obs}"},
                "for": {"reference": "Patient/{id}"},
                "input": [{"type": {"text": "Requested correction"}, "valueString": "Taken after exercise."}]
            })),
        },
        // Last: a granted emergency access opens the record for the rest of the run.
        Endpoint {
            method: Method::POST,
            path: "/api/v1/patients/{id}/break-glass",
            body: Some(json!({ "reason": "Unconscious in the emergency department" })),
        },
    ]
}

/// A heart rate in the target patient's chart, with `id` for an update.
fn observation_body(id: Option<&str>) -> Value {
    let mut body = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/{id}"},
        "effectiveDateTime": "2024-03-15",
        "valueQuantity": {"value": 72, "unit": "/min"}
    });
    if let Some(id) = id {
        body["id"] = json!(id);
    }
    body
}

/// What the policy allows, as the status a caller sees. A clinical caller signed in as a
/// person is on the care team of the `Own` patient and of no other.
fn expected(role: Role, credential: Credential, endpoint: &Endpoint, target: Target) -> StatusCode {
    use Role::*;
    let allowed_read = |ok: StatusCode| match target {
        Target::Missing => StatusCode::NOT_FOUND,
        _ => ok,
    };
    let forbidden = StatusCode::FORBIDDEN;
    let person = credential == Credential::Person;
    let clinical = matches!(role, Clinician | Nurse);
    // An integration's token adds patients and chart entries and reads nothing.
    let import = role == Integration && !person;
    match (endpoint.method.as_str(), endpoint.path) {
        ("GET", "/api/v1/patients/{id}") | ("GET", "/api/v1/patients/{id}/care-team") => {
            match role {
                Administrator | FrontDesk => allowed_read(StatusCode::OK),
                // Their care team's patient only; another patient's id is refused, whether
                // it exists or not: no leak. A token is on no care team.
                _ if clinical && person && target == Target::Own => StatusCode::OK,
                // A patient is refused any id but their own, existing or not.
                Patient if target == Target::Own => StatusCode::OK,
                _ => forbidden,
            }
        }
        ("PUT", "/api/v1/patients/{id}/care-team/{member}") => match role {
            // Added, or already a member (the front desk added them first): both succeed.
            Administrator | FrontDesk => allowed_read(StatusCode::OK),
            _ => forbidden,
        },
        ("DELETE", "/api/v1/patients/{id}/care-team/{stranger}") => match role {
            // Allowed, but the stranger is no member to remove.
            Administrator | FrontDesk => StatusCode::NOT_FOUND,
            _ => forbidden,
        },
        ("GET", "/api/v1/break-glass") => match role {
            Auditor | PrivacyOfficer => StatusCode::OK,
            _ => forbidden,
        },
        ("POST", "/api/v1/break-glass/{glass}/review") => match role {
            // A review is a person's judgement: the privacy officer in person.
            PrivacyOfficer if person => StatusCode::OK,
            _ => forbidden,
        },
        ("GET", "/api/v1/patients/{id}/delegations") => match role {
            Administrator | FrontDesk => allowed_read(StatusCode::OK),
            Patient if target == Target::Own => StatusCode::OK,
            _ => forbidden,
        },
        ("POST", "/api/v1/patients/{id}/delegations") => match role {
            Administrator | FrontDesk => allowed_read(StatusCode::CREATED),
            Patient if target == Target::Own => StatusCode::CREATED,
            _ => forbidden,
        },
        ("DELETE", "/api/v1/patients/{id}/delegations/{stranger}") => match role {
            // Allowed, but there is no such delegation to revoke.
            Administrator | FrontDesk => allowed_read(StatusCode::NOT_FOUND),
            Patient if target == Target::Own => StatusCode::NOT_FOUND,
            _ => forbidden,
        },
        ("POST", "/api/v1/delegations/accept") => match role {
            // A patient in person may accept an offer; this one is no offer.
            Patient if person => StatusCode::UNPROCESSABLE_ENTITY,
            _ => forbidden,
        },
        ("GET", "/api/v1/users")
        | ("PUT", "/api/v1/organisation")
        | ("GET", "/api/v1/keys/status") => match role {
            Administrator => StatusCode::OK,
            _ => forbidden,
        },
        ("POST", "/api/v1/users/{stranger}/disable")
        | ("POST", "/api/v1/users/{stranger}/enable") => match role {
            // Allowed, but nobody of the organisation has that id.
            Administrator => StatusCode::NOT_FOUND,
            _ => forbidden,
        },
        ("GET", "/api/v1/organisation") | ("GET", "/api/v1/audit/vkey") => StatusCode::OK,
        // A person's own sessions and passkeys; a token has neither.
        ("GET", "/api/v1/auth/session")
        | ("GET", "/api/v1/auth/sessions")
        | ("GET", "/api/v1/auth/passkeys") => {
            if person {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            }
        }
        // Someone else's session or passkey (or none): not found, for everyone.
        ("DELETE", "/api/v1/auth/sessions/{stranger}")
        | ("DELETE", "/api/v1/auth/passkeys/{stranger}") => {
            if person {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::UNAUTHORIZED
            }
        }
        ("GET", "/api/v1/notifications") => StatusCode::OK,
        // Someone else's notice is nobody's business: not found, for everyone.
        ("POST", "/api/v1/notifications/{notice}/read") => StatusCode::NOT_FOUND,
        ("POST", "/api/v1/patients/{id}/break-glass") => match role {
            _ if clinical && person => match target {
                // Already on the care team: nothing to break.
                Target::Own => StatusCode::CONFLICT,
                Target::Other => StatusCode::CREATED,
                Target::Missing => StatusCode::NOT_FOUND,
            },
            _ => forbidden,
        },
        ("PUT", "/api/v1/patients/{id}") => match role {
            Administrator | FrontDesk => allowed_read(StatusCode::OK),
            _ => forbidden,
        },
        ("GET", "/api/v1/patients/{id}/access-log") => match role {
            Patient if target == Target::Own => StatusCode::OK,
            // Reviewers read any patient's log; an unknown id simply has no entries.
            Auditor | PrivacyOfficer => StatusCode::OK,
            _ => forbidden,
        },
        ("GET", "/api/v1/patients") => match role {
            Administrator | FrontDesk | Clinician | Nurse => StatusCode::OK,
            _ => forbidden,
        },
        ("POST", "/api/v1/patients") => match role {
            _ if import => StatusCode::CREATED,
            Administrator | FrontDesk => StatusCode::CREATED,
            _ => forbidden,
        },
        ("GET", "/api/v1/audit/events")
        | ("GET", "/api/v1/audit/proofs/inclusion?seq=1")
        | ("GET", "/api/v1/audit/verification")
        | ("POST", "/api/v1/audit/verification") => match role {
            Auditor | PrivacyOfficer => StatusCode::OK,
            _ => forbidden,
        },
        ("GET", "/api/v1/audit/checkpoints")
        | ("GET", "/api/v1/audit/checkpoints/latest")
        | ("GET", "/api/v1/audit/proofs/consistency?first=1") => match role {
            Auditor | PrivacyOfficer | Administrator => StatusCode::OK,
            _ => forbidden,
        },
        ("POST", "/api/v1/invitations") => match role {
            Administrator => StatusCode::CREATED,
            _ => forbidden,
        },
        ("GET", "/api/v1/me") => StatusCode::OK,
        ("GET", "/fhir/Patient/{id}") => match role {
            Administrator | FrontDesk => allowed_read(StatusCode::OK),
            _ if clinical && person && target == Target::Own => StatusCode::OK,
            Patient if target == Target::Own => StatusCode::OK,
            _ => forbidden,
        },
        ("PUT", "/fhir/Patient/{id}") => match role {
            Administrator | FrontDesk => allowed_read(StatusCode::OK),
            _ => forbidden,
        },
        // A patient is erased by crypto-shredding, never through the API: for everyone.
        ("DELETE", "/fhir/Patient/{id}") => StatusCode::BAD_REQUEST,
        ("GET", "/fhir/Patient?family=Own") => match role {
            Administrator | FrontDesk | Clinician | Nurse => StatusCode::OK,
            _ => forbidden,
        },
        ("POST", "/fhir/Patient") => match role {
            _ if import => StatusCode::CREATED,
            Administrator | FrontDesk => StatusCode::CREATED,
            _ => forbidden,
        },
        // The clinical chart: the care team (in person) and the patient themself. A missing
        // resource is refused like a stranger's, to everyone: nothing tells them apart.
        ("GET", "/fhir/Observation/{obs}")
        | ("GET", "/fhir/Observation/{obs}/_history")
        | ("GET", "/fhir/Observation/{obs}/_history/{first}")
        | ("GET", "/fhir/Observation?patient={id}")
        | ("GET", "/fhir/Observation?patient={id}&date=ge2020&_include=Observation:patient") => {
            match role {
                _ if clinical && person && target == Target::Own => StatusCode::OK,
                Patient if target == Target::Own => StatusCode::OK,
                _ => forbidden,
            }
        }
        ("PUT", "/fhir/Observation/{obs}") => match role {
            _ if clinical && person && target == Target::Own => StatusCode::OK,
            _ => forbidden,
        },
        ("POST", "/fhir/Observation") => match role {
            _ if import => StatusCode::CREATED,
            _ if clinical && person && target == Target::Own => StatusCode::CREATED,
            _ => forbidden,
        },
        ("POST", "/fhir") => match role {
            _ if import => StatusCode::OK,
            _ if clinical && person && target == Target::Own => StatusCode::OK,
            _ => forbidden,
        },
        // The audit log as FHIR: for reviewers, whoever the patient is.
        ("GET", "/fhir/AuditEvent?patient={id}") => match role {
            Auditor | PrivacyOfficer => StatusCode::OK,
            _ => forbidden,
        },
        // The directory: read by everyone signed in, kept by administrators.
        ("GET", "/fhir/Organization?name=Clinic") => StatusCode::OK,
        ("POST", "/fhir/Organization") => match role {
            Administrator => StatusCode::CREATED,
            _ => forbidden,
        },
        // Files: added and read by the care team and by the patient themself.
        ("POST", "/fhir/Binary") => match role {
            // Into any patient's chart; a patient who does not exist is named as such.
            _ if import && target == Target::Missing => StatusCode::BAD_REQUEST,
            _ if import => StatusCode::CREATED,
            _ if clinical && person && target == Target::Own => StatusCode::CREATED,
            Patient if target == Target::Own => StatusCode::CREATED,
            _ => forbidden,
        },
        ("GET", "/fhir/Binary/{file}") => match role {
            _ if clinical && person && target == Target::Own => StatusCode::OK,
            Patient if target == Target::Own => StatusCode::OK,
            _ => forbidden,
        },
        // Releasing a result to the patient: a change to the chart, by the care team.
        ("POST", "/fhir/Observation/{obs}/{release}") => match role {
            _ if clinical && person && target == Target::Own => StatusCode::NO_CONTENT,
            _ => forbidden,
        },
        // The whole chart: the care team (in person) and the patient themself.
        ("GET", "/fhir/Patient/{id}/{everything}") | ("GET", "/fhir/Patient/{id}/{export}") => {
            match role {
                _ if clinical && person && target == Target::Own => StatusCode::OK,
                Patient if target == Target::Own => StatusCode::OK,
                _ => forbidden,
            }
        }
        // An amendment request: the patient asks; the care team may record one for them.
        ("POST", "/fhir/Task") => match role {
            _ if import => StatusCode::CREATED,
            _ if clinical && person && target == Target::Own => StatusCode::CREATED,
            Patient if target == Target::Own => StatusCode::CREATED,
            _ => forbidden,
        },
        // Deleting is a clinician's call; a deleted resource deleted again is no change.
        ("DELETE", "/fhir/Observation/{doomed}") => match role {
            Clinician if person && target == Target::Own => StatusCode::NO_CONTENT,
            _ => forbidden,
        },
        // The history of every Observation the caller may read: possibly none.
        // A patient's own chart; for clinical staff it would span patients, so it must be
        // read resource by resource (a request error, not a refusal); for others, refused.
        ("GET", "/fhir/Observation/_history") => match role {
            Patient => StatusCode::OK,
            Clinician | Nurse => StatusCode::BAD_REQUEST,
            _ => forbidden,
        },
        // Appointments: the front desk books them for anyone.
        ("GET", "/fhir/Appointment?patient={id}") => match role {
            Administrator | FrontDesk => StatusCode::OK,
            _ if clinical && person && target == Target::Own => StatusCode::OK,
            Patient if target == Target::Own => StatusCode::OK,
            _ => forbidden,
        },
        // A person's own devices and inbox; a token has neither (refused, and recorded).
        ("GET", "/api/v1/devices") | ("GET", "/api/v1/threads") => {
            if person {
                StatusCode::OK
            } else {
                forbidden
            }
        }
        // Malformed keys, or a conversation with nobody: a request error for a person.
        ("POST", "/api/v1/devices") | ("POST", "/api/v1/threads") => {
            if person {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                forbidden
            }
        }
        // Someone else's device or a conversation the caller is not in: not found, so
        // nobody learns which conversations exist.
        ("DELETE", "/api/v1/devices/{stranger}")
        | ("GET", "/api/v1/threads/{stranger}")
        | ("POST", "/api/v1/threads/{stranger}/participants")
        | ("DELETE", "/api/v1/threads/{stranger}/participants/{member}")
        | ("GET", "/api/v1/threads/{stranger}/devices")
        | ("GET", "/api/v1/threads/{stranger}/messages?device={notice}")
        | ("POST", "/api/v1/threads/{stranger}/messages")
        | ("POST", "/api/v1/threads/{stranger}/read")
        | ("GET", "/api/v1/threads/{stranger}/attachments/{notice}") => {
            if person {
                StatusCode::NOT_FOUND
            } else {
                forbidden
            }
        }
        // A sealed file is `application/octet-stream`: anything else is refused first.
        ("PUT", "/api/v1/threads/{stranger}/attachments/{notice}") => {
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        }
        // Reading a visit reads its appointment: no such appointment for those who may read
        // appointments, a refusal for the rest; a token has no visits.
        ("GET", "/api/v1/visits/{stranger}")
        | ("GET", "/api/v1/visits/{stranger}/guests")
        | ("POST", "/api/v1/visits/{stranger}/guests") => {
            if !person {
                forbidden
            } else {
                match role {
                    Administrator | FrontDesk => StatusCode::NOT_FOUND,
                    _ => forbidden,
                }
            }
        }
        // A plain GET is no WebSocket handshake; a token enters no visit.
        ("GET", "/api/v1/visits/{stranger}/signal") => {
            if person {
                StatusCode::UPGRADE_REQUIRED
            } else {
                forbidden
            }
        }
        // The caller is in no such call: nothing to show, and nothing said about it.
        ("GET", "/api/v1/visits/{stranger}/devices") => {
            if person {
                StatusCode::NOT_FOUND
            } else {
                forbidden
            }
        }
        // A plain GET is no WebSocket handshake; a token has no event stream.
        ("GET", "/api/v1/events") => {
            if person {
                StatusCode::UPGRADE_REQUIRED
            } else {
                forbidden
            }
        }
        other => panic!("no expectation for {other:?}"),
    }
}

/// Moves `cursor` to the end of the audit log; whether any entry it passed is a denial.
async fn denied_since(server: &TestServer, cursor: &mut i64) -> bool {
    let mut denied = false;
    loop {
        let page = server
            .app()
            .store()
            .audit_events(*cursor, 1000)
            .await
            .unwrap();
        let Some(last) = page.last() else {
            return denied;
        };
        *cursor = last.seq;
        denied |= page
            .iter()
            .any(|e| e.event.outcome == haven_audit::Outcome::Denied);
    }
}

async fn every_role_gets_exactly_what_the_policy_allows(backend: Backend) {
    let server = TestServer::start(backend).await;
    let own = server.create_patient("Own").await;
    let other = server.create_patient("Other").await;
    let missing = PatientId::generate();
    let member = server.user(Role::Clinician, None).await;
    // An Observation in each patient's chart (one to read and update, one to delete),
    // written by a clinician on both care teams.
    let author = server.user(Role::Clinician, None).await;
    server.add_to_care_team(own, author.id).await;
    server.add_to_care_team(other, author.id).await;
    let mut charted = Vec::new();
    for patient in [own, other, own, other] {
        let body = observation_body(None)
            .to_string()
            .replace("{id}", &patient.to_string());
        let created = server
            .client
            .post(server.endpoint("/fhir/Observation"))
            .bearer_auth(&author.token)
            .header("content-type", "application/fhir+json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let created: Value = created.json().await.unwrap();
        charted.push(created["id"].as_str().unwrap().to_owned());
    }
    let mut files = Vec::new();
    for patient in [own, other] {
        let uploaded = server
            .client
            .post(server.endpoint("/fhir/Binary"))
            .bearer_auth(&author.token)
            .header("content-type", "text/plain")
            .header("x-security-context", format!("Patient/{patient}"))
            .body("Visit summary.")
            .send()
            .await
            .unwrap();
        assert_eq!(uploaded.status(), StatusCode::CREATED);
        let uploaded: Value = uploaded.json().await.unwrap();
        files.push(uploaded["id"].as_str().unwrap().to_owned());
    }
    let missing_resource = uuid::Uuid::now_v7().to_string();
    let per_target = PerTarget {
        obs: [
            charted[0].clone(),
            charted[1].clone(),
            missing_resource.clone(),
        ],
        doomed: [
            charted[2].clone(),
            charted[3].clone(),
            missing_resource.clone(),
        ],
        file: [files[0].clone(), files[1].clone(), missing_resource],
    };
    // One pending break-the-glass access for the privacy officer to review.
    let responder = server.user(Role::Nurse, None).await;
    let glass = server
        .post_as(
            Some(&responder.token),
            &format!("/api/v1/patients/{other}/break-glass"),
            json!({ "reason": "Collapsed in the waiting room" }),
        )
        .await;
    assert_eq!(glass.status(), StatusCode::CREATED);
    let glass: Value = glass.json().await.unwrap();
    let glass = glass["id"].as_str().unwrap().to_owned();
    server.app().checkpoint_now().await.unwrap();

    let mut mismatches = Vec::new();
    let mut undenied = Vec::new();
    let mut requests = 0;
    for role in Role::ALL {
        for credential in [Credential::Person, Credential::Token] {
            // No person holds the integration role: it cannot be invited.
            if role == Role::Integration && credential == Credential::Person {
                continue;
            }
            let token = match (credential, role) {
                (Credential::Person, Role::Patient) => server.user(role, Some(own)).await.token,
                (Credential::Person, _) => {
                    let user = server.user(role, None).await;
                    if matches!(role, Role::Clinician | Role::Nurse) {
                        server.add_to_care_team(own, user.id).await;
                    }
                    user.token
                }
                (Credential::Token, Role::Patient) => server.patient_token(own).await,
                (Credential::Token, _) => server.token(role, 1).await,
            };
            let caller = Caller {
                role,
                credential,
                token: &token,
            };
            requests += check_every_endpoint(
                &server,
                &caller,
                [own, other, missing],
                &[
                    ("{member}", member.id.to_string()),
                    ("{stranger}", PatientId::generate().to_string()),
                    ("{glass}", glass.clone()),
                    ("{notice}", PatientId::generate().to_string()),
                    ("{first}", "1".to_owned()),
                    ("{everything}", "$everything".to_owned()),
                    ("{export}", "$export".to_owned()),
                    ("{release}", "$release".to_owned()),
                ],
                &per_target,
                &mut mismatches,
                &mut undenied,
            )
            .await;
        }
    }
    assert!(requests > 300, "{requests} requests");
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(
        undenied.is_empty(),
        "denials not audited:\n{}",
        undenied.join("\n")
    );
}

/// Placeholders whose value depends on the target: `[own, other, missing]`.
struct PerTarget {
    obs: [String; 3],
    doomed: [String; 3],
    file: [String; 3],
}

struct Caller<'a> {
    role: Role,
    credential: Credential,
    token: &'a str,
}

/// Sends every endpoint for every target as one caller; returns how many requests it sent.
async fn check_every_endpoint(
    server: &TestServer,
    caller: &Caller<'_>,
    [own, other, missing]: [PatientId; 3],
    placeholders: &[(&str, String)],
    per_target: &PerTarget,
    mismatches: &mut Vec<String>,
    undenied: &mut Vec<String>,
) -> usize {
    let Caller {
        role,
        credential,
        token,
    } = *caller;
    let mut requests = 0;
    let mut cursor = 0;
    {
        for endpoint in endpoints() {
            for (index, (target, id)) in [
                (Target::Own, own),
                (Target::Other, other),
                (Target::Missing, missing),
            ]
            .into_iter()
            .enumerate()
            {
                // An upload names its patient in a header, not in the path.
                let targeted = ["{id}", "{obs}", "{doomed}", "{file}"]
                    .iter()
                    .any(|p| endpoint.path.contains(p))
                    || endpoint.path == "/fhir/Binary";
                if !targeted && target != Target::Own {
                    continue;
                }
                let fill = |text: &str| {
                    let mut text = text
                        .replace("{id}", &id.to_string())
                        .replace("{obs}", &per_target.obs[index])
                        .replace("{doomed}", &per_target.doomed[index])
                        .replace("{file}", &per_target.file[index]);
                    for (placeholder, value) in placeholders {
                        text = text.replace(placeholder, value);
                    }
                    text
                };
                let path = fill(endpoint.path);
                let mut request = server
                    .client
                    .request(endpoint.method.clone(), server.endpoint(&path))
                    .bearer_auth(token);
                if endpoint.method == Method::PUT && endpoint.path.starts_with("/api/") {
                    // The current version (as an administrator sees it), so an allowed update
                    // succeeds; for a missing record any version will do.
                    let etag = current_etag(server, &id)
                        .await
                        .unwrap_or("\"1\"".to_owned());
                    request = request.header("if-match", etag);
                }
                if let Some(body) = &endpoint.body {
                    let body: Value = serde_json::from_str(&fill(&body.to_string())).unwrap();
                    request = request.json(&body);
                }
                if endpoint.path == "/fhir/Binary" {
                    request = request
                        .header("content-type", "text/plain")
                        .header("x-security-context", format!("Patient/{id}"))
                        .body("Results discussed by video.");
                }
                denied_since(server, &mut cursor).await;
                let mut status = request.send().await.unwrap().status();
                requests += 1;
                let want = expected(role, credential, &endpoint, target);
                // Adding a member is idempotent: 201 the first time, 200 after.
                if endpoint.method == Method::PUT
                    && endpoint.path.contains("{member}")
                    && status == StatusCode::CREATED
                {
                    status = StatusCode::OK;
                }
                if status != want {
                    mismatches.push(format!(
                        "{role} ({credential:?}) {} {path} ({target:?}): got {status}, want {want}",
                        endpoint.method
                    ));
                }
                if status == StatusCode::FORBIDDEN && !denied_since(server, &mut cursor).await {
                    undenied.push(format!(
                        "{role} ({credential:?}) {} {path}",
                        endpoint.method
                    ));
                }
            }
        }
    }
    requests
}

async fn current_etag(server: &TestServer, id: &PatientId) -> Option<String> {
    let read = server
        .client
        .get(server.endpoint(&format!("/api/v1/patients/{id}")))
        .bearer_auth(&server.admin_token)
        .send()
        .await
        .unwrap();
    read.headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned())
}
