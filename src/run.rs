//! The run pipeline: one agent session for one user, as a state machine whose phases are
//! recorded in the run record (each marker is written beside the phase's first remote call,
//! `progress.rs`; what a phase established is durable before anything depends on it), so a
//! run interrupted anywhere resumes where it stopped.
//!
//! ```text
//! (budget) ─► checking ─► minting ─► vault ─► session ─► message ─► streaming ─► succeeded
//!    └─► skipped (over a token budget, `budget.rs`; not started, not retried)
//!                 └─► needs_auth (a notice per inactive connection; not retried)
//!              └── a lapsed connection at minting or at the mid-session refresh, or the MCP
//!                  server refusing the user's credentials: needs_auth too (`setback`)
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

mod budget;
mod context;
mod ending;
mod fence;
mod progress;
mod setback;
mod setup_missing;

pub mod connections;
pub mod message;
pub mod session;
pub mod token;
pub mod turn;
mod user_lease;
pub use self::user_lease::WAITERS_CAP as LEASE_WAITERS_CAP;
pub mod vault;

use crate::config::RedisConn;
use tokio_util::sync::CancellationToken;

use crate::ids::{RunId, SessionId, UserId};
use crate::records::{self, Fields, Phase};

use self::context::throttle;
pub use self::context::{Context, clients, http_client, paced};
pub use self::ending::{Finish, RunError};
use self::message::EventStream;
use self::progress::{Progress, span};
use tracing::Instrument;

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
    /// Runs of the user that were deferred while this attempt held the user's lease, popped
    /// when it released the lease: the worker wakes them now rather than at their due time.
    pub woken: Vec<RunId>,
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

/// What the pipeline knows of a run from its record.
#[derive(Debug, Clone)]
pub struct Run {
    /// The run id.
    pub id: RunId,
    /// The user.
    pub user: UserId,
    /// The schedule, for scheduled runs.
    pub schedule: Option<String>,
    /// The prompt given at enqueue, if any: final when `rendered`, else a template.
    pub prompt: Option<String>,
    /// The zone of the run's local time, when the scheduler gave one.
    pub timezone: Option<String>,
    /// The scheduled local fire time, RFC 3339, when the scheduler gave one.
    pub local_time: Option<String>,
    /// Whether `prompt` was rendered when the run was enqueued.
    pub rendered: bool,
    /// The text of the `user.message`, decided before the attempt's first side effect.
    pub message: String,
    /// The session, once created.
    pub session_id: Option<SessionId>,
    /// Whether the `user.message` was accepted in an earlier attempt.
    pub message_sent: bool,
    /// Whether an earlier attempt asked for a session whose id may have been lost.
    pub session_requested_at_ms: Option<i64>,
    /// This attempt's fence (`None` when executed outside a worker, as tests do).
    pub fence: Option<u64>,
    /// Whether this attempt took the run over from one that never reported (its worker was
    /// killed or frozen past its lease): the record was still `running` when it started, or the
    /// sweep had returned it.
    pub taken_over: bool,
    /// When the run was created (unix ms): the day its usage is counted in.
    pub created_at_ms: Option<i64>,
}

/// What the worker's start script said of this attempt.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// The fence the start set.
    pub fence: u64,
    /// The run was taken over from an attempt that never ended (the start found it still
    /// `running`, or returned by the sweep).
    pub taken_over: bool,
}

