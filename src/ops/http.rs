//! The ops HTTP servers. The worker's: `/healthz`, `/readyz`, `/metrics` (Prometheus text),
//! the JSON reports under `/api/*` (`json_api.rs`), the charts' data (`charts.rs`), the operator
//! actions (POST only, `act.rs`), and the dashboard at `/` (a static page, its scripts and
//! its style, embedded in the binary). The scheduler's: `/healthz`, `/readyz` and `/metrics`.
//!
//! Every request must name this server in its `Host` and every response carries the security
//! headers (`guard.rs`); connections are capped and timed (`listen.rs`). With `ops.token` set,
//! every route but the probes, the style and the sign-in needs `Authorization: Bearer <token>`
//! or the session cookie the dashboard's sign-in sets (`signin.rs`; `/metrics` too, unless
//! `ops.open_metrics`), and the dashboard's page shows the sign-in form until then; an action
//! and the sign-in also need no foreign `Origin`.
//! Report data comes from [`crate::ops::report`] and [`crate::records::transcript`], metric
//! names from [`crate::telemetry::metrics`]; run state changes only through the queue's
//! operator commands ([`crate::queue::Queue::requeue`], `cancel`, `retry`).

mod act;
mod charts;
mod guard;
mod json_api;
mod listen;
mod signin;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::RedisConn;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::ConnectionManagerConfig;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, OpsConfig};
use crate::keys::Keys;
use crate::outcome::RunState;
use crate::queue::Queue;
use crate::telemetry::Redactor;
use crate::telemetry::metrics;

use self::json_api::{ApiError, notices, run, run_transcript, runs, status};

/// The dashboard: plain HTML, JavaScript and CSS, no build step, no external assets.
const DASHBOARD: &str = include_str!("dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");
const CHARTS_JS: &str = include_str!("dashboard/charts.js");
const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");
/// `/api/runs` lists this many runs unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 50;
/// The largest `limit` accepted.
const MAX_LIMIT: usize = 1000;
/// `/readyz` answers within this, whatever Redis does.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the ops server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpsError {
    /// A non-loopback bind without a token would expose run data to the network.
    #[error("ops.token: required when ops.bind ({0}) is not a loopback address")]
    TokenRequired(SocketAddr),
    /// The address could not be bound: taken by another process (a second worker on this
    /// host), or not this host's. The OS error is shown once, in this message.
    #[error(
        "cannot listen on {addr} for the ops server ({error}); set ops.bind \
         (AGENTCRON__OPS__BIND) to another address, or to \"off\" to run this worker without \
         the ops server (no /metrics, /readyz or dashboard)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why, from the OS. Not a `source`: the message shows it, and a source would be
        /// printed a second time by every error chain.
        error: std::io::Error,
    },
    /// The Redis URL is unusable.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// The Redis client could not be built (a TLS file, the URL).
    #[error("{0}")]
    Connect(String),
    /// The server failed while serving.
    #[error("ops server: {0}")]
    Serve(std::io::Error),
}

/// Everything the handlers share; cheap to clone.
#[derive(Debug, Clone)]
pub struct OpsState {
    config: Arc<Config>,
    keys: Keys,
    /// Connects lazily and reconnects by itself, so the server starts (and `/readyz` can say
    /// "not ready") while Redis is down.
    redis: RedisConn,
    metrics: PrometheusHandle,
    /// Responses pass through it, like the CLI's output.
    redactor: Redactor,
    /// The worker's view of Redis and of its lease, when this server runs beside a worker.
    worker: Option<Arc<crate::queue::Health>>,
    /// The operator commands, on the same lazy connection.
    queue: Queue,
    /// Depth and tick samples for the charts, bounded; written by the sampler `serve` runs.
    history: charts::SharedHistory,
}

