//! A local simulator of the Scalekit AgentKit and Anthropic Managed Agents APIs, for the tests,
//! the demo and the benchmarks (`agentcron sim`). One axum server on one port serves both APIs
//! (Scalekit `/oauth/token` and `/api/v1/…`, Anthropic `/v1/…`: the paths do not collide), the
//! Virtual MCP servers it hands out (`{base_url}/mcp/v3/servers/{uuid}`, checked as JWT `aud`),
//! and a control API under `/_sim/`. Everything is in memory.
//!
//! **Architecture invariant:** it has its own wire structs and imports nothing of the client
//! side (ARCHITECTURE.md's module graph gives `sim` no arrows), so a client bug cannot be
//! copied into the fake and pass.
//!
//! Map: `scalekit` and `anthropic` are the two APIs; `agent` is the scripted agent and
//! `tools` its MCP tools; `session` is a session's event log; `faults`, `audit` and
//! `control` are the test hooks; `state`, `fixtures`, `ids`, `jwt`, `query` and
//! `error` are shared plumbing.
//!
//! Where the vendors' documentation leaves a point open, the choice made (and where):
//! - The stream does not replay events sent before it opened; `events.list` has the history.
//!   It stays open after `session.status_idle`, with a `:keep-alive` comment every
//!   `heartbeat`; it sends no `id:` lines.
//! - A missing `anthropic-beta` (like a missing `anthropic-version`) is 400
//!   `invalid_request_error`; an unknown body member is a 400 naming it; environment delete is
//!   200 with a body; `processed_at` is null in the send echo; toolsets default to
//!   `always_allow` (agent) and `always_ask` (MCP); 409s use `invalid_request_error`.
//! - An unknown vault in `sessions.create` is a 404 `not_found_error` (and an audit violation).
//! - `always_ask`: the model request ends before the `requires_action` idle and a new one
//!   starts after the confirmed tool's result; a confirmation naming anything but the awaited
//!   tool use is a 400; a `user.message` or `user.interrupt` drops an unanswered tool use
//!   (`agent.rs`, `anthropic/events.rs`).
//! - Scalekit: create answers 201, everything else 200; empty values are omitted (proto3 JSON)
//!   unless `emit_unpopulated`; a duplicate config name is 409 `ALREADY_EXISTS`; token-endpoint
//!   errors use the OAuth shape; see `scalekit/accounts.rs` for links and minting.
//! - Session tokens are HS256 (the real ones are RS256) with the real claims.

mod agent;
mod anthropic;
mod audit;
mod control;
mod error;
mod faults;
mod fixtures;
mod ids;
mod jwt;
mod query;
mod scalekit;
mod session;
mod state;
mod tools;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt as _;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use error::SimError;

use self::error::{AnthropicError, ScalekitError};
use self::state::{STATUSES, SimState};

/// How to run the simulator. `Default` gives the documented credentials, seed 1, any port.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to listen on. Defaults to 127.0.0.1.
    pub bind: IpAddr,
    /// Port; 0 picks a free one. Defaults to 0.
    pub port: u16,
    /// Seed of the mailboxes, ids and fault rates. Defaults to 1.
    pub seed: u64,
    /// The Scalekit client id accepted by `/oauth/token`. Defaults to `sim-client-id`.
    pub scalekit_client_id: String,
    /// The Scalekit client secret. Defaults to `sim-client-secret`.
    pub scalekit_client_secret: String,
    /// The Anthropic API key. Defaults to `sim-anthropic-key`.
    pub anthropic_api_key: String,
    /// Status of both connections of a user seen for the first time; `None` = no account.
    /// Defaults to `ACTIVE`.
    pub default_connection_status: Option<String>,
    /// Lifetime of Scalekit access tokens. Defaults to 86 399 s, as the docs show.
    pub scalekit_token_ttl: Duration,
    /// Emit empty Scalekit fields instead of omitting them (proto3). Defaults to false.
    pub emit_unpopulated: bool,
    /// Interval of SSE heartbeats. Defaults to 15 s.
    pub heartbeat: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            seed: 1,
            scalekit_client_id: "sim-client-id".to_owned(),
            scalekit_client_secret: "sim-client-secret".to_owned(),
            anthropic_api_key: "sim-anthropic-key".to_owned(),
            default_connection_status: Some("ACTIVE".to_owned()),
            scalekit_token_ttl: Duration::from_secs(86_399),
            emit_unpopulated: false,
            heartbeat: Duration::from_secs(15),
        }
    }
}

