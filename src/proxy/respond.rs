//! The proxy's own answers: every refusal in one place, with the Controller's words.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use crate::cache::Denial;
use crate::token::Permission;
use crate::upstream::UpstreamBody;
use hyper::body::Incoming;

/// A response body: the upstream's, streamed (sending the request's body `B` as it goes), or one
/// of tollgate's own short answers.
pub type ProxyBody<B = Incoming> = Either<UpstreamBody<B>, Full<Bytes>>;

/// One of tollgate's own answers.
pub type Own = Response<Full<Bytes>>;

const CHALLENGE: HeaderValue = HeaderValue::from_static(r#"Bearer realm="tollgate""#);
const CHALLENGE_INVALID: HeaderValue =
    HeaderValue::from_static(r#"Bearer realm="tollgate", error="invalid_token""#);
const CHALLENGE_SCOPE: HeaderValue =
    HeaderValue::from_static(r#"Bearer realm="tollgate", error="insufficient_scope""#);

/// A 401 for a refused token.
pub fn denied(denial: Denial) -> Own {
    let (message, challenge) = match denial {
        Denial::Missing => ("Missing or invalid Authorization header", CHALLENGE),
        Denial::Format => ("Invalid token format", CHALLENGE_INVALID),
        Denial::Unknown | Denial::Revoked | Denial::Deleted => ("Invalid token", CHALLENGE_INVALID),
        Denial::Expired => ("Token expired", CHALLENGE_INVALID),
    };
    let mut response = error(StatusCode::UNAUTHORIZED, message);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, challenge);
    response
}

/// A 403 for a valid token that lacks the route's permission, in the Controller's words.
pub fn insufficient_scope(required: Permission) -> Own {
    // A permission is `resource:action` in lower-case letters and hyphens: nothing to escape.
    let body = format!(r#"{{"error":"Insufficient permissions: {required} required"}}"#);
    let mut response = json(StatusCode::FORBIDDEN, body);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, CHALLENGE_SCOPE);
    response
}

/// A 403 for a request that a `deny` route or default refuses, whatever its token.
pub fn forbidden() -> Own {
    error(StatusCode::FORBIDDEN, "Forbidden")
}

/// A 400 for a path that servers may read differently (dot segments, encoded separators).
pub fn bad_path() -> Own {
    error(StatusCode::BAD_REQUEST, "Invalid request path")
}

/// A 400 for a request whose body broke off or broke its framing while it was forwarded.
pub fn bad_body() -> Own {
    error(StatusCode::BAD_REQUEST, "Invalid request body")
}

pub fn upstream_unavailable() -> Own {
    error(StatusCode::BAD_GATEWAY, "Upstream unavailable")
}

pub fn upstream_timed_out() -> Own {
    error(StatusCode::GATEWAY_TIMEOUT, "Upstream timed out")
}

/// `{"error": message}`. Messages are fixed strings without quotes or backslashes, so they need
/// no escaping.
fn error(status: StatusCode, message: &'static str) -> Own {
    json(status, format!(r#"{{"error":"{message}"}}"#))
}

fn json(status: StatusCode, body: String) -> Own {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
