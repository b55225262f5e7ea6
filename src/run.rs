//! The run pipeline: one agent session for one user, as a state machine whose phases are
//! persisted in the run record as each starts (what a phase established is durable before
//! anything depends on it), so a run interrupted anywhere resumes where it stopped.
//!
//! ```text
//! checking ─► minting ─► vault ─► session ─► message ─► streaming ─► succeeded
//!    └─► needs_auth (a notice per inactive connection; not retried)
//! ```
//!
//! [`execute`] reads like the pipeline: `connections::check`, `token::mint`, `vault::refresh`,
//! `session::ensure`, `message::ensure_sent`, `turn::follow`. Crash safety: a resumed run
//! never creates a second session (the id is persisted at once, and a creation whose id was
//! lost is found again by its metadata), never sends a second `user.message` (when the sent
//! mark is missing it reads the session's history first), and re-attaches to the stream
//! skipping events already recorded. This module must not parse wire formats (`api`) or choose
//! when runs happen (`schedule`, `queue`); it returns how the run ended and the worker records
//! the state.

pub mod connections;
pub mod message;
pub mod session;
pub mod token;
pub mod turn;
mod user_lease;
pub mod vault;

use std::sync::Arc;

use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, anthropic, scalekit};
use crate::backoff::RetryPolicy;
use crate::config::Config;
use crate::ids::{RunId, SessionId, UserId};
use crate::keys::Keys;
use crate::outcome::ErrorClass;
use crate::ratelimit::{RateLimitError, RateLimiter};
use crate::records::{self, Fields, Phase, RecordsError, now_ms};
use crate::setup::{self, Setup, SetupError};
use crate::telemetry::Redactor;

/// Record fields a phase established (a session id, the sent mark), persisted with the next
/// phase marker in one write rather than each in its own.
pub type Facts = Vec<(&'static str, String)>;

/// What one attempt did, for the run and phase metrics: kept in memory as the attempt goes,
/// rather than read back from the record at its end (a Redis read per run).
#[derive(Debug, Default)]
pub struct Timeline {
    /// The run's schedule, once its record was read.
    pub schedule: Option<String>,
    /// Each phase this attempt entered, with when.
    pub entered: Vec<(Phase, std::time::Instant)>,
}

/// Test hooks that stop a run the way a crash would: no cleanup, lease left held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    /// Just before `phase` is entered.
    Before(Phase),
    /// After the session was created, before its id was persisted.
    SessionCreated,
    /// After the `user.message` was accepted, before the sent mark was persisted.
    MessageSent,
    /// After the turn's last event was recorded in the transcript, before it was acted on.
    TurnEndRecorded,
}

/// Everything a run needs, shared by all runs of a worker.
#[derive(Debug, Clone)]
pub struct Context {
    /// The configuration.
    pub config: Arc<Config>,
    /// Key templates.
    pub keys: Keys,
    /// Redis (multiplexed, reconnecting).
    pub redis: ConnectionManager,
    /// Scalekit.
    pub scalekit: Arc<scalekit::Client>,
    /// Anthropic.
    pub anthropic: anthropic::Client,
    /// The ids created by `setup`.
    pub setup: Setup,
    /// Learns every minted token so that no output shows it.
    pub redactor: Redactor,
    /// For the notice webhook.
    pub http: reqwest::Client,
    /// The fleet-wide rate limiter, when `[limits]` sets a rate.
    pub limiter: Option<RateLimiter>,
    /// Test hook; `None` in production.
    pub fail_point: Option<FailPoint>,
}