impl OpsState {
    /// Prepares the state for `config` and installs the metrics recorder (see
    /// [`metrics::install`]). Does not connect to Redis yet.
    ///
    /// # Errors
    /// [`OpsError::Redis`] when the Redis URL cannot be used.
    pub fn new(config: Arc<Config>, redactor: Redactor) -> Result<Self, OpsError> {
        // Few, short retries: an ops request should fail fast rather than hang on Redis.
        let redis_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let redis = config.redis.connect_lazy(redis_config).map_err(OpsError::Connect)?;
        let keys = config.redis.keys();
        let queue = Queue::with_connection(redis.clone(), keys.clone());
        let (metrics, history) = (metrics::install(), charts::SharedHistory::default());
        Ok(Self { config, keys, redis, metrics, redactor, worker: None, queue, history })
    }

    /// The same state for a server beside a worker: `/readyz` also fails while the worker's
    /// lease goes unrenewed (its heartbeat cannot reach Redis), since its runs may be reaped.
    #[must_use]
    pub fn beside_worker(mut self, health: Arc<crate::queue::Health>) -> Self {
        self.worker = Some(health);
        self
    }
}

/// Binds the worker's ops listener; `None` when `ops.bind` is `"off"`. Refuses a non-loopback
/// address without a token, as configuration validation does: defence in depth for
/// configurations built in code.
///
/// # Errors
/// [`OpsError::TokenRequired`], or [`OpsError::Bind`] when the address cannot be bound.
pub async fn bind(config: &OpsConfig) -> Result<Option<TcpListener>, OpsError> {
    bind_at(config.bind, config).await
}

/// Binds the scheduler's ops listener (`ops.scheduler_bind`), as [`bind`] does the worker's.
///
/// # Errors
/// [`OpsError::TokenRequired`], or [`OpsError::Bind`] when the address cannot be bound.
pub async fn bind_scheduler(config: &OpsConfig) -> Result<Option<TcpListener>, OpsError> {
    bind_at(config.scheduler_bind, config).await
}

async fn bind_at(
    addr: Option<SocketAddr>,
    config: &OpsConfig,
) -> Result<Option<TcpListener>, OpsError> {
    let Some(addr) = addr else { return Ok(None) };
    if config.token.is_none() && !addr.ip().is_loopback() {
        return Err(OpsError::TokenRequired(addr));
    }
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(Some(listener)),
        Err(error) => Err(OpsError::Bind { addr, error }),
    }
}

/// Serves the worker's routes until `shutdown` is cancelled, then finishes the requests in
/// progress. Samples the charts' history once a minute meanwhile.
///
/// # Errors
/// None today; kept so that a server that fails can say so.
pub async fn serve(
    state: OpsState,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), OpsError> {
    let max = state.config.ops.max_connections;
    let sampler = charts::sample_every_minute(state.clone(), shutdown.clone());
    // Both end on `shutdown`: the sampler at once, the server once its requests are done.
    tokio::join!(listen::serve(listener, router(state), max, shutdown), sampler);
    Ok(())
}

/// Serves the scheduler's routes (probes and `/metrics`) until `shutdown` is cancelled.
///
/// # Errors
/// None today; kept so that a server that fails can say so.
pub async fn serve_scheduler(
    state: OpsState,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), OpsError> {
    let max = state.config.ops.max_connections;
    listen::serve(listener, scheduler_router(state), max, shutdown).await;
    Ok(())
}

