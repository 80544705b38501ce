//! One error type for the whole HTTP surface.
//!
//! Every error answers `{"error": {"code": "...", "message": "..."}}` with a stable,
//! machine-readable `code`. The message is for the person calling; internal detail goes to
//! the log only, so a 500 reveals nothing about the server's insides.

use std::any::Any;

use axum::Json;
use axum::response::{IntoResponse, Response};
use haven_app::AppError;
use http::{StatusCode, header};
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Sent as `Retry-After` (429 and 503).
    pub retry_after_secs: Option<u64>,
    /// Why a refusal was made, as the policy names it (`no_care_relationship`), so a client
    /// can offer the way forward (break-the-glass) without reading the message.
    pub reason: Option<&'static str>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
            reason: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side; nothing was changed. Please try again",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                reason: self.reason,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        match error {
            AppError::Invalid(invalid) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                invalid.to_string(),
            ),
            AppError::NotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such record")
            }
            AppError::Erased => ApiError::new(
                StatusCode::GONE,
                "erased",
                "this record was permanently erased and can no longer be read",
            ),
            AppError::Forbidden { reason } => ApiError {
                reason: Some(reason),
                ..ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("you are not permitted to do this ({reason})"),
                )
            },
            AppError::VersionMismatch { current } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "version_mismatch",
                format!(
                    "the record changed since you read it; it is now at version {current}. Reload it and apply your change again"
                ),
            ),
            AppError::AuditUnavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the audit log cannot record this access right now, so it was refused; try again shortly",
            ),
            AppError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            AppError::Busy => ApiError {
                retry_after_secs: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "the server is busy; try again in a moment",
                )
            },
            AppError::Throttled { retry_after_secs } => ApiError {
                retry_after_secs: Some(retry_after_secs),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    format!("too many attempts; try again in {retry_after_secs} seconds"),
                )
            },
            AppError::Unauthenticated { reason } => ApiError::unauthenticated(
                reason,
                match reason {
                    "session_idle_timeout" => {
                        "you were signed out after a period of inactivity; sign in again"
                    }
                    "session_expired" => "your session has ended; sign in again",
                    "session_revoked" => "you were signed out; sign in again",
                    "invalid_credentials" => "the sign-in details are not correct",
                    "mfa_required" => "a second factor is needed to finish signing in",
                    "step_up_required" => {
                        "confirm it is you (POST /api/v1/auth/step-up) and try again"
                    }
                    _ => "sign in to continue",
                },
            ),
            AppError::InvalidResource { path, message } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_resource",
                format!("{path}: {message}"),
            ),
            AppError::Gone { version } => ApiError::new(
                StatusCode::GONE,
                "deleted",
                format!("this resource was deleted (version {version})"),
            ),
            AppError::PreconditionFailed { current } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "version_mismatch",
                format!("the resource is at version {current}"),
            ),
            AppError::NotSupported(message) => {
                ApiError::new(StatusCode::BAD_REQUEST, "not_supported", message)
            }
            AppError::TooCostly(message) => {
                ApiError::new(StatusCode::BAD_REQUEST, "too_costly", message)
            }
            AppError::TooLarge { limit_bytes } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("larger than the {limit_bytes} bytes this server accepts"),
            ),
            AppError::UnsupportedMedia(message) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                message,
            ),
            AppError::BundleEntry { index, source } => {
                let inner = ApiError::from(*source);
                ApiError {
                    message: format!("entry {index}: {}", inner.message),
                    ..inner
                }
            }
            AppError::Unexpected(detail) => {
                tracing::error!(%detail, "unexpected error");
                ApiError::internal()
            }
        }
    }
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not support that method",
    )
}

/// A handler panicked: answer like any other internal error, log nothing of the payload
/// beyond its message.
pub(crate) fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(%detail, "handler panicked");
    ApiError::internal().into_response()
}
