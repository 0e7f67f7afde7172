//! Admin API errors: one type, mapped to a status and a short public message in one place. The
//! full chain goes to the log, never to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;
use crate::token::SpecError;

#[derive(Debug)]
pub enum ApiError {
    /// 400, the message names the field.
    BadRequest(String),
    Unauthorized,
    NotFound(&'static str),
    MethodNotAllowed,
    /// 409, a name already used by another token.
    Conflict(String),
    /// 413 and other statuses from body extraction.
    Body(StatusCode, String),
    /// 500: logged in full, shown as a fixed message.
    Internal(String),
    /// 503: the blocking pool is gone (shutting down).
    Unavailable,
}

impl From<SpecError> for ApiError {
    fn from(e: SpecError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NameTaken(_) => ApiError::Conflict(e.to_string()),
            StoreError::DigestTaken => ApiError::Conflict(e.to_string()),
            other => ApiError::Internal(crate::ErrorChain(&other).to_string()),
        }
    }
}

/// The full text of a 500's error, attached to the response for a caller in this process (the
/// command line working on a store file, which has no server log to point to). Extensions never
/// leave the process: a client over the network sees only the fixed message.
#[derive(Debug, Clone)]
pub struct InternalDetail(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut detail = None;
        let (status, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "a valid admin token is required (Authorization: Bearer …)".to_owned(),
            ),
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, format!("{what} not found")),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route".to_owned(),
            ),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::Body(status, m) => (status, m),
            ApiError::Internal(chain) => {
                tracing::error!(error = %chain, "admin request failed");
                detail = Some(InternalDetail(chain));
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the server log".to_owned(),
                )
            }
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down".to_owned(),
            ),
        };
        let message = without_secrets(&message);
        let mut response = (status, Json(json!({ "error": message }))).into_response();
        if let Some(detail) = detail {
            response.extensions_mut().insert(detail);
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(r#"Bearer realm="tollgate-admin""#),
            );
        }
        response
    }
}

/// What stands for a token in a message.
const TOKEN_CUT: &str = "tc-apiv1_…";

/// `message` with every run that looks like a token (`tc-apiv1_` and the letters and digits
/// after it, in any case) cut to `tc-apiv1_…`. Refusals name what was wrong, and serde's and the
/// checks' messages quote the value or field name given: a secret pasted into the wrong field
/// must not be sent back, or printed by the command line that asked.
fn without_secrets(message: &str) -> String {
    let prefix = crate::token::TOKEN_PREFIX.as_bytes();
    let bytes = message.as_bytes();
    let mut out = String::with_capacity(message.len());
    let (mut copied, mut at) = (0, 0);
    while at + prefix.len() <= bytes.len() {
        if !bytes[at..at + prefix.len()].eq_ignore_ascii_case(prefix) {
            at += 1;
            continue;
        }
        let start = at + prefix.len();
        let end = start
            + bytes[start..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric())
                .count();
        if end > start {
            // The prefix is ASCII, so `at` and `end` fall on character boundaries.
            out.push_str(&message[copied..at]);
            out.push_str(TOKEN_CUT);
            copied = end;
        }
        at = end.max(at + 1);
    }
    out.push_str(&message[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::without_secrets;

    #[test]
    fn token_like_runs_are_cut_from_messages() {
        let secret = format!("tc-apiv1_{}", "ab12".repeat(16));
        assert_eq!(
            without_secrets(&format!(
                "expires_at: \"{secret}\" is not an RFC 3339 time in UTC"
            )),
            "expires_at: \"tc-apiv1_…\" is not an RFC 3339 time in UTC"
        );
        assert_eq!(
            without_secrets(&format!("unknown field `{}`, and `TC-APIV1_Ff`", secret)),
            "unknown field `tc-apiv1_…`, and `tc-apiv1_…`"
        );
        // The rule's own words, and text with no token, stay as they are.
        for text in [
            "name: must not contain a token (tc-apiv1_…)",
            "tc-apiv1_",
            "naïve tc-apiv1",
            "",
        ] {
            assert_eq!(without_secrets(text), text);
        }
    }
}