/// Every route of the worker's server. The probes are open: an orchestrator's HTTP probe
/// cannot read a token from a secret, and they say only whether Redis answers and the
/// configuration is complete. So is the style, which the sign-in page uses and which holds no
/// data.
fn router(state: OpsState) -> Router {
    let data = Router::new()
        .route("/api/status", get(status))
        .route("/api/runs", get(runs))
        .route("/api/runs/{id}", get(run))
        .route("/api/runs/{id}/transcript", get(run_transcript))
        .route("/api/notices", get(notices))
        .route("/api/charts", get(charts::charts))
        .route_layer(middleware::from_fn_with_state(state.clone(), guard::require_token));
    // A GET of an action path is a 405; every method passes the token first.
    let acts = Router::new()
        .route("/api/runs/{id}/requeue", post(act::requeue).get(act::post_only))
        .route("/api/runs/{id}/cancel", post(act::cancel).get(act::post_only))
        .route("/api/runs/{id}/retry", post(act::retry).get(act::post_only))
        .route("/api/notices/{user}/{connection}/link", post(act::notice_link).get(act::post_only))
        .route_layer(middleware::from_fn(guard::same_origin))
        .route_layer(middleware::from_fn_with_state(state.clone(), guard::require_token));
    let dashboard = Router::new()
        .route("/", get(dashboard_page))
        .route("/dashboard.js", get(|| async { asset("text/javascript", DASHBOARD_JS) }))
        .route("/charts.js", get(|| async { asset("text/javascript", CHARTS_JS) }))
        .route_layer(middleware::from_fn_with_state(state.clone(), signin::require_sign_in));
    let sign_in = Router::new()
        .route("/signin", post(signin::sign_in))
        .route("/signout", post(signin::sign_out))
        .route_layer(middleware::from_fn(guard::same_origin));
    Router::new()
        .route("/dashboard.css", get(|| async { asset("text/css", DASHBOARD_CSS) }))
        .merge(dashboard)
        .merge(sign_in)
        .merge(data)
        .merge(acts)
        .merge(common(&state))
        .fallback(|| async { ApiError::NotFound("no such endpoint".to_owned()) })
        .layer(middleware::from_fn_with_state(state.clone(), guard::allowed_host))
        .layer(middleware::from_fn(guard::security_headers))
        .with_state(state)
}

/// The scheduler's routes: the probes and `/metrics`.
fn scheduler_router(state: OpsState) -> Router {
    common(&state)
        .fallback(|| async { ApiError::NotFound("no such endpoint".to_owned()) })
        .layer(middleware::from_fn_with_state(state.clone(), guard::allowed_host))
        .layer(middleware::from_fn(guard::security_headers))
        .with_state(state)
}

/// The probes and `/metrics` (behind the token unless `ops.open_metrics`), which both servers
/// have.
fn common(state: &OpsState) -> Router<OpsState> {
    let mut metrics = Router::new().route("/metrics", get(prometheus));
    if !state.config.ops.open_metrics {
        let guard = middleware::from_fn_with_state(state.clone(), guard::require_token);
        metrics = metrics.route_layer(guard);
    }
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).merge(metrics)
}

/// The dashboard's page; with a token set, with a button to sign out.
async fn dashboard_page(State(state): State<OpsState>) -> Html<String> {
    let sign_out = r#"<form id="signout" method="post" action="/signout"><button type="submit">Sign out</button></form>"#;
    let button = if state.config.ops.token.is_some() { sign_out } else { "" };
    Html(DASHBOARD.replace("<!-- sign-out -->", button))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when Redis answers and the configuration has what the worker needs.
async fn readyz(State(state): State<OpsState>) -> Response {
    let mut conn = state.redis.clone();
    let checks = async {
        let missing = crate::setup::reported_missing(&mut conn, &state.keys).await?;
        let policy = crate::queue::read_policy(&mut conn).await?;
        Ok::<_, crate::setup::SetupError>((missing, policy))
    };
    let unknown = || ("unknown".to_owned(), "unknown".to_owned());
    let (redis, (setup, eviction)) = match tokio::time::timeout(READY_TIMEOUT, checks).await {
        Ok(Ok((missing, policy))) => {
            // A run found a setup object gone at the vendor: runs wait until `setup` runs.
            let setup = missing.map_or_else(|| "ok".to_owned(), |mark| missing_object(&mark));
            ("ok", (setup, eviction_check(policy.as_deref(), state.config.redis.allow_eviction)))
        }
        Ok(Err(error)) => {
            tracing::warn!(message = "Readiness: Redis failed.", %error);
            ("unreachable", unknown())
        }
        Err(_) => ("timeout", unknown()),
    };
    let config = if state.config.require_secrets().is_ok() { "ok" } else { "missing secrets" };
    let lease = lease_check(state.worker.as_deref(), state.config.worker.lease);
    let ready = [redis, config, &setup, &eviction, &lease].iter().all(|check| *check == "ok");
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let status = if ready { "ready" } else { "unavailable" };
    let checks = json!({
        "redis": redis, "config": config, "setup": setup, "eviction": eviction, "lease": lease,
    });
    (code, Json(json!({"status": status, "checks": checks}))).into_response()
}

/// `"ok"` while the worker beside this server renews its lease (or there is no worker), else
/// how long it has not.
fn lease_check(worker: Option<&crate::queue::Health>, lease: Duration) -> String {
    match worker {
        Some(health) if health.lease_at_risk(lease) => match health.since_renewed() {
            Some(since) => format!("not renewed for {}s", since.as_secs()),
            None => "not registered".to_owned(),
        },
        _ => "ok".to_owned(),
    }
}

/// `"ok"` for a Redis that never drops keys (or when `redis.allow_eviction` accepts one that
/// does), else what it would do.
fn eviction_check(policy: Option<&str>, allowed: bool) -> String {
    match policy {
        Some(policy) if policy != crate::queue::SAFE_POLICY && !allowed => {
            format!("maxmemory-policy {policy} can drop keys")
        }
        _ => "ok".to_owned(),
    }
}

/// `"<object> missing"` from the mark a run left.
fn missing_object(mark: &str) -> String {
    let mark: serde_json::Value = serde_json::from_str(mark).unwrap_or_default();
    format!("{} missing", mark["object"].as_str().unwrap_or("an object"))
}

/// Prometheus text; the queue and notice gauges are read from Redis first. A Redis failure
/// leaves them at their last values rather than failing the scrape.
async fn prometheus(State(state): State<OpsState>) -> Response {
    if let Err(error) = refresh_gauges(&state).await {
        metrics::redis_error("ops_scrape");
        tracing::warn!(message = "Could not refresh the queue gauges.", %error);
    }
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], state.metrics.render()).into_response()
}

