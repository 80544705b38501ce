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

/// Routes anyone may call: health, and the ways in. Everything else must answer 401 to a
/// caller without credentials.
const PUBLIC_ROUTES: &[&str] = &[
    "/healthz",
    "/readyz",
    "/api/v1/auth/sign-in",
    "/api/v1/auth/enrol",
    "/api/v1/auth/passkeys/sign-in/options",
    "/api/v1/auth/passkeys/sign-in",
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
        let path = route.replace("{id}", &PatientId::generate().to_string());
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Own,
    Other,
    /// An id no record has.
    Missing,
}

/// One request; `{id}` stands for the target patient.
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
    ]
}

/// What the policy allows, as the status a caller sees.
fn expected(role: Role, endpoint: &Endpoint, target: Target) -> StatusCode {
    use Role::*;
    let allowed_read = |ok: StatusCode| match target {
        Target::Missing => StatusCode::NOT_FOUND,
        _ => ok,
    };
    let forbidden = StatusCode::FORBIDDEN;
    match (endpoint.method.as_str(), endpoint.path) {
        ("GET", "/api/v1/patients/{id}") => match role {
            Administrator | FrontDesk | Clinician | Nurse => allowed_read(StatusCode::OK),
            // A patient is refused any id but their own, existing or not: no leak.
            Patient if target == Target::Own => StatusCode::OK,
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
            Administrator | FrontDesk => StatusCode::CREATED,
            _ => forbidden,
        },
        ("GET", "/api/v1/audit/events") | ("GET", "/api/v1/audit/proofs/inclusion?seq=1") => {
            match role {
                Auditor | PrivacyOfficer => StatusCode::OK,
                _ => forbidden,
            }
        }
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
        other => panic!("no expectation for {other:?}"),
    }
}

async fn denials(server: &TestServer) -> usize {
    server
        .app()
        .store()
        .audit_events(0, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event.outcome == haven_audit::Outcome::Denied)
        .count()
}

async fn every_role_gets_exactly_what_the_policy_allows(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.invite(Role::Nurse, None).await; // the organisation exists
    let own = server.create_patient("Own").await;
    let other = server.create_patient("Other").await;
    let missing = PatientId::generate();
    server.app().checkpoint_now().await.unwrap();

    let mut mismatches = Vec::new();
    let mut undenied = Vec::new();
    let mut requests = 0;
    for role in Role::ALL {
        let token = if role == Role::Patient {
            server.patient_token(own).await
        } else {
            server.token(role, 1).await
        };
        for endpoint in endpoints() {
            for (target, id) in [
                (Target::Own, own),
                (Target::Other, other),
                (Target::Missing, missing),
            ] {
                if !endpoint.path.contains("{id}") && target != Target::Own {
                    continue;
                }
                let path = endpoint.path.replace("{id}", &id.to_string());
                let mut request = server
                    .client
                    .request(endpoint.method.clone(), server.endpoint(&path))
                    .bearer_auth(&token);
                if endpoint.method == Method::PUT {
                    // The current version (as an administrator sees it), so an allowed update
                    // succeeds; for a missing record any version will do.
                    let etag = current_etag(&server, &id)
                        .await
                        .unwrap_or("\"1\"".to_owned());
                    request = request.header("if-match", etag);
                }
                if let Some(body) = &endpoint.body {
                    request = request.json(body);
                }
                let before = denials(&server).await;
                let status = request.send().await.unwrap().status();
                requests += 1;
                let want = expected(role, &endpoint, target);
                if status != want {
                    mismatches.push(format!(
                        "{role} {} {path} ({target:?}): got {status}, want {want}",
                        endpoint.method
                    ));
                }
                if status == StatusCode::FORBIDDEN && denials(&server).await <= before {
                    undenied.push(format!("{role} {} {path}", endpoint.method));
                }
            }
        }
    }
    assert!(requests > 100, "{requests} requests");
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