impl SimConfig {
    fn validate(&self) -> Result<(), SimError> {
        if let Some(status) = &self.default_connection_status
            && !STATUSES.contains(&status.as_str())
        {
            return Err(SimError::Config(format!(
                "default connection status {status:?} is not one of {STATUSES:?}"
            )));
        }
        if self.scalekit_client_id.is_empty()
            || self.scalekit_client_secret.is_empty()
            || self.anthropic_api_key.is_empty()
        {
            return Err(SimError::Config("credentials must not be empty".to_owned()));
        }
        if self.heartbeat.is_zero() {
            return Err(SimError::Config("heartbeat must be positive".to_owned()));
        }
        Ok(())
    }
}

/// A running simulator. Dropping it stops the server (without waiting); prefer
/// [`SimHandle::shutdown`] to wait until it has stopped.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    base_url: String,
    config: SimConfig,
    /// Cancels the server, every open stream, hanging request and agent task.
    cancel: CancellationToken,
    /// The server task; it also waits for the agent tasks before it ends.
    task: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the base URL of both APIs (`SCALEKIT_ENV_URL`,
    /// `ANTHROPIC_BASE_URL`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The configuration it runs with (its credentials, seed, …).
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Stops accepting, ends open streams and hanging requests, and waits for the server and the
    /// agent tasks to finish.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
        {
            tracing::warn!(message = "Simulator task ended abnormally.", %error);
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Starts the simulator and returns once it is listening.
///
/// # Errors
/// [`SimError::Config`] for an invalid configuration, [`SimError::Bind`] when the address cannot
/// be bound.
pub async fn serve(config: SimConfig) -> Result<SimHandle, SimError> {
    config.validate()?;
    let wanted = SocketAddr::new(config.bind, config.port);
    let listener = listen(wanted).map_err(|source| SimError::Bind { addr: wanted, source })?;
    let addr = listener.local_addr().map_err(|source| SimError::Bind { addr: wanted, source })?;
    // A wildcard bind is reachable on loopback; that is the URL to hand out.
    let host = if addr.ip().is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { addr.ip() };
    let base_url = format!("http://{}", SocketAddr::new(host, addr.port()));
    let cancel = CancellationToken::new();
    let state = Arc::new(SimState::new(config.clone(), base_url.clone(), cancel.clone()));
    let app = router(&state);
    // SSE frames are small: without TCP_NODELAY, Nagle + delayed ACK would hold them ~40 ms.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(message = "Could not set TCP_NODELAY.", %error);
        }
    });
    let server_cancel = cancel.clone();
    let task = tokio::spawn(async move {
        let stopped = server_cancel.cancelled_owned();
        if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
            tracing::error!(message = "Simulator server failed.", %error);
        }
        state.tasks.close();
        state.tasks.wait().await;
    });
    tracing::info!(message = "Simulator listening.", %base_url);
    Ok(SimHandle { addr, base_url, config, cancel, task: Some(task) })
}

/// Pending connections the kernel queues before `accept`. Tokio's default (1,024) overflows
/// when a thousand sessions open their streams at once on a busy machine, and a connection
/// dropped from a full queue can end in a reset instead of a retry.
const BACKLOG: u32 = 4_096;

/// A listening socket on `addr` with [`BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Both APIs behind request counting and fault injection, the control API beside them.
fn router(state: &Arc<SimState>) -> Router {
    let apis = Router::new()
        .merge(scalekit::routes(state.clone()))
        .merge(anthropic::routes(state.clone()))
        .fallback(not_found)
        .layer(from_fn_with_state(state.clone(), faults::inject))
        .layer(from_fn_with_state(state.clone(), audit::count_requests));
    // `/_sim/` as well as `/_sim`: a nested `/` matches only the latter.
    Router::new()
        .route("/_sim/", axum::routing::get(control::list_routes))
        .nest("/_sim", control::routes())
        .merge(apis)
        .with_state(state.clone())
}

/// Unknown paths get the 404 of the API they look like.
async fn not_found(request: Request) -> Response {
    let path = request.uri().path();
    if path.starts_with("/v1/") {
        AnthropicError::new(StatusCode::NOT_FOUND, "not_found_error", format!("{path} not found"))
            .into_response()
    } else if path.starts_with("/api/") || path.starts_with("/oauth/") {
        ScalekitError::not_found("Not Found").into_response()
    } else {
        (StatusCode::NOT_FOUND, "not found\n").into_response()
    }
}