/// Why a run could not be built or did not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A remote call failed (after its own retries).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Redis or a transcript file failed.
    #[error(transparent)]
    Records(#[from] RecordsError),
    /// Setup is missing or failed.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The fleet-wide rate limiter failed.
    #[error(transparent)]
    RateLimit(#[from] RateLimitError),
    /// The run record does not exist.
    #[error("run {0} not found")]
    NotFound(RunId),
    /// Another run of the same user holds the user's lease.
    #[error("user {user} is busy with run {holder}")]
    Busy {
        /// The user.
        user: UserId,
        /// The run holding the lease.
        holder: RunId,
        /// When the lease expires unless renewed.
        retry_after: std::time::Duration,
    },
    /// The session ended without finishing the turn.
    #[error("session {session_id} ended: {reason}")]
    SessionEnded {
        /// The session.
        session_id: SessionId,
        /// `terminated`, `retries_exhausted`, `budget_reached`, …
        reason: String,
    },
    /// Shutdown or timeout stopped the run at a safe point; it is resumable.
    #[error("cancelled at a safe point")]
    Cancelled,
    /// A test fail point fired.
    #[error("fail point {0:?}")]
    FailPoint(FailPoint),
}

impl From<redis::RedisError> for RunError {
    fn from(error: redis::RedisError) -> Self {
        Self::Records(RecordsError::Redis(error))
    }
}

impl RunError {
    /// How the worker should treat the failure.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Api(error) => error.class(),
            Self::Records(_) | Self::Busy { .. } | Self::Cancelled | Self::FailPoint(_) => {
                ErrorClass::Transient
            }
            Self::Setup(SetupError::Redis(_)) | Self::RateLimit(RateLimitError::Redis(_)) => {
                ErrorClass::Transient
            }
            Self::Setup(SetupError::Api(error)) => error.class(),
            Self::Setup(_) | Self::RateLimit(_) | Self::NotFound(_) | Self::SessionEnded { .. } => {
                ErrorClass::Permanent
            }
        }
    }
}

impl RunError {
    /// The delay the failure asks for before the next attempt, if any.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Busy { retry_after, .. } => Some(*retry_after),
            Self::Api(error) => error.retry_after(),
            _ => None,
        }
    }
}

/// How a run ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// The turn ended normally.
    Succeeded {
        /// The session.
        session_id: SessionId,
    },
    /// Connections need the user; notices are open. Not retried.
    NeedsAuth {
        /// The inactive connections.
        connections: Vec<String>,
    },
}

impl Context {
    /// Builds the clients from the configuration and loads the setup ids from Redis.
    ///
    /// # Errors
    /// [`RunError`] when credentials are missing, Redis is unreachable or setup has not run.
    pub async fn connect(config: Arc<Config>, redactor: Redactor) -> Result<Self, RunError> {
        let client = redis::Client::open(config.redis.url.as_str())?;
        let redis_config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(std::time::Duration::from_secs(5)))
            .set_connection_timeout(Some(std::time::Duration::from_secs(5)));
        let mut redis = client.get_connection_manager_with_config(redis_config).await?;
        let keys = Keys::new(config.redis.prefix.clone());
        let setup = setup::load(&mut redis, &keys).await?;
        let (scalekit, anthropic, http) = clients(&config)?;
        let limited = config.limits.sessions_per_second.is_some()
            || config.limits.tokens_per_second.is_some();
        let limiter = limited.then(|| RateLimiter::new(redis.clone(), keys.clone()));
        Ok(Self {
            config,
            keys,
            redis,
            scalekit: Arc::new(scalekit),
            anthropic,
            setup,
            redactor,
            http,
            limiter,
            fail_point: None,
        })
    }
}

/// Both API clients and the plain HTTP client, from the configuration's credentials.
///
/// # Errors
/// [`RunError`] when a credential is missing or TLS cannot start.
pub fn clients(
    config: &Config,
) -> Result<(scalekit::Client, anthropic::Client, reqwest::Client), RunError> {
    let missing = |var: &str| RunError::Setup(SetupError::Credentials(var.to_owned()));
    let http = crate::api::http_client(&config.http)?;
    let policy = RetryPolicy::from(&config.retry);
    let secrets = &config.secrets;
    let client_id =
        secrets.scalekit_client_id.clone().ok_or_else(|| missing("SCALEKIT_CLIENT_ID"))?;
    let secret =
        secrets.scalekit_client_secret.clone().ok_or_else(|| missing("SCALEKIT_CLIENT_SECRET"))?;
    let key = secrets.anthropic_api_key.clone().ok_or_else(|| missing("ANTHROPIC_API_KEY"))?;
    let scalekit =
        scalekit::Client::new(http.clone(), &config.scalekit.env_url, client_id, secret, policy);
    let anthropic =
        anthropic::Client::new(http.clone(), &config.anthropic.base_url, key, policy, &config.http);
    Ok((scalekit, anthropic, http))
}

/// What the pipeline knows of a run from its record.
#[derive(Debug, Clone)]
pub struct Run {
    /// The run id.
    pub id: RunId,
    /// The user.
    pub user: UserId,
    /// The schedule, for scheduled runs.
    pub schedule: Option<String>,
    /// The prompt given at enqueue, if any.
    pub prompt: Option<String>,
    /// The session, once created.
    pub session_id: Option<SessionId>,
    /// Whether the `user.message` was accepted in an earlier attempt.
    pub message_sent: bool,
    /// Whether an earlier attempt asked for a session whose id may have been lost.
    pub session_requested_at_ms: Option<i64>,
}

