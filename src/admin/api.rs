//! The admin API handlers (JSON over HTTP), as INTERFACES.md lists them.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::AdminState;
use super::error::ApiError;
use crate::store::Event;
use crate::time::{self, format_rfc3339};
use crate::token::{RawSpec, TokenId, TokenRecord, TokenSpec, TokenStatus};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;
/// The most ids one bulk call may name.
const MAX_BULK: usize = 100_000;
const MAX_REASON: usize = 512;
/// A name search longer than the longest name (128 characters) could match nothing.
const MAX_NAME_FILTER: usize = 128;

// ---- views: what the API shows ----

#[derive(Serialize)]
pub struct RecordView {
    id: String,
    name: String,
    description: String,
    hint: String,
    permissions: Vec<String>,
    status: &'static str,
    created_at: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
    revoke_reason: Option<String>,
    last_used_at: Option<String>,
}

impl RecordView {
    fn new(r: &TokenRecord, now: time::UnixSeconds) -> Self {
        RecordView {
            id: r.id.to_string(),
            name: r.name.clone(),
            description: r.description.clone(),
            hint: r.hint.clone(),
            permissions: r.permissions.to_strings(),
            status: r.status(now).as_str(),
            created_at: format_rfc3339(r.created_at),
            expires_at: r.expires_at.map(format_rfc3339),
            revoked_at: r.revoked_at.map(format_rfc3339),
            revoke_reason: r.revoke_reason.clone(),
            last_used_at: r.last_used_at.map(format_rfc3339),
        }
    }
}

#[derive(Serialize)]
struct EventView {
    seq: u64,
    at: String,
    action: &'static str,
    token_id: String,
    token_name: String,
    actor: String,
    reason: Option<String>,
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> Self {
        EventView {
            seq: e.seq,
            at: format_rfc3339(e.at),
            action: e.action.as_str(),
            token_id: e.token_id.to_string(),
            token_name: e.token_name.clone(),
            actor: e.actor.clone(),
            reason: e.reason.clone(),
        }
    }
}

// ---- request bodies ----

/// A JSON body whose refusals are answered in the API's own error shape. An empty body reads as
/// `{}`, so that `POST …/revoke` needs no body at all.
pub struct JsonBody<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| ApiError::Body(rejection.status(), rejection.body_text()))?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        // Every body is an object: serde would also take an array for a struct, its fields by
        // position, and a call must not act on a body that merely fits.
        if text.trim_ascii_start().first() != Some(&b'{') {
            return Err(ApiError::BadRequest(
                "invalid JSON body: expected an object".into(),
            ));
        }
        let mut deserializer = serde_json::Deserializer::from_slice(text);
        let body = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                ApiError::BadRequest(format!("invalid JSON body: {}", e.inner()))
            } else {
                ApiError::BadRequest(format!("{path}: {}", e.inner()))
            }
        })?;
        // What follows the object must be nothing but whitespace: `{…} garbage` or a second
        // object is a body gone wrong, not a call to carry out.
        deserializer
            .end()
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
        Ok(JsonBody(body))
    }
}

/// Query parameters, refused in the API's own error shape.
pub struct ApiQuery<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

/// A path parameter, refused in the API's own error shape.
pub struct ApiPath<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| ApiPath(p))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: Option<String>,
    description: Option<String>,
    preset: Option<String>,
    permissions: Option<Vec<String>>,
    expires_at: Option<String>,
    expires_in: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    ids: Option<Vec<String>>,
    reason: Option<String>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    /// Keeps the tokens whose name contains this text, ignoring case.
    name: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<String>,
    before: Option<String>,
    /// Keeps one token's events (a deleted token's too).
    token_id: Option<String>,
}

// ---- handlers ----

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        if e.is_panic() {
            ApiError::Internal("a store task panicked".into())
        } else {
            ApiError::Unavailable
        }
    })?
}

