//! The proxy's own answers: every refusal in one place, with the Controller's words.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::cache::Denial;

/// A response body: the upstream's, streamed, or one of tollgate's own short answers.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

const CHALLENGE: HeaderValue = HeaderValue::from_static(r#"Bearer realm="tollgate""#);
const CHALLENGE_INVALID: HeaderValue =
    HeaderValue::from_static(r#"Bearer realm="tollgate", error="invalid_token""#);

/// A 401 for a refused token.
pub fn denied(denial: Denial) -> Response<ProxyBody> {
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

pub fn upstream_unavailable() -> Response<ProxyBody> {
    error(StatusCode::BAD_GATEWAY, "Upstream unavailable")
}

pub fn upstream_timed_out() -> Response<ProxyBody> {
    error(StatusCode::GATEWAY_TIMEOUT, "Upstream timed out")
}

/// `{"error": message}`. Messages are fixed strings without quotes or backslashes, so they need
/// no escaping.
fn error(status: StatusCode, message: &'static str) -> Response<ProxyBody> {
    let body = format!(r#"{{"error":"{message}"}}"#);
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
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
