//! Prometheus metrics. Handles are registered once per listener and outcome, so the data path
//! only increments atomics; no label lookup happens per request. The recorder is owned, not
//! installed globally, so that several servers can live in one process (tests, benchmarks).

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::cache::{Denial, TokenCache};
use crate::time::UnixSeconds;
use crate::token::Permission;

const REQUESTS: &str = "tollgate_requests_total";
const PERMISSION_DENIALS: &str = "tollgate_permission_denials_total";
const UPSTREAM_SECONDS: &str = "tollgate_upstream_duration_seconds";
const REVOCATIONS: &str = "tollgate_revocations_total";
const DELETIONS: &str = "tollgate_deletions_total";
const TOKENS: &str = "tollgate_tokens";
const STORE_APPLIED: &str = "tollgate_store_applied_sequence";
const STORE_HEAD: &str = "tollgate_store_head_sequence";
const STORE_LAG: &str = "tollgate_store_lag";
const STORE_FOLLOWED: &str = "tollgate_store_changes_followed_total";
const CONFIG_RELOADS: &str = "tollgate_config_reloads_total";
const CONFIG_RELOAD_OK: &str = "tollgate_config_last_reload_successful";
const CONFIG_RELOAD_TIME: &str = "tollgate_config_last_reload_success_timestamp_seconds";

/// Upstream latency buckets, from a loopback hop to the timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How a proxied request ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Passed with a valid token and forwarded.
    Forwarded,
    /// Forwarded on a public route, with no token check.
    Public,
    /// Forwarded without a token to the upstream's own session login (`pass_session_cookies`).
    Session,
    /// Refused: the token is missing or not valid.
    Denied(Denial),
    /// Refused: a valid token without the route's permission.
    Permission,
    /// Refused by a `deny` route or default.
    RouteDenied,
    /// Refused: a path servers may read differently.
    BadPath,
    /// The client's body broke off or broke its framing (a malformed chunk, more or fewer bytes
    /// than its length) while it was being forwarded: the client's failure, not the upstream's.
    BadBody,
    UpstreamUnavailable,
    UpstreamTimeout,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Public => "public",
            Outcome::Session => "session",
            Outcome::Denied(d) => d.as_str(),
            Outcome::Permission => "permission",
            Outcome::RouteDenied => "denied",
            Outcome::BadPath => "bad_path",
            Outcome::BadBody => "bad_body",
            Outcome::UpstreamUnavailable => "upstream_unavailable",
            Outcome::UpstreamTimeout => "upstream_timeout",
        }
    }

    const ALL: [Outcome; 15] = [
        Outcome::Forwarded,
        Outcome::Public,
        Outcome::Session,
        Outcome::Denied(Denial::Missing),
        Outcome::Denied(Denial::Format),
        Outcome::Denied(Denial::Unknown),
        Outcome::Denied(Denial::Revoked),
        Outcome::Denied(Denial::Deleted),
        Outcome::Denied(Denial::Expired),
        Outcome::Permission,
        Outcome::RouteDenied,
        Outcome::BadPath,
        Outcome::UpstreamUnavailable,
        Outcome::UpstreamTimeout,
        Outcome::BadBody,
    ];

    /// The handle's slot: the position in `ALL` (a unit test keeps the two in step).
    fn index(self) -> usize {
        match self {
            Outcome::Forwarded => 0,
            Outcome::Public => 1,
            Outcome::Session => 2,
            Outcome::Denied(Denial::Missing) => 3,
            Outcome::Denied(Denial::Format) => 4,
            Outcome::Denied(Denial::Unknown) => 5,
            Outcome::Denied(Denial::Revoked) => 6,
            Outcome::Denied(Denial::Deleted) => 7,
            Outcome::Denied(Denial::Expired) => 8,
            Outcome::Permission => 9,
            Outcome::RouteDenied => 10,
            Outcome::BadPath => 11,
            Outcome::UpstreamUnavailable => 12,
            Outcome::UpstreamTimeout => 13,
            Outcome::BadBody => 14,
        }
    }
}

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    revocations: Counter,
    deletions: Counter,
    store: StoreMetrics,
    reloads: ReloadMetrics,
}