/// Four round trips: the worker ids, every depth in one pipeline (as `report::status` counts
/// them), the sizes of the state indexes, the open notices. `dead`, `needs_auth` and `queued`
/// are the `runs:state:<s>` indexes, not the capped dead log, so they fall when a run is
/// requeued or cancelled.
async fn refresh_gauges(state: &OpsState) -> Result<(), redis::RedisError> {
    let (mut conn, keys) = (state.redis.clone(), &state.keys);
    let workers: Vec<String> =
        redis::cmd("HKEYS").arg(keys.workers()).query_async(&mut conn).await?;
    let worker_ids: Vec<&str> = workers.iter().map(String::as_str).collect();
    let depths = super::report::depths(&mut conn, keys, &worker_ids).await?;
    let indexed = [RunState::Dead, RunState::NeedsAuth, RunState::Queued];
    let mut pipe = redis::pipe();
    for shard in keys.each_shard() {
        for state in indexed {
            pipe.cmd("ZCARD").arg(shard.runs_by_state(state.as_str()));
        }
    }
    let sizes: Vec<u64> = pipe.query_async(&mut conn).await?;
    let notices: u64 = redis::cmd("ZCARD").arg(keys.notice_index()).query_async(&mut conn).await?;
    for (i, state) in indexed.into_iter().enumerate() {
        let total = sizes.iter().skip(i).step_by(indexed.len()).sum();
        metrics::queue_depth(state.as_str(), total);
    }
    metrics::queue_depth("pending", depths.pending);
    metrics::queue_depth("scheduled", depths.scheduled);
    metrics::queue_depth("rejected", depths.rejected);
    metrics::queue_depth("intake", depths.intake);
    metrics::queue_depth("running", depths.running);
    metrics::notices_open(notices);
    Ok(())
}

impl OpsState {
    /// A 200 JSON response, redacted like the CLI's `--json` output.
    fn json(&self, value: &impl serde::Serialize) -> Response {
        match serde_json::to_string(value) {
            Ok(text) => {
                let body = self.redactor.redact(&text).into_owned();
                ([(header::CONTENT_TYPE, "application/json")], body).into_response()
            }
            Err(error) => {
                tracing::warn!(message = "Could not serialise a report.", %error);
                ApiError::Internal.into_response()
            }
        }
    }
}
