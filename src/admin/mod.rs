//! The admin listener: the token API (behind the admin credential), the web page, health,
//! readiness and metrics. Separate from the data path, bound to loopback by default.

mod api;
mod credential;
mod error;
mod import;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use credential::{AdminCredential, CredentialError, MIN_ADMIN_TOKEN_LEN, read_token_file};
use error::ApiError;
pub use error::InternalDetail;

use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::time;
use crate::tls::server::TlsListener;

/// The largest request body the admin API reads.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// The largest import body: room for `import::MAX_IMPORT` entries.
const MAX_IMPORT_BODY_BYTES: usize = 64 * 1024 * 1024;

pub struct AdminState {
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub credential: AdminCredential,
    /// Released once the store is open, the cache loaded and every listener bound.
    pub ready: Arc<AtomicBool>,
}

/// The admin API's routes. `upkeep`: the runtime whose threads run at the process's priority,
/// where the metrics are rendered (see `metrics`).
pub fn router(state: Arc<AdminState>, upkeep: tokio::runtime::Handle) -> Router {
    let api = token_api().layer(middleware::from_fn_with_state(state.clone(), require_admin));
    Router::new()
        .merge(api)
        .merge(web::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(move |state: State<Arc<AdminState>>| metrics(state, upkeep)),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(no_store))
        .with_state(state)
}

/// The token API's routes, before any credential check.
fn token_api() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/api/v1/tokens", post(api::create).get(api::list))
        .route(
            "/api/v1/tokens/import",
            // Up to MAX_IMPORT entries of a name, a digest or plaintext, and permissions.
            post(api::import).layer(axum::extract::DefaultBodyLimit::max(MAX_IMPORT_BODY_BYTES)),
        )
        .route("/api/v1/tokens/revoke", post(api::revoke_many))
        .route("/api/v1/tokens/delete", post(api::delete_many))
        .route(
            "/api/v1/tokens/{id}",
            get(api::show).delete(api::delete_one),
        )
        .route("/api/v1/tokens/{id}/revoke", post(api::revoke_one))
        .route("/api/v1/audit", get(api::audit))
        .route("/api/{*rest}", axum::routing::any(api::api_not_found))
        .method_not_allowed_fallback(api::method_not_allowed)
}

/// The token API served to a caller in this process, with no listener and no credential: the
/// command line working on a store file directly (`--store`). The handlers, validation, statuses
/// and JSON are the network API's own; changes are recorded in the audit trail as made by
/// `actor`. A 500's answer carries an [`InternalDetail`] with the full error, for the caller to
/// show (there is no server log to point to).
pub fn in_process_api(registry: Arc<Registry>, actor: String) -> Router {
    let state = Arc::new(AdminState {
        registry,
        metrics: Arc::new(Metrics::new()),
        // Never consulted: the credential check guards the network routes only.
        credential: AdminCredential::none(),
        ready: Arc::new(AtomicBool::new(true)),
    });
    token_api()
        .layer(axum::Extension(api::Actor(actor)))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// How long a client may take over its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the admin API until `shutdown` turns true; in-flight calls get `grace` to finish.
/// With `tls`, over TLS only. `upkeep`: see `router`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    upkeep: tokio::runtime::Handle,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let app = router(state, upkeep).into_make_service_with_connect_info::<SocketAddr>();
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let stopping = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
        let _ = drained_tx.send(());
    };
    let mut serving = match tls {
        None => {
            let server = axum::serve(listener, app).with_graceful_shutdown(stopping);
            tokio::spawn(async move { server.await })
        }
        Some(acceptor) => {
            let listener = match TlsListener::new(listener, acceptor, TLS_HANDSHAKE_TIMEOUT) {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::error!(error = %e, "the admin listener cannot start");
                    return;
                }
            };
            // `tap_io` only to reach axum's connection info (the client's address) for a
            // listener of our own.
            let server = axum::serve(listener.tap_io(|_| {}), app).with_graceful_shutdown(stopping);
            tokio::spawn(async move { server.await })
        }
    };
    // Wait for the shutdown signal (or the server's own end), then give the drain `grace`.
    tokio::select! {
        // The stop signal is sent from within the server's own shutdown, just before it may end
        // on its own: look at it first, so that a quick stop is not taken for a failure.
        biased;
        _ = drained_rx => {}
        _ = &mut serving => {
            tracing::error!("the admin listener stopped unexpectedly");
            return;
        }
    }
    match tokio::time::timeout(grace, &mut serving).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "admin listener failed"),
        Ok(Err(e)) => tracing::error!(error = %e, "admin listener task failed"),
        Err(_) => {
            tracing::warn!("admin grace period over; closing its connections");
            serving.abort();
        }
    }
}

async fn require_admin(
    State(state): State<Arc<AdminState>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match presented {
        Some(token) if state.credential.verify(token.as_bytes()) => next.run(request).await,
        _ => ApiError::Unauthorized.into_response(),
    }
}

/// Admin answers carry token records and, once, a secret: no cache may keep them.
async fn no_store(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    if state.ready.load(Ordering::Acquire) {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ready"})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "starting"})),
        )
    }
}

async fn metrics(
    State(state): State<Arc<AdminState>>,
    upkeep: tokio::runtime::Handle,
) -> impl IntoResponse {
    let registry = state.registry.clone();
    let metrics = state.metrics.clone();
    // Counting tokens scans the cache (about 24 ms at 1,000,000 tokens): off the async threads,
    // and off the admin API's favoured ones, which would hold a data path's core for as long
    // as every scrape takes.
    let body = crate::limits::at_process_priority(&upkeep, move || {
        metrics.render(registry.cache(), time::now())
    })
    .await
    .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        body,
    )
}