/// How a look at a changed config file (or a SIGHUP) ended, as the `result` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// Valid, and something in it was applied.
    Applied,
    /// Invalid or unreadable; the running config stays.
    Refused,
    /// Valid, with nothing that could be applied (comments, or only keys that need a restart).
    Unchanged,
}

impl ReloadResult {
    const ALL: [ReloadResult; 3] = [
        ReloadResult::Applied,
        ReloadResult::Refused,
        ReloadResult::Unchanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Applied => "applied",
            ReloadResult::Refused => "refused",
            ReloadResult::Unchanged => "unchanged",
        }
    }
}

/// The config reload handles, in the shape Prometheus gives its own.
struct ReloadMetrics {
    /// Indexed like `ReloadResult::ALL`.
    results: [Counter; ReloadResult::ALL.len()],
    /// 1 when the last look found a valid config, 0 when it was refused.
    last_ok: Gauge,
    /// When a valid config was last read (the start counts), in Unix seconds.
    last_success: Gauge,
}

/// How far this process follows the store's change log.
struct StoreMetrics {
    applied: Gauge,
    head: Gauge,
    lag: Gauge,
    followed: Counter,
}

/// One listener's handles.
#[derive(Clone)]
pub struct ListenerMetrics {
    requests: [Counter; Outcome::ALL.len()],
    /// 403s by the permission the route required, indexed by `Permission::slot`.
    permission_denials: Arc<[Counter]>,
    upstream_seconds: Histogram,
}

impl ListenerMetrics {
    pub fn record(&self, outcome: Outcome) {
        self.requests[outcome.index()].increment(1);
    }

    pub fn permission_denied(&self, required: Permission) {
        self.permission_denials[required.slot()].increment(1);
    }

    pub fn upstream_latency(&self, elapsed: Duration) {
        self.upstream_seconds.record(elapsed.as_secs_f64());
    }
}

