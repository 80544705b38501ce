//! The web app's files: `web/dist`, which `cargo xtask run` and `cargo xtask test` build
//! with Vite. A release build embeds them in the binary, so a deployment is one file; a
//! debug build reads them from disk on each request, so a rebuilt web app is served without
//! recompiling Haven.
//!
//! - `/assets/…` are Vite's content-hashed files: a changed file gets a new name, so they
//!   may be cached for a year. They hold code and styles, never health data.
//! - A `GET` of one of the app's own pages (the root, or a path in one of its sections:
//!   `/portal/record`, say) is answered with `index.html` and the app draws the page.
//!   `index.html` keeps the default `no-store`. Any other path is a 404.
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

/// Whether a path names one of the app's files (by a type it is built from), rather than
/// one of its pages, whose paths may hold ids with dots (`/portal/forms/intake.v2`).
fn is_file_name(name: &str) -> bool {
    let last = name.rsplit('/').next().unwrap_or(name);
    content_type(last).is_some()
}

/// The sections of the web app: their paths (and the root) are answered with its page; any
/// other path is a 404, as it would be without the app.
const APP_SECTIONS: [&str; 8] = [
    "portal",
    "workspace",
    "visits",
    "privacy",
    "admin",
    "account",
    "sign-in",
    "enrol",
];

fn is_app_page(name: &str) -> bool {
    let section = name.split('/').next().unwrap_or_default();
    name.is_empty() || APP_SECTIONS.contains(&section)
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
    if !is_file_name(name) && !is_app_page(name) {
        return error::not_found().await.into_response();
    }
    if is_file_name(name) {
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
    fn only_the_apps_sections_are_pages() {
        assert!(is_app_page(""));
        assert!(is_app_page("portal/forms/intake.v2"));
        assert!(is_app_page("sign-in"));
        assert!(!is_app_page("wp-login.php"));
        assert!(!is_app_page("..%2fCargo.toml"));
        assert!(!is_app_page("portals"));
    }

    #[test]
    fn pages_may_have_dots_and_files_are_named_by_their_type() {
        assert!(is_file_name("assets/index-1a2b.js"));
        assert!(is_file_name("favicon.svg"));
        assert!(!is_file_name("portal/forms/intake.v2"));
        assert!(!is_file_name("portal/corrections/new/Observation/a.b"));
        assert!(!is_file_name(""));
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
