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