static METADATA: Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(UPSTREAM_SECONDS.into()), LATENCY_BUCKETS)
            // The bucket list is a non-empty constant; this cannot fail.
            .expect("latency buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        let revocations = recorder.register_counter(&Key::from_static_name(REVOCATIONS), &METADATA);
        let deletions = recorder.register_counter(&Key::from_static_name(DELETIONS), &METADATA);
        let store = StoreMetrics {
            applied: recorder.register_gauge(&Key::from_static_name(STORE_APPLIED), &METADATA),
            head: recorder.register_gauge(&Key::from_static_name(STORE_HEAD), &METADATA),
            lag: recorder.register_gauge(&Key::from_static_name(STORE_LAG), &METADATA),
            followed: recorder.register_counter(&Key::from_static_name(STORE_FOLLOWED), &METADATA),
        };
        let reloads = ReloadMetrics {
            results: ReloadResult::ALL.map(|result| {
                let key =
                    Key::from_parts(CONFIG_RELOADS, vec![Label::new("result", result.as_str())]);
                recorder.register_counter(&key, &METADATA)
            }),
            last_ok: recorder.register_gauge(&Key::from_static_name(CONFIG_RELOAD_OK), &METADATA),
            last_success: recorder
                .register_gauge(&Key::from_static_name(CONFIG_RELOAD_TIME), &METADATA),
        };
        Metrics {
            recorder,
            handle,
            revocations,
            deletions,
            store,
            reloads,
        }
    }

    pub fn listener(&self, name: &str) -> ListenerMetrics {
        let listener = Label::new("listener", name.to_owned());
        let requests = Outcome::ALL.map(|outcome| {
            let key = Key::from_parts(
                REQUESTS,
                vec![listener.clone(), Label::new("outcome", outcome.as_str())],
            );
            self.recorder.register_counter(&key, &METADATA)
        });
        let permission_denials = Permission::all()
            .map(|permission| {
                let key = Key::from_parts(
                    PERMISSION_DENIALS,
                    vec![
                        listener.clone(),
                        Label::new("permission", permission.to_string()),
                    ],
                );
                self.recorder.register_counter(&key, &METADATA)
            })
            .collect();
        let upstream_seconds = self.recorder.register_histogram(
            &Key::from_parts(UPSTREAM_SECONDS, vec![listener]),
            &METADATA,
        );
        ListenerMetrics {
            requests,
            permission_denials,
            upstream_seconds,
        }
    }

    pub fn revoked(&self, n: usize) {
        self.revocations.increment(n as u64);
    }

    pub fn deleted(&self, n: usize) {
        self.deletions.increment(n as u64);
    }

    /// After following the store: the last change applied, the last committed (read after
    /// applying), the changes between them, and how many changes this pass applied.
    pub fn store_followed(&self, applied: u64, head: u64, changes: usize) {
        self.store.applied.set(applied as f64);
        self.store.head.set(head as f64);
        self.store.lag.set(head.saturating_sub(applied) as f64);
        self.store.followed.increment(changes as u64);
    }

    /// The config the server started with was read at `at`.
    pub fn config_loaded(&self, at: UnixSeconds) {
        self.reloads.last_ok.set(1.0);
        self.reloads.last_success.set(at as f64);
    }

    /// A config reload ended with `result` at `at`.
    pub fn config_reload(&self, result: ReloadResult, at: UnixSeconds) {
        let slot = ReloadResult::ALL
            .iter()
            .position(|r| *r == result)
            .expect("every result is in ALL");
        self.reloads.results[slot].increment(1);
        match result {
            ReloadResult::Refused => self.reloads.last_ok.set(0.0),
            ReloadResult::Applied | ReloadResult::Unchanged => self.config_loaded(at),
        }
    }

    /// Keeps histogram storage bounded when nobody scrapes.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The Prometheus text exposition, with token counts taken now.
    pub fn render(&self, cache: &TokenCache, now: UnixSeconds) -> String {
        let counts = cache.status_counts(now);
        for (status, n) in [
            ("active", counts.active),
            ("revoked", counts.revoked),
            ("expired", counts.expired),
        ] {
            let key = Key::from_parts(TOKENS, vec![Label::new("status", status)]);
            self.recorder.register_gauge(&key, &METADATA).set(n as f64);
        }
        self.handle.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_slots_match_their_list() {
        for (i, outcome) in Outcome::ALL.iter().enumerate() {
            assert_eq!(outcome.index(), i, "{outcome:?}");
        }
    }

    #[test]
    fn rendered_metrics_carry_listener_and_outcome() {
        let metrics = Metrics::new();
        let api = metrics.listener("api");
        api.record(Outcome::Denied(Denial::Revoked));
        api.permission_denied(Permission::parse("users:read").unwrap());
        api.upstream_latency(Duration::from_millis(3));
        metrics.revoked(2);
        metrics.config_loaded(1_700_000_000);
        metrics.config_reload(ReloadResult::Refused, 1_700_000_100);
        let text = metrics.render(&TokenCache::new(), 0);
        for line in [
            r#"tollgate_config_reloads_total{result="refused"} 1"#,
            r#"tollgate_config_reloads_total{result="applied"} 0"#,
            "tollgate_config_last_reload_successful 0",
            "tollgate_config_last_reload_success_timestamp_seconds 1700000000",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}: {text}");
        }
        assert!(
            text.contains(r#"tollgate_requests_total{listener="api",outcome="revoked"} 1"#),
            "{text}"
        );
        assert!(text.contains("tollgate_revocations_total 2"), "{text}");
        assert!(
            text.contains(
                r#"tollgate_permission_denials_total{listener="api",permission="users:read"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"tollgate_tokens{status="active"} 0"#),
            "{text}"
        );
        assert!(
            text.contains("tollgate_upstream_duration_seconds_bucket"),
            "{text}"
        );
    }
}
