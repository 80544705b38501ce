//! Extractors: requests become validated inputs, or clear 4xx errors.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use haven_app::{RequestContext, tokens::AuthFailure};
use haven_audit::RequestOrigin;
use http::request::Parts;
use http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::{ApiError, ApiState};

/// The longest user agent kept for the audit trail.
const USER_AGENT_CHARS_MAX: usize = 200;
/// The longest client-supplied request id kept for the audit trail.
const REQUEST_ID_CHARS_MAX: usize = 64;

/// A JSON body, strictly parsed: wrong content type, malformed JSON, unknown fields, wrong
/// types and oversized bodies each get their own code.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json")
                    || mime.eq_ignore_ascii_case("application/fhir+json")
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "the request body is larger than this server accepts",
                    )
                } else {
                    ApiError::bad_request("unreadable_body", "the request body could not be read")
                }
            })?;
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut deserializer).map_err(json_error)?;
        deserializer.end().map_err(|e| {
            ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
        })?;
        Ok(JsonBody(value))
    }
}

fn json_error(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            ApiError::bad_request(
                "malformed_json",
                format!("the body is not valid JSON: {inner}"),
            )
        }
        _ => {
            let message = inner.to_string();
            let code = if message.starts_with("unknown field") {
                "unknown_field"
            } else {
                "invalid_body"
            };
            let at = if path == "." {
                String::new()
            } else {
                format!(" at `{path}`")
            };
            ApiError::bad_request(code, format!("{message}{at}"))
        }
    }
}

/// The authenticated caller and where the request came from.
#[derive(Debug, Clone)]
pub struct Caller(pub RequestContext);

/// The peer address, inserted by the server's accept loop.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

pub(crate) fn origin(parts: &Parts) -> RequestOrigin {
    let text = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    RequestOrigin {
        // A client may send its own request id (for tracing across systems); only a short,
        // plain one goes into the audit trail, so no client text can ride along.
        request_id: text("x-request-id").filter(|id| {
            id.len() <= REQUEST_ID_CHARS_MAX
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        }),
        source_ip: parts
            .extensions
            .get::<PeerAddr>()
            .map(|peer| peer.0.ip().to_string()),
        user_agent: text("user-agent").map(|ua| ua.chars().take(USER_AGENT_CHARS_MAX).collect()),
    }
}

/// The name of the session cookie. `__Host-` makes the browser insist on `Secure`, `Path=/`
/// and no `Domain`, so no other host (a sibling subdomain) can set or shadow it.
pub const SESSION_COOKIE: &str = "__Host-haven_session";
/// The header a cookie-authenticated write must carry, with the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How a request presents its credential.
enum Presented<'a> {
    Bearer(&'a str),
    /// A session cookie; `csrf_ok` says whether the request may act (a safe method, or the
    /// right CSRF token).
    Cookie {
        token: String,
        csrf_ok: bool,
    },
}

fn cookie_session(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_owned())
}

fn presented(parts: &Parts) -> Result<Presented<'_>, ApiError> {
    if let Some(header) = parts.headers.get(header::AUTHORIZATION) {
        return header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .map(Presented::Bearer)
            .ok_or_else(|| {
                ApiError::unauthenticated(
                    "unauthenticated",
                    "the Authorization header must be `Bearer <token>`",
                )
            });
    }
    let token = cookie_session(parts).ok_or_else(|| {
        ApiError::unauthenticated(
            "unauthenticated",
            "sign in first, or send Authorization: Bearer <token>",
        )
    })?;
    // A cross-site page can make the browser send the cookie, but cannot read the CSRF
    // token (it is given only in answers to Haven's own pages: the sign-in, and the current
    // session, which no CORS header opens to other origins), so writes must echo it.
    let safe = matches!(
        parts.method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    );
    let csrf_ok = safe
        || parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|sent| same_token(sent, &haven_app::identity::csrf_token(&token)));
    Ok(Presented::Cookie { token, csrf_ok })
}

/// Compares two tokens in time that depends only on their lengths, so a forger learns
/// nothing from how quickly a wrong guess is refused.
fn same_token(sent: &str, expected: &str) -> bool {
    sent.len() == expected.len()
        && sent
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn csrf_refused() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf_token_missing",
        "this change needs the X-CSRF-Token header from your sign-in",
    )
}

/// A signed-in session in any state, even one still owing its second factor: for the
/// sign-in and account endpoints only.
#[derive(Debug, Clone)]
pub struct SessionCaller {
    pub session: haven_app::identity::SessionCaller,
    pub origin: RequestOrigin,
    /// The session's CSRF token, for the web app to learn again after a reload.
    pub csrf_token: String,
}

