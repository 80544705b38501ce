//! Haven's HTTP surface. This is the only crate that knows HTTP and JSON.
//!
//! - [`router`] assembles the routes and the middleware every response passes through:
//!   request ids, tracing without query strings or credentials, timeouts, body limits,
//!   compression and security headers.
//! - [`web`] serves the web app's built files and answers its pages' paths.
//! - [`drain`] reads a body refused as too large to its end (bounded), so the client hears
//!   the 413 instead of a reset connection.
//! - [`error::ApiError`] maps every failure to a status and a stable machine-readable code.
//! - [`extract`] turns requests into validated inputs (JSON bodies, ids, the caller), each
//!   failure becoming a clear 4xx that changes nothing.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use haven_app::App;
use http::{HeaderName, HeaderValue, header};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

mod audit;
mod auth;
mod care;
mod drain;
pub mod error;
pub mod extract;
mod fhir;
mod health;
mod messaging;
mod patients;
mod transparency;
pub mod visits;
mod web;

pub use error::ApiError;

/// Limits and switches of the HTTP layer, from the server's configuration.
#[derive(Debug, Clone, Copy)]
pub struct HttpSettings {
    /// The largest request body accepted, in bytes.
    pub body_bytes_max: usize,
    /// How long one request may take before it is answered 408.
    pub request_timeout_secs: u64,
    /// Whether clients reach Haven over HTTPS (directly or via a TLS proxy): sends HSTS.
    pub https: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_bytes_max: 1024 * 1024,
            request_timeout_secs: 30,
            https: false,
        }
    }
}