impl Run {
    fn from_record(id: &RunId, record: &Fields) -> Result<Self, RunError> {
        let user = record.get("user").ok_or_else(|| RunError::NotFound(id.clone()))?;
        Ok(Self {
            id: id.clone(),
            user: UserId::trusted(user),
            schedule: record.get("schedule").map(str::to_owned),
            prompt: record.get("prompt").map(str::to_owned),
            session_id: record.get("session_id").map(SessionId::from),
            message_sent: record.get("message_sent_at_ms").is_some(),
            session_requested_at_ms: record
                .get("session_requested_at_ms")
                .and_then(|v| v.parse().ok()),
        })
    }
}

/// Executes run `run_id` to its end, or to the first failure the worker must handle, noting
/// in `timeline` the phases it enters. `record` is the run record when the caller has read
/// it (the worker's start does); else it is read here.
///
/// # Errors
/// [`RunError`]; its [`RunError::class`] says whether a retry can help.
///
/// # Cancel safety
/// Cancelling `cancel` stops the run at the next safe point (between phases or between
/// events) with [`RunError::Cancelled`]; everything persisted so far lets it resume. An
/// operator's cancel request reaches `cancel` through the worker's heartbeat; one made before
/// this attempt started is in the record, and ends the attempt before it does anything.
#[tracing::instrument(skip_all, fields(run_id = %run_id))]
pub async fn execute(
    ctx: &Context,
    run_id: &RunId,
    record: Option<Fields>,
    cancel: &CancellationToken,
    timeline: &mut Timeline,
) -> Result<Finish, RunError> {
    let mut conn = ctx.redis.clone();
    let record = match record {
        Some(record) => Some(record),
        None => records::load_run(&mut conn, &ctx.keys, run_id).await?,
    };
    let record = record.ok_or_else(|| RunError::NotFound(run_id.clone()))?;
    let run = Run::from_record(run_id, &record)?;
    timeline.schedule.clone_from(&run.schedule);
    if record.get("cancel_requested_at_ms").is_some() {
        return Err(RunError::Cancelled);
    }
    // Locals live to the end of their scope, and this one would be held by every streaming
    // run (about 1 KB) though nothing reads it again.
    drop(record);
    let lease = ctx.config.worker.lease;
    let mut held = match user_lease::acquire(&mut conn, &ctx.keys, &run.user, run_id, lease).await?
    {
        user_lease::Acquired::Held(held) => held,
        user_lease::Acquired::Busy { holder, ttl } => {
            return Err(RunError::Busy { user: run.user, holder, retry_after: ttl });
        }
    };
    let mut progress = Progress { ctx, run: &run, cancel, timeline };
    let res = pipeline(&mut progress, &mut conn, &mut held).await;
    let ids = (&run.user, run_id);
    // A fail point stands for a crash, which releases nothing.
    if !matches!(res, Err(RunError::FailPoint(_)))
        && let Err(error) = user_lease::release(&mut conn, &ctx.keys, ids, lease, &held).await
    {
        tracing::warn!(message = "Could not release the user's lease; it will expire.", %error);
    }
    res
}

/// [`execute`], with the time the attempt spent waiting on the remote APIs (requests, retry
/// pauses, the event stream): a run's own overhead is its wall time minus that.
pub async fn execute_measured(
    ctx: &Context,
    run_id: &RunId,
    record: Option<Fields>,
    cancel: &CancellationToken,
    timeline: &mut Timeline,
) -> (Result<Finish, RunError>, std::time::Duration) {
    // Boxed: see `api::wait::measure`.
    crate::api::wait::measure(Box::pin(execute(ctx, run_id, record, cancel, timeline))).await
}