impl Run {
    fn from_record(
        id: &RunId,
        record: &Fields,
        attempt: Option<Attempt>,
    ) -> Result<Self, RunError> {
        let user = record.get("user").ok_or_else(|| RunError::NotFound(id.clone()))?;
        Ok(Self {
            id: id.clone(),
            user: UserId::trusted(user),
            schedule: record.get("schedule").map(str::to_owned),
            prompt: record.get("prompt").map(str::to_owned),
            timezone: record.get("timezone").map(str::to_owned),
            local_time: record.get("local_time").map(str::to_owned),
            rendered: record.get("rendered") == Some("1"),
            message: String::new(),
            session_id: record.get("session_id").map(SessionId::from),
            message_sent: record.get("message_sent_at_ms").is_some(),
            session_requested_at_ms: record
                .get("session_requested_at_ms")
                .and_then(|v| v.parse().ok()),
            fence: attempt.map(|attempt| attempt.fence),
            taken_over: attempt.is_some_and(|attempt| attempt.taken_over),
            created_at_ms: record.get("created_at_ms").and_then(|v| v.parse().ok()),
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
///
/// # Traces
/// Each attempt is a trace of its own (its span has no parent, whatever the caller's): a root
/// span `run attempt` with a span per phase and one per remote call below them. With traces on,
/// the attempt's trace id is the span's `trace_id` field (so it is on every log line of the
/// run) and the record's `trace_id`, written with the first phase marker.
#[tracing::instrument(
    skip_all,
    parent = None,
    fields(run_id = %run_id, trace_id = tracing::field::Empty, otel.name = "run attempt")
)]
pub async fn execute(
    ctx: &Context,
    run_id: &RunId,
    record: Option<Fields>,
    attempt: Option<Attempt>,
    cancel: &CancellationToken,
    timeline: &mut Timeline,
) -> Result<Finish, RunError> {
    let trace_id = crate::telemetry::trace::trace_id(&tracing::Span::current());
    if let Some(trace_id) = &trace_id {
        tracing::Span::current().record("trace_id", trace_id.as_str());
    }
    let mut conn = ctx.redis.clone();
    let record = match record {
        Some(record) => Some(record),
        None => records::load_run(&mut conn, &ctx.keys, run_id).await?,
    };
    let record = record.ok_or_else(|| RunError::NotFound(run_id.clone()))?;
    let mut run = Run::from_record(run_id, &record, attempt)?;
    timeline.schedule.clone_from(&run.schedule);
    if !run.message_sent {
        run.message = message::prompt(ctx, &mut conn, &run).await?;
    }
    if record.get("cancel_requested_at_ms").is_some() {
        session::stop_if_cancelled(ctx, &mut conn, run_id).await?;
        return Err(RunError::Cancelled);
    }
    // Locals live to the end of their scope, and this one would be held by every streaming
    // run (about 1 KB) though nothing reads it again.
    drop(record);
    let lease = ctx.config.worker.lease;
    let held = match user_lease::acquire(&mut conn, &ctx.keys, &run.user, run_id, lease).await? {
        user_lease::Acquired::Held(held) => held,
        user_lease::Acquired::Busy { holder, ttl } => {
            return Err(RunError::Busy { user: run.user, holder, retry_after: ttl });
        }
    };
    let mut progress = Progress { ctx, run: &run, cancel, timeline, trace_id };
    let mut res = match setup_missing::guard(ctx, &mut conn).await {
        Ok(()) => pipeline(&mut progress, &mut conn).await,
        Err(error) => Err(error),
    };
    if let Err(error) = res {
        res = Err(setup_missing::check(ctx, &mut conn, error).await);
    }
    // Before the user's lease goes: the next run of the user must not meet a working agent.
    if matches!(res, Err(RunError::Cancelled))
        && let Err(error) = session::stop_if_cancelled(ctx, &mut conn, run_id).await
    {
        res = Err(error);
    }
    let ids = (&run.user, run_id);
    // A fail point stands for a crash, which releases nothing.
    if !matches!(res, Err(RunError::FailPoint(_))) {
        match user_lease::release(&mut conn, &ctx.keys, ids, lease, &held).await {
            Ok(woken) => timeline.woken = woken,
            Err(error) => {
                tracing::warn!(message = "Could not release the user's lease; it will expire.", %error);
            }
        }
    }
    res
}

/// [`execute`], with the time the attempt spent waiting on the remote APIs (requests, retry
/// pauses, the event stream): a run's own overhead is its wall time minus that.
pub async fn execute_measured(
    ctx: &Context,
    run_id: &RunId,
    record: Option<Fields>,
    attempt: Option<Attempt>,
    cancel: &CancellationToken,
    timeline: &mut Timeline,
) -> (Result<Finish, RunError>, std::time::Duration) {
    // Boxed: see `api::wait::measure`.
    let executed = execute(ctx, run_id, record, attempt, cancel, timeline);
    crate::api::wait::measure(Box::pin(executed)).await
}

async fn pipeline(at: &mut Progress<'_>, conn: &mut RedisConn) -> Result<Finish, RunError> {
    let (ctx, run, cancel) = (at.ctx, at.run, at.cancel);
    fence::outwait_stalled(ctx, run, cancel).await?;
    // A run whose message is sent has started its turn: it finishes, whatever it costs.
    if !run.message_sent
        && let Some(spent) = budget::check(ctx, conn, run).await?
    {
        return Ok(Finish::Skipped { reason: "budget", detail: spent.detail() });
    }
    // This attempt's trace on the record, with the first marker it writes.
    let facts: Facts = at.trace_id.take().map(|id| ("trace_id", id)).into_iter().collect();
    // Each phase's future is boxed: rustc lays them out side by side in this function's state
    // rather than overlapping them (24 KB, most of it dead once streaming starts), and a
    // worker holds one such state per in-flight run. Boxed, the pre-stream phases' memory is
    // freed when each ends.
    let checking = Box::pin(connections::check(ctx, conn, run));
    let checked =
        at.enter_with(Phase::Checking, facts, checking).instrument(span(Phase::Checking)).await?;
    if !checked.inactive.is_empty() {
        return Ok(Finish::NeedsAuth { connections: checked.inactive });
    }
    let minting = Box::pin(token::mint(ctx, &run.user));
    let minting = at.enter_with(Phase::Minting, Facts::new(), minting);
    let token = match minting.instrument(span(Phase::Minting)).await {
        Ok(token) => token,
        Err(error) => return Box::pin(setback::settle(ctx, conn, run, None, error)).await,
    };
    let refreshing = Box::pin(vault::refresh(ctx, conn, run, &token.token));
    let vault = at
        .enter_with(Phase::Vault, Facts::new(), refreshing)
        .instrument(span(Phase::Vault))
        .await?;
    // Only its expiry is needed from here on; the token itself would be held for the stream.
    let expires_at = token.expires_at;
    drop(token);
    // Awaited before the session is asked for: its request mark is how a later attempt finds
    // a session whose id this one may lose.
    let (session_id, facts) = async {
        at.enter(Phase::Session, session::request_mark(run)).await?;
        Box::pin(session::ensure(ctx, run, &vault.vault_id)).await
    }
    .instrument(span(Phase::Session))
    .await?;
    let sending = Box::pin(message::ensure_sent(ctx, run, &session_id));
    let sent = at.enter_with(Phase::Message, facts, sending);
    let (opened, facts) = sent.instrument(span(Phase::Message)).await?;
    let tokens = turn::TokenState { expires_at, vault };
    let streaming = async {
        // Awaited before any event is recorded: events follow the sent mark (see `turn`).
        at.enter(Phase::Streaming, facts).await?;
        stream(at, conn, session_id, opened, tokens, checked.mcp_noticed).await
    };
    streaming.instrument(span(Phase::Streaming)).await
}

/// The streaming phase, to its end: the turn followed, its result recorded, the session
/// archived.
async fn stream(
    at: &Progress<'_>,
    conn: &mut RedisConn,
    session_id: SessionId,
    opened: Option<EventStream>,
    tokens: turn::TokenState,
    mcp_noticed: bool,
) -> Result<Finish, RunError> {
    let (ctx, run, cancel) = (at.ctx, at.run, at.cancel);
    if let Err(error) = turn::follow(ctx, conn, run, &session_id, opened, tokens, cancel).await {
        // A turn that ended in failure produced and used something too.
        if matches!(error, RunError::SessionFailed { .. } | RunError::SessionEnded { .. })
            && let Err(record_error) = turn::result::record(ctx, conn, run).await
        {
            tracing::warn!(message = "Recording the failed turn's result failed.", error = %record_error);
        }
        return Box::pin(setback::settle(ctx, conn, run, Some(&session_id), error)).await;
    }
    turn::result::record(ctx, conn, run).await?;
    budget::note_overrun(ctx, conn, run).await?;
    if mcp_noticed {
        connections::resolve_mcp_refusal(ctx, conn, run).await?;
    }
    if ctx.config.anthropic.archive_sessions {
        fence::check(ctx, run).await?;
        ctx.anthropic.archive_session(session_id.as_str()).await?;
    }
    Ok(Finish::Succeeded { session_id })
}

/// Fires a test fail point.
fn hook(ctx: &Context, point: FailPoint) -> Result<(), RunError> {
    if ctx.fail_point == Some(point) { Err(RunError::FailPoint(point)) } else { Ok(()) }
}
