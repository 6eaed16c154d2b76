//! The web console: a page served by every node at `/ui`, its assets compiled into the
//! binary (no CDN, no external fonts). It talks to nothing but the node that served it,
//! through the public client API (`POST /licenses`, `/readyz`), so whatever it shows a
//! script can get too. The Content-Security-Policy makes the browser hold it to that.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

/// One embedded file.
struct Asset {
    name: &'static str,
    bytes: &'static [u8],
}

macro_rules! assets {
    ($($name:literal),* $(,)?) => {
        &[$(Asset { name: $name, bytes: include_bytes!(concat!("assets/", $name)) }),*]
    };
}

/// Every file of `src/console/assets/` (a unit test checks the list is complete).
const ASSETS: &[Asset] = assets![
    "index.html",
    "console.css",
    "favicon.svg",
    "api.js",
    "app.js",
    "ui.js",
    "timeline.js",
    "overview.js",
    "licenses.js",
    "borrows.js",
    "hosts.js",
    "audit.js",
    "cluster.js",
];

/// Same-origin only: scripts, styles, fetches and images come from the node that served
/// the page; no inline script or style, no framing, no form posts elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The console's routes: `/ui`, `/ui/`, `/ui/assets/{name}`, and `/` sending a browser
/// to `/ui`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/assets/{name}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

/// An embedded file with its type and the security headers; `304` when the browser's
/// copy (its `ETag`) is current. Every answer is revalidated (`no-cache`), so a new
/// binary's console is what the next load shows.
fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|asset| asset.name == name) else {
        return (StatusCode::NOT_FOUND, "no such console asset\n").into_response();
    };
    let etag = etag_of(asset.bytes);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|given| given.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type(name))], asset.bytes).into_response()
    };
    let headers = response.headers_mut();
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(header::ETAG, &etag);
    set(header::CACHE_CONTROL, "no-cache");
    set(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::REFERRER_POLICY, "no-referrer");
    response
}

/// A strong validator: the file's SHA-256, shortened.
fn etag_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_assets_directory_is_embedded_and_nothing_else() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/console/assets");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("assets directory")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.name.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn no_asset_loads_anything_from_another_origin() {
        for asset in ASSETS {
            let text = String::from_utf8_lossy(asset.bytes);
            for needle in ["http://", "https://", "//fonts.", "@import"] {
                // SVG's XML namespace is an identifier, not a request.
                let allowed = text.matches(needle).count()
                    == text.matches(&format!("{needle}www.w3.org/")).count();
                assert!(allowed, "{} mentions {needle}", asset.name);
            }
        }
    }

    #[test]
    fn types_and_validators() {
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_ne!(etag_of(b"a"), etag_of(b"b"));
        assert_eq!(etag_of(b"a"), etag_of(b"a"));
    }

    #[test]
    fn an_unknown_asset_is_404_and_a_current_copy_is_304() {
        let missing = serve("../Cargo.toml", &HeaderMap::new());
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let first = serve("index.html", &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        let etag = first.headers()[header::ETAG].clone();
        assert!(first.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .is_ok_and(|csp| csp.contains("connect-src 'self'")));
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(
            serve("index.html", &again).status(),
            StatusCode::NOT_MODIFIED
        );
    }
}
