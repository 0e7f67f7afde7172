//! The admin web page: plain HTML, CSS and JavaScript modules built into the binary, served at `/`
//! and under `/ui/`. No build step and nothing fetched at run time; the page talks only to the
//! admin API, with the admin token the operator signs in with.
//!
//! The page itself needs no admin token (signing in happens in the page); every `/api/` call it
//! makes does. Its answers carry a strict Content-Security-Policy: scripts and styles only from
//! these files, no inline script or style, no eval, no framing, no plugins, and Trusted Types
//! required so that no string can ever reach an HTML sink such as `innerHTML`: the page writes
//! data with `textContent` alone, and the browser enforces it.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page's files: (name under `/ui/`, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("web/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("web/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("web/api.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_bytes!("web/dom.js"),
    ),
    (
        "tokens.js",
        "text/javascript; charset=utf-8",
        include_bytes!("web/tokens.js"),
    ),
    (
        "create.js",
        "text/javascript; charset=utf-8",
        include_bytes!("web/create.js"),
    ),
    (
        "detail.js",
        "text/javascript; charset=utf-8",
        include_bytes!("web/detail.js"),
    ),
    (
        "audit.js",
        "text/javascript; charset=utf-8",
        include_bytes!("web/audit.js"),
    ),
    ("icon.svg", "image/svg+xml", include_bytes!("web/icon.svg")),
];

const INDEX: &str = include_str!("web/index.html");

/// Everything from this origin's own files, nothing inline, nothing else. `connect-src 'self'`
/// is the admin API; `form-action 'none'` because no form is ever submitted by the browser (the
/// page handles each submit itself).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

/// The page's routes, to merge into the admin router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/ui/{file}", get(asset))
}

async fn index() -> Response {
    with_headers("text/html; charset=utf-8", INDEX.as_bytes())
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => with_headers(content_type, bytes),
        None => {
            let mut response = (StatusCode::NOT_FOUND, "not found\n").into_response();
            security_headers(response.headers_mut());
            response
        }
    }
}

fn with_headers(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    security_headers(response.headers_mut());
    response
}

fn security_headers(headers: &mut axum::http::HeaderMap) {
    let fixed: [(HeaderName, &'static str); 6] = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Resource;

    fn asset(name: &str) -> &'static str {
        let (_, _, bytes) = ASSETS
            .iter()
            .find(|(n, _, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} is served"));
        std::str::from_utf8(bytes).expect("the page's files are UTF-8")
    }

    /// The create dialog hard-codes the Controller's resources; it must list exactly these.
    #[test]
    fn the_create_dialog_lists_every_resource_in_order() {
        let js = asset("create.js");
        let start = js
            .find("const RESOURCES = [")
            .expect("create.js has RESOURCES");
        let end = start + js[start..].find("];").expect("RESOURCES ends");
        let listed: Vec<&str> = js[start..end].split('"').skip(1).step_by(2).collect();
        let expected: Vec<&str> = Resource::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(listed, expected);
    }

    /// Every module the page imports is served, and nothing injects HTML from a string.
    #[test]
    fn every_import_is_served_and_no_html_sink_is_used() {
        for (name, content_type, _) in ASSETS {
            if !content_type.starts_with("text/javascript") {
                continue;
            }
            let js = asset(name);
            for line in js.lines().filter(|l| l.starts_with("import ")) {
                let path = line
                    .rsplit("\"./")
                    .next()
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_else(|| panic!("{name}: cannot read {line:?}"));
                assert!(
                    ASSETS.iter().any(|(n, _, _)| *n == path),
                    "{name} imports {path}, which is not served"
                );
            }
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!js.contains(sink), "{name} uses {sink}");
            }
        }
        let html = INDEX;
        assert!(!html.contains(" style="), "no inline styles");
        let handler = html.split(" on").skip(1).find(|rest| {
            let name_len = rest.chars().take_while(char::is_ascii_lowercase).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        });
        assert_eq!(handler, None, "no inline event handlers");
        assert_eq!(html.matches("<script").count(), 1);
        assert!(html.contains(r#"<script type="module" src="/ui/app.js"></script>"#));
    }
}
