//! A refused body is read to its end (up to a bound) before the refusal is sent.
//!
//! When Haven refuses a body as too large (413), it stops reading at the limit. If it then
//! answered and closed the connection, the rest of the body, still arriving, would make the
//! operating system reset the connection, and the client, still sending, would often see
//! the reset and never the answer. So the rest is read and thrown away first, up to
//! [`DRAIN_BYTES_MAX`] and [`DRAIN_SECS_MAX`]; a body larger still is cut off as before.
//!
//! The request body is shared between the route, which reads what it needs, and this layer,
//! which drains what is left once the route has answered 413.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::StatusCode;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

/// How much of a refused body is read and thrown away so that the client hears the refusal.
const DRAIN_BYTES_MAX: usize = 16 * 1024 * 1024;
/// How long draining a refused body may take.
const DRAIN_SECS_MAX: u64 = 10;

/// The request body, reachable both by the route and by this layer afterwards.
struct SharedBody(Arc<Mutex<Option<Body>>>);

impl http_body::Body for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut body = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        let body = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        body.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let body = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        body.as_ref()
            .map(http_body::Body::size_hint)
            .unwrap_or_default()
    }
}

/// The middleware: passes the request on with a shared body, and drains what is left of it
/// when the answer is 413.
pub(crate) async fn drain_refused_bodies(request: Request, next: Next) -> Response {
    // Most requests (reads) carry no body: nothing to share, nothing to drain.
    if http_body::Body::is_end_stream(request.body()) {
        return next.run(request).await;
    }
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let (parts, body) = request.into_parts();
    let shared = Arc::new(Mutex::new(Some(body)));
    let request = Request::from_parts(parts, Body::new(SharedBody(shared.clone())));
    let response = next.run(request).await;
    // A body declared larger than the bound would be cut off anyway: not worth the wait.
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && declared <= DRAIN_BYTES_MAX as u64 {
        let rest = shared.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(rest) = rest {
            let mut rest = http_body_util::Limited::new(rest, DRAIN_BYTES_MAX);
            let drained = async {
                while let Some(frame) = rest.frame().await {
                    if frame.is_err() {
                        break;
                    }
                }
            };
            // Past the bounds the connection is cut, as it would have been without this.
            let _ = tokio::time::timeout(Duration::from_secs(DRAIN_SECS_MAX), drained).await;
        }
    }
    response
}