/// Who makes a change, as the audit trail records it: `admin@<client address>` for a call over
/// the network; a caller in this process (the command line working on a store file directly)
/// names itself by putting an `Actor` in the request's extensions, which no client can reach.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if let Some(actor) = parts.extensions.get::<Actor>() {
            return Ok(actor.clone());
        }
        let ConnectInfo(remote) = ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::Internal("no client address and no actor".into()))?;
        Ok(Actor(format!("admin@{}", remote.ip())))
    }
}

pub async fn create(
    State(state): State<Arc<AdminState>>,
    Actor(actor): Actor,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    let now = time::now();
    let spec = TokenSpec::validate(
        RawSpec {
            name: body
                .name
                .ok_or_else(|| ApiError::BadRequest("name: is required".into()))?,
            description: body.description,
            preset: body.preset,
            permissions: body.permissions,
            expires_at: body.expires_at,
            expires_in: body.expires_in,
        },
        now,
    )?;
    let registry = state.registry.clone();
    let (record, secret) = blocking(move || Ok(registry.create(spec, &actor)?)).await?;
    tracing::info!(token_id = %record.id, name = %record.name, "token created");
    #[derive(Serialize)]
    struct Created {
        #[serde(flatten)]
        record: RecordView,
        token: String,
    }
    let created = Created {
        record: RecordView::new(&record, now),
        token: secret.expose().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub async fn list(
    State(state): State<Arc<AdminState>>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(TokenStatus::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!("status: {s:?} is not active, revoked or expired"))
        })?),
    };
    let limit = parse_limit(query.limit.as_deref())?;
    let after = match query.after.as_deref() {
        None | Some("") => None,
        Some(a) => Some(a.parse::<u64>().map_err(|_| {
            ApiError::BadRequest(format!("after: {a:?} is not a cursor from a previous page"))
        })?),
    };
    let name = validate_name_filter(query.name)?;
    let registry = state.registry.clone();
    let page = blocking(move || Ok(registry.list(status, name.as_deref(), limit, after)?)).await?;
    let now = time::now();
    #[derive(Serialize)]
    struct Listing {
        tokens: Vec<RecordView>,
        next: Option<String>,
    }
    Ok(Json(Listing {
        tokens: page
            .tokens
            .iter()
            .map(|r| RecordView::new(r, now))
            .collect(),
        next: page.next.map(|cursor| cursor.to_string()),
    })
    .into_response())
}

pub async fn show(
    State(state): State<Arc<AdminState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = TokenId::parse(&id).ok_or(ApiError::NotFound("token"))?;
    let registry = state.registry.clone();
    let record = blocking(move || Ok(registry.get(&id)?))
        .await?
        .ok_or(ApiError::NotFound("token"))?;
    Ok(Json(RecordView::new(&record, time::now())).into_response())
}

pub async fn import(
    State(state): State<Arc<AdminState>>,
    Actor(actor): Actor,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    let batch = super::import::parse(&body, time::now()).map_err(ApiError::BadRequest)?;
    // Plaintext tokens, if any, go no further than this.
    drop(body);
    let registry = state.registry.clone();
    let entries = batch.entries;
    let mut outcome = blocking(move || Ok(registry.import(entries, &actor)?)).await?;
    outcome.skipped.extend(
        batch
            .expired
            .into_iter()
            .map(|name| (name, crate::store::SkipReason::Expired)),
    );
    tracing::info!(
        imported = outcome.imported.len(),
        skipped = outcome.skipped.len(),
        "tokens imported"
    );
    #[derive(Serialize)]
    struct Skipped {
        name: String,
        reason: &'static str,
    }
    #[derive(Serialize)]
    struct Imported {
        imported: Vec<String>,
        skipped: Vec<Skipped>,
    }
    Ok(Json(Imported {
        imported: ids_of(&outcome.imported),
        skipped: outcome
            .skipped
            .into_iter()
            .map(|(name, reason)| Skipped {
                name,
                reason: reason.as_str(),
            })
            .collect(),
    })
    .into_response())
}