impl FromRequestParts<ApiState> for SessionCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let origin = origin(parts);
        let token = match presented(parts)? {
            Presented::Bearer(token) => token.to_owned(),
            Presented::Cookie { csrf_ok: false, .. } => return Err(csrf_refused()),
            Presented::Cookie { token, .. } => token,
        };
        let session = state.app.authenticate_session(&token, &origin).await?;
        Ok(SessionCaller {
            session,
            origin,
            csrf_token: haven_app::identity::csrf_token(&token),
        })
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let origin = origin(parts);
        let session_token = match presented(parts)? {
            Presented::Bearer(token) if token.starts_with("hvs_") => token.to_owned(),
            Presented::Bearer(token) => return api_token_caller(state, token, origin).await,
            Presented::Cookie { csrf_ok: false, .. } => return Err(csrf_refused()),
            Presented::Cookie { token, .. } => token,
        };
        let session = state
            .app
            .authenticate_session(&session_token, &origin)
            .await?;
        if session.state != haven_app::identity::SessionState::Complete {
            return Err(ApiError::unauthenticated(
                session.state.as_str(),
                "finish signing in with your second factor first",
            ));
        }
        Ok(Caller(RequestContext {
            actor: session.actor,
            origin,
            authenticated_at_ms: Some(session.authenticated_at_ms),
        }))
    }
}

/// The caller of the event stream (a WebSocket): the caller, and for a signed-in person
/// their session token, to check while the connection lasts that the session has not
/// ended.
///
/// A WebSocket handshake is a GET that a page of any origin can start, with the browser
/// adding the cookie; the CSRF token cannot travel in it. So a cookie handshake must come
/// from Haven's own origin (`Origin` matching `Host`), which browsers always send.
#[derive(Debug)]
pub struct EventCaller {
    pub context: RequestContext,
    pub session_token: Option<haven_app::Secret<String>>,
}

impl FromRequestParts<ApiState> for EventCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let session_token = match presented(parts)? {
            Presented::Bearer(token) if token.starts_with("hvs_") => Some(token.to_owned()),
            Presented::Bearer(_) => None,
            Presented::Cookie { token, .. } => {
                if !same_origin(parts) {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "cross_origin",
                        "the event stream opens only from Haven's own pages",
                    ));
                }
                Some(token)
            }
        };
        let Caller(context) = Caller::from_request_parts(parts, state).await?;
        Ok(EventCaller {
            context,
            session_token: session_token.map(haven_app::Secret::new),
        })
    }
}

/// The cookie that carries a video visit's guest session (no account; one visit only).
pub const GUEST_COOKIE: &str = "__Host-haven_guest";

/// Who calls a visit's routes: a signed-in person (as on the event stream), or a visit's
/// guest with their session cookie. A guest's requests must come from Haven's own origin,
/// for the same reason as a cookie handshake of the event stream.
#[derive(Debug)]
pub enum VisitCaller {
    Person(EventCaller),
    Guest {
        session: haven_app::Secret<String>,
        origin: RequestOrigin,
    },
}

fn guest_cookie(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == GUEST_COOKIE)
        .map(|(_, value)| value.trim().to_owned())
}

impl FromRequestParts<ApiState> for VisitCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        // A WebSocket handshake carries no CSRF token, so a cookie one must come from
        // Haven's own origin; other requests are as any API call (a guest's cookie is
        // SameSite=Strict, and what they read is not readable cross-origin).
        let handshake = parts
            .headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let signed_in =
            parts.headers.contains_key(header::AUTHORIZATION) || cookie_session(parts).is_some();
        if !signed_in && let Some(session) = guest_cookie(parts) {
            if handshake && !same_origin(parts) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "cross_origin",
                    "a visit opens only from Haven's own pages",
                ));
            }
            return Ok(VisitCaller::Guest {
                session: haven_app::Secret::new(session),
                origin: origin(parts),
            });
        }
        if handshake {
            return Ok(VisitCaller::Person(
                EventCaller::from_request_parts(parts, state).await?,
            ));
        }
        let Caller(context) = Caller::from_request_parts(parts, state).await?;
        Ok(VisitCaller::Person(EventCaller {
            context,
            session_token: None,
        }))
    }
}

/// `Origin` names the host the request was sent to (scheme aside).
fn same_origin(parts: &Parts) -> bool {
    let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(origin), Some(host)) = (header(header::ORIGIN), header(header::HOST)) else {
        return false;
    };
    origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

async fn api_token_caller(
    state: &ApiState,
    presented: &str,
    origin: RequestOrigin,
) -> Result<Caller, ApiError> {
    match state.app.authenticate(presented, &origin).await? {
        Ok(actor) => Ok(Caller(RequestContext {
            actor,
            origin,
            authenticated_at_ms: None,
        })),
        Err(AuthFailure::Expired) => Err(ApiError::unauthenticated(
            "token_expired",
            "your session has expired; sign in again",
        )),
        Err(AuthFailure::Revoked) => Err(ApiError::unauthenticated(
            "token_revoked",
            "this token was revoked; sign in again",
        )),
        Err(AuthFailure::Unknown) => Err(ApiError::unauthenticated(
            "unauthenticated",
            "the token is not valid; sign in again",
        )),
    }
}

/// Parses a query string strictly into `T` (which should deny unknown fields).
pub(crate) fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let uri = format!("/?{query}")
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_query", "the query string is malformed"))?;
    axum::extract::Query::<T>::try_from_uri(&uri)
        .map(|q| q.0)
        .map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))
}