async fn pipeline(
    at: &mut Progress<'_>,
    conn: &mut ConnectionManager,
    held: &mut user_lease::Held,
) -> Result<Finish, RunError> {
    let (ctx, run, cancel) = (at.ctx, at.run, at.cancel);
    // Each phase's future is boxed: rustc lays them out side by side in this function's state
    // rather than overlapping them (24 KB, most of it dead once streaming starts), and a
    // worker holds one such state per in-flight run. Boxed, the pre-stream phases' memory is
    // freed when each ends.
    let checking = Box::pin(connections::check(ctx, conn, run));
    let inactive = at.enter_with(Phase::Checking, Facts::new(), checking).await?;
    if !inactive.is_empty() {
        return Ok(Finish::NeedsAuth { connections: inactive });
    }
    let minting = Box::pin(token::mint(ctx, &run.user));
    let token = at.enter_with(Phase::Minting, Facts::new(), minting).await?;
    let refreshing = Box::pin(vault::refresh(ctx, conn, &run.user, &token.token));
    let vault = at.enter_with(Phase::Vault, Facts::new(), refreshing).await?;
    // Only its expiry is needed from here on; the token itself would be held for the stream.
    let expires_at = token.expires_at;
    drop(token);
    // Awaited before the session is asked for: its request mark is how a later attempt finds
    // a session whose id this one may lose.
    at.enter(Phase::Session, session::request_mark(run)).await?;
    let (session_id, facts) = Box::pin(session::ensure(ctx, run, &vault.vault_id)).await?;
    let sending = Box::pin(message::ensure_sent(ctx, run, &session_id));
    let (opened, facts) = at.enter_with(Phase::Message, facts, sending).await?;
    // Awaited before any event is recorded: events follow the sent mark (see `events`).
    at.enter(Phase::Streaming, facts).await?;
    let tokens = turn::TokenState { expires_at, vault, lease: held };
    turn::follow(ctx, conn, run, &session_id, opened, tokens, cancel).await?;
    if ctx.config.anthropic.archive_sessions {
        ctx.anthropic.archive_session(session_id.as_str()).await?;
    }
    Ok(Finish::Succeeded { session_id })
}

/// One attempt's way through the phases: where it persists them and what it notes.
struct Progress<'a> {
    ctx: &'a Context,
    run: &'a Run,
    cancel: &'a CancellationToken,
    timeline: &'a mut Timeline,
}

impl Progress<'_> {
    /// A safe point: persists `facts` (what the phase before established), then, unless
    /// cancellation or a fail point stops the run here, enters `phase`, in the same write.
    async fn enter(&mut self, phase: Phase, facts: Facts) -> Result<(), RunError> {
        self.enter_with(phase, facts, std::future::ready(Ok(()))).await
    }

    /// [`Progress::enter`], with the phase's `work` started beside the write rather than after
    /// it: the write's round trip hides behind the phase's first remote call instead of adding
    /// to the run's time. Both are awaited before the next phase. For phases whose start needs
    /// nothing durable first: a crash between the two loses at most a marker, or a session id
    /// that the request mark lets a later attempt find again. The write goes on its own handle
    /// of the worker's connection, since `work` may hold the pipeline's.
    async fn enter_with<T>(
        &mut self,
        phase: Phase,
        mut facts: Facts,
        work: impl Future<Output = Result<T, RunError>>,
    ) -> Result<T, RunError> {
        let mut writer = self.ctx.redis.clone();
        let (keys, run_id) = (&self.ctx.keys, &self.run.id);
        let stop = if self.cancel.is_cancelled() {
            Some(RunError::Cancelled)
        } else {
            hook(self.ctx, FailPoint::Before(phase)).err()
        };
        if let Some(stop) = stop {
            if !facts.is_empty() {
                records::set_run(&mut writer, keys, run_id, &facts).await?;
            }
            return Err(stop);
        }
        facts.push(("phase", phase.as_str().to_owned()));
        facts.push((phase.at_field(), now_ms().to_string()));
        self.timeline.entered.push((phase, std::time::Instant::now()));
        tracing::debug!(message = "Phase entered.", stage = phase.as_str());
        let (written, done) =
            tokio::join!(records::set_run(&mut writer, keys, run_id, &facts), work);
        written?;
        done
    }
}

/// Waits for the fleet-wide rate of `name` (`sessions` or `tokens`) when one is configured.
async fn throttle(ctx: &Context, name: &str, rate: Option<f64>) -> Result<(), RunError> {
    if let (Some(limiter), Some(rate)) = (&ctx.limiter, rate) {
        limiter.acquire(name, rate).await?;
    }
    Ok(())
}

/// Fires a test fail point.
fn hook(ctx: &Context, point: FailPoint) -> Result<(), RunError> {
    if ctx.fail_point == Some(point) { Err(RunError::FailPoint(point)) } else { Ok(()) }
}