pub async fn revoke_one(
    State(state): State<Arc<AdminState>>,
    Actor(actor): Actor,
    ApiPath(id): ApiPath<String>,
    JsonBody(body): JsonBody<RevokeBody>,
) -> Result<Response, ApiError> {
    let id = TokenId::parse(&id).ok_or(ApiError::NotFound("token"))?;
    let reason = validate_reason(body.reason)?;
    let registry = state.registry.clone();
    let outcome = blocking(move || Ok(registry.revoke(&[id], reason.as_deref(), &actor)?)).await?;
    state.metrics.revoked(outcome.revoked.len());
    let record = outcome
        .revoked
        .first()
        .or(outcome.already_revoked.first())
        .ok_or(ApiError::NotFound("token"))?;
    if !outcome.revoked.is_empty() {
        tracing::info!(token_id = %record.id, name = %record.name, "token revoked");
    }
    Ok(Json(RecordView::new(record, time::now())).into_response())
}

pub async fn revoke_many(
    State(state): State<Arc<AdminState>>,
    Actor(actor): Actor,
    JsonBody(body): JsonBody<BulkBody>,
) -> Result<Response, ApiError> {
    let (ids, invalid) = parse_ids(body.ids)?;
    let reason = validate_reason(body.reason)?;
    let registry = state.registry.clone();
    let outcome = blocking(move || Ok(registry.revoke(&ids, reason.as_deref(), &actor)?)).await?;
    state.metrics.revoked(outcome.revoked.len());
    tracing::info!(
        revoked = outcome.revoked.len(),
        already_revoked = outcome.already_revoked.len(),
        not_found = outcome.not_found.len() + invalid.len(),
        "bulk revoke"
    );
    #[derive(Serialize)]
    struct Revoked {
        revoked: Vec<String>,
        already_revoked: Vec<String>,
        not_found: Vec<String>,
    }
    Ok(Json(Revoked {
        revoked: ids_of(&outcome.revoked),
        already_revoked: ids_of(&outcome.already_revoked),
        not_found: not_found(&outcome.not_found, invalid),
    })
    .into_response())
}

pub async fn delete_one(
    State(state): State<Arc<AdminState>>,
    Actor(actor): Actor,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = TokenId::parse(&id).ok_or(ApiError::NotFound("token"))?;
    let registry = state.registry.clone();
    let outcome = blocking(move || Ok(registry.delete(&[id], &actor)?)).await?;
    state.metrics.deleted(outcome.deleted.len());
    let record = outcome.deleted.first().ok_or(ApiError::NotFound("token"))?;
    tracing::info!(token_id = %record.id, name = %record.name, "token deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn delete_many(
    State(state): State<Arc<AdminState>>,
    Actor(actor): Actor,
    JsonBody(body): JsonBody<BulkBody>,
) -> Result<Response, ApiError> {
    if body.reason.is_some() {
        return Err(ApiError::BadRequest(
            "reason: deletion takes no reason (revoke keeps one)".into(),
        ));
    }
    let (ids, invalid) = parse_ids(body.ids)?;
    let registry = state.registry.clone();
    let outcome = blocking(move || Ok(registry.delete(&ids, &actor)?)).await?;
    state.metrics.deleted(outcome.deleted.len());
    tracing::info!(
        deleted = outcome.deleted.len(),
        not_found = outcome.not_found.len() + invalid.len(),
        "bulk delete"
    );
    #[derive(Serialize)]
    struct Deleted {
        deleted: Vec<String>,
        not_found: Vec<String>,
    }
    Ok(Json(Deleted {
        deleted: ids_of(&outcome.deleted),
        not_found: not_found(&outcome.not_found, invalid),
    })
    .into_response())
}

pub async fn audit(
    State(state): State<Arc<AdminState>>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    let limit = parse_limit(query.limit.as_deref())?;
    let before = match query.before.as_deref() {
        None | Some("") => None,
        Some(b) => Some(b.parse::<u64>().map_err(|_| {
            ApiError::BadRequest(format!("before: {b:?} is not an event sequence number"))
        })?),
    };
    let token =
        match query.token_id.as_deref() {
            None | Some("") => None,
            Some(t) => Some(TokenId::parse(t).ok_or_else(|| {
                ApiError::BadRequest(format!("token_id: {t:?} is not a token id"))
            })?),
        };
    let registry = state.registry.clone();
    let events = blocking(move || Ok(registry.events(limit, before, token.as_ref())?)).await?;
    #[derive(Serialize)]
    struct Audit {
        events: Vec<EventView>,
    }
    Ok(Json(Audit {
        events: events.iter().map(EventView::from).collect(),
    })
    .into_response())
}

pub async fn api_not_found() -> ApiError {
    ApiError::NotFound("route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

// ---- helpers ----

fn parse_limit(limit: Option<&str>) -> Result<usize, ApiError> {
    match limit {
        None | Some("") => Ok(DEFAULT_PAGE),
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "limit: {l:?} is not a number from 1 to {MAX_PAGE}"
            ))),
        },
    }
}

