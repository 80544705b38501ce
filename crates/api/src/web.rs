//! The web app's files: `web/dist`, which `cargo xtask run` and `cargo xtask test` build
//! with Vite. A release build embeds them in the binary, so a deployment is one file; a
//! debug build reads them from disk on each request, so a rebuilt web app is served without
//! recompiling Haven.
//!
//! - `/assets/…` are Vite's content-hashed files: a changed file gets a new name, so they
//!   may be cached for a year. They hold code and styles, never health data.
//! - Any other `GET` of a path outside `/api/` and `/fhir` that names no file is one of the
//!   app's own pages (`/portal/record`, say): it is answered with `index.html` and the app
//!   draws the page. `index.html` keeps the default `no-store`.
//! - Only the file types the app is built from are served; anything else is 404, so the
//!   `nosniff` header never meets a type Haven did not mean to send.
//!
//! Every answer carries the same Content Security Policy as the API (see `router`): the app
//! loads nothing from another origin and runs no inline script.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, Uri, header};
use rust_embed::Embed;

use crate::error;

#[derive(Embed)]
#[folder = "../../web/dist"]
// A checkout whose web app was never built still compiles; it answers 503 and says how to
// build it.
#[allow_missing = true]
struct WebAssets;

/// Hashed assets never change under their name.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The content type of each kind of file the app is built from, or `None`: not served.
fn content_type(path: &str) -> Option<&'static str> {
    let extension = path.rsplit_once('.')?.1;
    Some(match extension {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

/// A path inside the app's folder: plain names only, so no request reaches a file beside it
/// (a debug build reads from disk).
fn is_plain(path: &str) -> bool {
    !path.contains('\\')
        && path
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

fn file(path: &str, cache_control: Option<&'static str>) -> Option<Response> {
    if !is_plain(path) {
        return None;
    }
    let content_type = content_type(path)?;
    let asset = WebAssets::get(path)?;
    let mut response = asset.data.into_owned().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(cache_control) = cache_control {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        );
    }
    Some(response)
}

/// `GET /assets/{*path}`: one of Vite's hashed files.
pub(crate) async fn asset(Path(path): Path<String>) -> Response {
    match file(&format!("assets/{path}"), Some(IMMUTABLE)) {
        Some(response) => response,
        None => error::not_found().await.into_response(),
    }
}

/// Whether a path belongs to the machine interfaces, whose unknown paths are JSON 404s.
fn is_api_path(path: &str) -> bool {
    path.starts_with("/api/") || path == "/api" || path.starts_with("/fhir/") || path == "/fhir"
}

/// Every request no route matched: a file at the app's root (`/favicon.svg`), one of the
/// app's pages, or a 404.
pub(crate) async fn fallback(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    if !matches!(method, Method::GET | Method::HEAD) || is_api_path(path) {
        return error::not_found().await.into_response();
    }
    let name = path.trim_start_matches('/');
    if !name.is_empty() && name.contains('.') {
        // A file name: served when the app has it; never the app's page in its place, so
        // a missing script is a clear 404, not HTML parsed as JavaScript.
        return match file(name, None) {
            Some(response) => response,
            None => error::not_found().await.into_response(),
        };
    }
    match file("index.html", None) {
        Some(response) => response,
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Haven's web app is not built. Build it with `cargo xtask run` \
             (or `npm ci && npm run build` in web/), then reload this page.\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_apps_own_file_types_are_served() {
        assert_eq!(
            content_type("assets/index-1a2b.js"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(content_type("favicon.svg"), Some("image/svg+xml"));
        assert_eq!(content_type("haven.db"), None);
        assert_eq!(content_type("README"), None);
    }

    #[test]
    fn no_path_leaves_the_apps_folder() {
        assert!(is_plain("assets/index-1a2b.js"));
        assert!(!is_plain("assets/../../Cargo.toml"));
        assert!(!is_plain("../dist/index.html"));
        assert!(!is_plain("assets//index.js"));
        assert!(!is_plain("assets\\..\\x.css"));
        assert!(file("assets/../index.html", None).is_none());
    }

    #[test]
    fn the_machine_interfaces_keep_their_json_404s() {
        assert!(is_api_path("/api/v1/nothing"));
        assert!(is_api_path("/fhir"));
        assert!(is_api_path("/fhir/Unknown/1"));
        assert!(!is_api_path("/portal/record"));
        assert!(!is_api_path("/fhirish"));
        assert!(!is_api_path("/apiary"));
    }
}