/// What every handler receives. axum clones the state for every extractor of every
/// request: behind one `Arc`, that is one reference count, where cloning `App` itself
/// touched a dozen, shared by every core (about 3% of a FHIR read's CPU, profiled).
#[derive(Debug, Clone)]
pub struct ApiState {
    pub app: Arc<App>,
    /// Whether clients reach Haven over HTTPS, for the absolute URLs FHIR answers carry.
    pub https: bool,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP application.
pub fn router(app: App, settings: HttpSettings) -> Router {
    let api = Router::new()
        .route(
            "/api/v1/patients",
            get(patients::list).post(patients::create),
        )
        .route(
            "/api/v1/patients/{id}",
            get(patients::read).put(patients::update),
        )
        .route("/api/v1/patients/{id}/care-team", get(care::care_team))
        .route(
            "/api/v1/patients/{id}/care-team/{user}",
            put(care::add_member).delete(care::remove_member),
        )
        .route("/api/v1/patients/{id}/break-glass", post(care::break_glass))
        .route("/api/v1/break-glass", get(care::queue))
        .route("/api/v1/break-glass/{id}/review", post(care::review))
        .route(
            "/api/v1/patients/{id}/delegations",
            get(care::delegations).post(care::offer_delegation),
        )
        .route(
            "/api/v1/patients/{id}/delegations/{delegation}",
            delete(care::revoke_delegation),
        )
        .route("/api/v1/delegations/accept", post(care::accept_delegation))
        .route("/api/v1/notifications", get(care::notifications))
        .route(
            "/api/v1/notifications/{id}/read",
            post(care::notification_read),
        )
        .route("/api/v1/audit/events", get(audit::events))
        .route("/api/v1/audit/checkpoints", get(audit::list))
        .route("/api/v1/audit/checkpoints/latest", get(audit::latest))
        .route(
            "/api/v1/audit/verification",
            get(audit::last_verification).post(audit::verify_now),
        )
        .route(
            "/api/v1/audit/proofs/inclusion",
            get(transparency::inclusion),
        )
        .route(
            "/api/v1/audit/proofs/consistency",
            get(transparency::consistency),
        )
        .route("/api/v1/audit/vkey", get(transparency::vkey))
        .route(
            "/api/v1/patients/{id}/access-log",
            get(transparency::access_log),
        )
        .route("/api/v1/me", get(transparency::me))
        .route("/api/v1/auth/sign-in", post(auth::sign_in))
        .route("/api/v1/auth/enrol", post(auth::enrol))
        .route("/api/v1/auth/second-factor", post(auth::second_factor))
        .route("/api/v1/auth/totp/setup", post(auth::totp_setup))
        .route("/api/v1/auth/totp/confirm", post(auth::totp_confirm))
        .route("/api/v1/auth/session", get(auth::current))
        .route("/api/v1/auth/sign-out", post(auth::sign_out))
        .route(
            "/api/v1/auth/sign-out-everywhere",
            post(auth::sign_out_everywhere),
        )
        .route("/api/v1/auth/sessions", get(auth::sessions))
        .route("/api/v1/auth/sessions/{id}", delete(auth::end_session))
        .route("/api/v1/auth/password", post(auth::change_password))
        .route("/api/v1/invitations", post(auth::invite))
        .route("/api/v1/auth/step-up", post(auth::step_up))
        .route("/api/v1/users", get(auth::users))
        .route("/api/v1/users/{id}/disable", post(auth::disable_user))
        .route("/api/v1/users/{id}/enable", post(auth::enable_user))
        .route(
            "/api/v1/organisation",
            get(auth::organisation).put(auth::update_organisation),
        )
        .route("/api/v1/keys/status", get(auth::key_status))
        .route("/api/v1/auth/passkeys", get(auth::passkeys))
        .route("/api/v1/auth/passkeys/{id}", delete(auth::remove_passkey))
        .route(
            "/api/v1/auth/passkeys/registration/options",
            post(auth::passkey_registration_options),
        )
        .route(
            "/api/v1/auth/passkeys/registration",
            post(auth::passkey_register),
        )
        .route(
            "/api/v1/auth/passkeys/sign-in/options",
            post(auth::passkey_sign_in_options),
        )
        .route("/api/v1/auth/passkeys/sign-in", post(auth::passkey_sign_in))
        .route(
            "/api/v1/devices",
            get(messaging::my_devices).post(messaging::register_device),
        )
        .route("/api/v1/devices/{id}", delete(messaging::remove_device))
        .route(
            "/api/v1/threads",
            get(messaging::threads).post(messaging::start_thread),
        )
        .route("/api/v1/threads/{id}", get(messaging::thread))
        .route(
            "/api/v1/threads/{id}/participants",
            post(messaging::add_participant),
        )
        .route(
            "/api/v1/threads/{id}/participants/{user}",
            delete(messaging::remove_participant),
        )
        .route(
            "/api/v1/threads/{id}/devices",
            get(messaging::thread_devices),
        )
        .route(
            "/api/v1/threads/{id}/messages",
            get(messaging::messages).post(messaging::send_message),
        )
        .route("/api/v1/threads/{id}/read", post(messaging::mark_read))
        .route(
            "/api/v1/threads/{id}/attachments/{attachment}",
            get(messaging::download_attachment).put(messaging::upload_attachment),
        )
        .route("/api/v1/events", get(messaging::events))
        .route("/api/v1/visits/guest-sessions", post(visits::redeem_guest))
        .route("/api/v1/visits/{appointment}", get(visits::status))
        .route(
            "/api/v1/visits/{appointment}/guests",
            get(visits::guests).post(visits::invite_guest),
        )
        .route("/api/v1/visits/{appointment}/signal", get(visits::signal))
        .route("/api/v1/visits/{appointment}/devices", get(visits::devices))
        .route("/fhir", post(fhir::bundle))
        .route("/fhir/metadata", get(fhir::metadata))
        .route("/fhir/Binary", post(fhir::upload_binary))
        .route("/fhir/Binary/{id}", get(fhir::download_binary))
        .route("/fhir/{type}", get(fhir::search).post(fhir::create))
        .route("/fhir/{type}/_history", get(fhir::type_history))
        .route(
            "/fhir/{type}/{id}",
            get(fhir::read).put(fhir::update).delete(fhir::remove),
        )
        .route("/fhir/{type}/{id}/_history", get(fhir::instance_history))
        .route(
            "/fhir/{type}/{id}/{operation}",
            get(fhir::operation).post(fhir::post_operation),
        )
        .route("/fhir/{type}/{id}/_history/{version}", get(fhir::vread))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/assets/{*path}", get(web::asset))
        .fallback(web::fallback)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(ApiState {
            app: Arc::new(app),
            https: settings.https,
        });

    let mut security_headers = vec![
        (
            header::CONTENT_SECURITY_POLICY,
            // The web app's files and the API share one policy: nothing from another
            // origin, no inline script or style, no plugins, and (where the browser has
            // Trusted Types) no HTML string ever becomes markup. The one policy allowed,
            // `haven-worker`, passes only the app's own built scripts as worker URLs (the
            // video visit's frame encryption runs in a worker).
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
             frame-ancestors 'none'; form-action 'self'; \
             require-trusted-types-for 'script'; trusted-types haven-worker",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            HeaderName::from_static("permissions-policy"),
            "camera=(self), microphone=(self), geolocation=(), payment=()",
        ),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ];
    if settings.https {
        security_headers.push((
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=63072000; includeSubDomains",
        ));
    }

    let mut router = api
        .layer(DefaultBodyLimit::max(settings.body_bytes_max))
        .layer(axum::middleware::from_fn(drain::drain_refused_bodies));
    for (name, value) in security_headers {
        router = router.layer(SetResponseHeaderLayer::overriding(
            name,
            HeaderValue::from_static(value),
        ));
    }
    // Health data must not linger in a shared computer's cache or a proxy. Only the web
    // app's hashed files (code and styles) set their own, long, caching.
    router = router.layer(SetResponseHeaderLayer::if_not_present(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    ));

    router.layer(
        ServiceBuilder::new()
            .layer(SetSensitiveRequestHeadersLayer::new([
                header::AUTHORIZATION,
                header::COOKIE,
            ]))
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(
                // The span names the route, never the query string: searches carry names
                // and dates of birth there.
                TraceLayer::new_for_http().make_span_with(|request: &http::Request<_>| {
                    let request_id = request
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    let route = request
                        .extensions()
                        .get::<axum::extract::MatchedPath>()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_else(|| "(unmatched)".to_owned());
                    tracing::info_span!("request", method = %request.method(), route, request_id)
                }),
            )
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(CatchPanicLayer::custom(error::panic_response))
            .layer(TimeoutLayer::with_status_code(
                http::StatusCode::REQUEST_TIMEOUT,
                Duration::from_secs(settings.request_timeout_secs),
            ))
            .layer(CompressionLayer::new()),
    )
}