/// Splits requested ids into well-formed ones and strings that cannot name any token (reported
/// as not found, as they are).
fn parse_ids(ids: Option<Vec<String>>) -> Result<(Vec<TokenId>, Vec<String>), ApiError> {
    let ids = ids.ok_or_else(|| ApiError::BadRequest("ids: is required".into()))?;
    if ids.is_empty() {
        return Err(ApiError::BadRequest(
            "ids: must list at least one id".into(),
        ));
    }
    if ids.len() > MAX_BULK {
        return Err(ApiError::BadRequest(format!(
            "ids: at most {MAX_BULK} in one call"
        )));
    }
    let mut valid = Vec::with_capacity(ids.len());
    let mut invalid = Vec::new();
    let mut seen_invalid = std::collections::HashSet::new();
    for id in ids {
        match TokenId::parse(&id) {
            Some(parsed) => valid.push(parsed),
            None if seen_invalid.insert(id.clone()) => invalid.push(id),
            None => {}
        }
    }
    Ok((valid, invalid))
}

fn validate_reason(reason: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(reason) = reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
    else {
        return Ok(None);
    };
    if reason.chars().count() > MAX_REASON {
        return Err(ApiError::BadRequest(format!(
            "reason: must be at most {MAX_REASON} characters"
        )));
    }
    if reason.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "reason: must not contain control characters".into(),
        ));
    }
    // A token is revoked because it leaked, and the reason may be pasted from where: it is
    // stored, shown and kept in the audit trail, so a secret in it would outlive its token.
    if crate::token::contains_token_prefix(&reason) {
        return Err(ApiError::BadRequest(
            "reason: must not contain a token (tc-apiv1_…)".into(),
        ));
    }
    Ok(Some(reason))
}

/// The name search of a listing: empty means none; longer than any name, or a control
/// character, can match nothing and is refused as a mistake.
fn validate_name_filter(name: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > MAX_NAME_FILTER {
        return Err(ApiError::BadRequest(format!(
            "name: must be at most {MAX_NAME_FILTER} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "name: must not contain control characters".into(),
        ));
    }
    // No token is ever stored, so a secret pasted into the search can match nothing; refused
    // so that it travels no further (logs of proxies in between, shell history of scripts).
    if crate::token::contains_token_prefix(&name) {
        return Err(ApiError::BadRequest(
            "name: looks like a token secret; search by name or id".into(),
        ));
    }
    Ok(Some(name))
}

/// Ids the store did not find, then the strings that could name no token at all.
fn not_found(missing: &[TokenId], invalid: Vec<String>) -> Vec<String> {
    missing
        .iter()
        .map(|id| id.to_string())
        .chain(invalid)
        .collect()
}

fn ids_of(records: &[TokenRecord]) -> Vec<String> {
    records.iter().map(|r| r.id.to_string()).collect()
}
