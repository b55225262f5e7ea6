//! The worker daemon: concurrency, heartbeats, orphan recovery and graceful shutdown around the
//! run pipeline, built on apalis (`WorkerBuilder` with tower layers for concurrency, tracing,
//! timeout and catch-panic) over our Redis backend ([`crate::queue`]).
//!
//! Owns process lifecycle. It must not contain run logic (that is `run`, reached through
//! [`Handler`]) or queue layout (that is `queue`).
//!
//! # Shutdown
//!
//! When `shutdown` is cancelled: the intake mover, the promoter and the reaper stop; apalis
//! stops fetching; in-flight runs get `shutdown_grace` to finish; then their tokens are
//! cancelled and they get [`CANCEL_SLACK`] to return; a run that still has not returned is
//! dropped. Finally the heartbeat stops and everything this worker still holds goes back to the
//! queue with its attempt refunded: recoverable, not failed.

mod acks;
mod cancels;
mod intake_mover;
mod maintenance;
mod pipeline;
mod reconcile;
mod retention;
mod service;
mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apalis::layers::WorkerBuilderExt;
use apalis::layers::catch_panic::CatchPanicLayer;
use apalis_core::worker::builder::WorkerBuilder;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::service::{FinishLayer, Finisher, HandlerService};
use crate::config::Config;
use crate::ids::RunId;
use crate::outcome::Outcome;
use crate::queue::{self, FetchConfig, Lease, Queue, QueueError};

/// After `shutdown_grace`, cancelled runs get this long to return before they are dropped.
pub const CANCEL_SLACK: Duration = Duration::from_secs(10);
/// How long one idle `BLMOVE` waits; also bounds how stale a broken blocking connection gets.
const BLOCK: Duration = Duration::from_secs(2);

/// Why the worker stopped abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// Redis failed where the worker cannot continue (only while starting).
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Redis can drop keys under memory pressure, which loses runs without a trace.
    #[error(
        "Redis's maxmemory-policy is `{0}`: under memory pressure it drops keys, and a run whose record or queue entry is dropped is lost without a trace. Set `maxmemory-policy noeviction` on the server (see the README's Redis section), or set redis.allow_eviction = true to run anyway"
    )]
    Eviction(String),
    /// The Redis user may not do what agentcron needs (an ACL without its rules).
    #[error(
        "the Redis user may not {op}: {message}. Grant it the rules in the README's Production Redis section (`~<prefix>:* {rules}`; on a cluster the key patterns are `~{{<prefix>}}:* ~{{<prefix>:*}}:*`)",
        rules = crate::queue::ACL_RULES
    )]
    Permission {
        /// What agentcron was doing.
        op: &'static str,
        /// Redis's refusal.
        message: String,
    },
    /// The apalis worker ended with an error.
    #[error("worker framework: {0}")]
    Framework(String),
    /// The run webhook's HTTP client could not be built (`[http]`, `[webhook]`).
    #[error("the run webhook's HTTP client: {0}")]
    Webhook(String),
}

/// Executes one run attempt. The run pipeline implements this; tests use their own.
pub trait Handler: Clone + Send + Sync + 'static {
    /// Runs (or resumes) `job.run_id`. Must return soon after `job.cancel` is cancelled,
    /// with [`Outcome::Cancelled`] unless it finished anyway.
    fn handle(&self, job: JobContext) -> impl Future<Output = Outcome> + Send;
}

/// What a handler gets for one attempt.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The run to execute; its record is `<p>:run:<run_id>`.
    pub run_id: RunId,
    /// This attempt, 1-based. Attempts killed with their worker count; shutdown refunds them.
    pub attempt: u32,
    /// The attempt's fence: every side effect checks that the run's record still carries it,
    /// so an attempt taken over while its worker was frozen stops without acting.
    pub fence: u64,
    /// `[worker] max_attempts`.
    pub max_attempts: u32,
    /// The worker id holding the run (as in `<p>:workers` and the record's `worker`).
    pub worker_id: String,
    /// True when the run was taken over from an attempt that never ended (its worker died or
    /// froze past its lease; the sweep returned it): resume from its phase.
    pub resumed: bool,
    /// Cancelled at the run timeout, when shutdown's grace ends, when this worker lost its
    /// lease, or when an operator cancels the run. Check it between phases.
    pub cancel: CancellationToken,
    /// The run record as it was read when the attempt started (before `state` became
    /// `running`), so that the handler need not read it again.
    pub record: Option<std::collections::HashMap<String, String>>,
}

/// Runs the worker until `shutdown` is cancelled and the drain is over: the intake mover, the
/// fetch loop (apalis), heartbeats, the reaper (orphan recovery), delayed-run promotion.
/// Redis outages are retried with backoff, also while connecting.
///
/// # Errors
/// [`WorkerError::Framework`] when apalis ends the worker (never expected: our backend does
/// not fail).
pub async fn run<H: Handler>(
    config: &Config,
    handler: H,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    run_watched(config, handler, shutdown, Arc::default()).await
}

/// [`run`], reporting Redis's health and the lease's renewals to `health`, which the caller
/// shares with its ops server (`/readyz`).
///
/// # Errors
/// As [`run`].
pub async fn run_watched<H: Handler>(
    config: &Config,
    handler: H,
    shutdown: CancellationToken,
    health: Arc<queue::Health>,
) -> Result<(), WorkerError> {
    let Some(queue) = maintenance::connect(config, &shutdown).await else { return Ok(()) };
    let queue = queue.with_health(health);
    check_eviction(&queue, config).await?;
    queue.check_layout().await?;
    run_on(queue, config, handler, shutdown, &worker_id()).await
}

/// Refuses a Redis that can drop keys, unless `redis.allow_eviction` says to run anyway.
async fn check_eviction(queue: &Queue, config: &Config) -> Result<(), WorkerError> {
    match queue.eviction_policy().await {
        Ok(Some(policy)) if policy != crate::queue::SAFE_POLICY => {
            if !config.redis.allow_eviction {
                return Err(WorkerError::Eviction(policy));
            }
            tracing::warn!(
                message = "Redis can drop keys (redis.allow_eviction is set): runs may be lost under memory pressure.",
                policy
            );
        }
        Ok(_) => {}
        Err(error) if error.is_permission() => {
            let op = "run INFO (it reads maxmemory-policy)";
            return Err(WorkerError::Permission { op, message: error.to_string() });
        }
        Err(error) => {
            tracing::warn!(message = "Could not read Redis's maxmemory-policy.", error.message = %error);
        }
    }
    Ok(())
}

/// [`run`] on an existing queue handle with a chosen worker id (unique per process).
///
/// # Errors
/// As [`run`].
pub async fn run_on<H: Handler>(
    queue: Queue,
    config: &Config,
    handler: H,
    shutdown: CancellationToken,
    worker_id: &str,
) -> Result<(), WorkerError> {
    let root = CancellationToken::new();
    let lease = Arc::new(Lease::new(worker_id.to_owned(), root.clone()));
    let in_flight = Arc::new(queue::Slots::default());
    let runs = cancels::InFlight::default();
    let beat = maintenance::Beat::new(config, Arc::clone(&in_flight), runs.clone());
    if !maintenance::register(&queue, &lease.current(), &beat, &shutdown).await? {
        return Ok(());
    }
    tracing::info!(message = "Worker started.", worker_id, concurrency = config.worker.concurrency);
    // Background loops: the heartbeat stops last (after the drain), the others at shutdown.
    let stop_heartbeat = CancellationToken::new();
    let mut background = JoinSet::new();
    let heartbeat = maintenance::spawn_heartbeat(
        config.clone(),
        (Arc::clone(&lease), Arc::clone(queue.health())),
        beat,
        stop_heartbeat.clone(),
    );
    // If this future is dropped mid-way (its task aborted), the heartbeat thread must stop too,
    // or it would keep a dead worker's lease alive and its runs would never be recovered.
    let _stop_heartbeat_on_drop = stop_heartbeat.clone().drop_guard();
    let (beat_every, lease_every) = (config.worker.heartbeat, config.worker.lease);
    let me = (Arc::clone(&lease), lease_every);
    let periods = (beat_every, lease_every);
    background.spawn(maintenance::reaper(queue.clone(), me, periods, shutdown.clone()));
    background.spawn(maintenance::promoter(queue.clone(), shutdown.clone()));
    background.spawn(retention::keeper(queue.clone(), config.clone(), shutdown.clone()));
    background.spawn(intake_mover::run(queue.clone(), Arc::clone(&lease), shutdown.clone()));
    let every = config.worker.lease / 3;
    let tracking = (runs.clone(), Arc::clone(&in_flight));
    let reconciler = reconcile::Reconciler::new(queue.clone(), Arc::clone(&lease), tracking, every);
    background.spawn(reconciler.run(shutdown.clone()));

    let tracked = (in_flight, runs);
    let res = execute(&queue, config, handler, &lease, tracked, &shutdown, &root).await;

    stop_heartbeat.cancel();
    while background.join_next().await.is_some() {}
    // The heartbeat thread notices the cancellation within one sleep; joining it blocks, so
    // off the runtime's threads.
    if tokio::task::spawn_blocking(move || heartbeat.join()).await.is_err() {
        tracing::error!(message = "The heartbeat thread panicked.");
    }
    maintenance::release(&queue, &lease.current()).await;
    tracing::info!(message = "Worker stopped.", worker_id);
    res
}

/// The apalis worker, until it ends: normally after shutdown and the drain.
async fn execute<H: Handler>(
    queue: &Queue,
    config: &Config,
    handler: H,
    lease: &Arc<Lease>,
    (in_flight, runs): (Arc<queue::Slots>, cancels::InFlight),
    shutdown: &CancellationToken,
    root: &CancellationToken,
) -> Result<(), WorkerError> {
    let worker = &config.worker;
    let fetch = FetchConfig {
        concurrency: worker.concurrency,
        max_attempts: worker.max_attempts,
        block: BLOCK,
        lease: worker.lease,
    };
    let (handoff, handed) = tokio::sync::mpsc::unbounded_channel();
    let slots = (Arc::clone(&in_flight), handed);
    let backend = queue::Backend::new(queue.clone(), Arc::clone(lease), fetch, slots);
    let hooks = webhooks::Webhooks::from_config(config, queue)?;
    if let Some(hooks) = &hooks {
        tokio::spawn(Arc::clone(hooks).sweep(worker.heartbeat, shutdown.clone()));
    }
    let outbox = hooks.as_ref().map(|hooks| hooks.outbox()).unwrap_or_default();
    // Ends go over a connection of their own, so that recording them never waits behind a
    // fetch's reply on the shared one (and the other way round); the shared one when Redis
    // will not give another now.
    let ack_queue = match Queue::connect(&config.redis).await {
        Ok(own) => own.with_health(Arc::clone(queue.health())),
        Err(_) => queue.clone(),
    };
    let refiller = acks::Refiller {
        lease: Arc::clone(lease),
        max_attempts: worker.max_attempts,
        lease_every: worker.lease,
        stop: shutdown.clone(),
        handoff,
        slots: Arc::clone(&in_flight),
    };
    let sizes = (worker.finish_linger, worker.concurrency);
    let (acks, acking) = acks::Acks::spawn(ack_queue, outbox, sizes, Some(refiller));
    let finisher = Finisher::new(acks, config, (in_flight, runs), hooks.clone());
    let apalis_worker = WorkerBuilder::new(lease.current().id.to_string())
        .backend(backend)
        .concurrency(worker.concurrency)
        .layer(FinishLayer::new(finisher))
        // Timeout outside tracing, so that a timed-out run shows in its trace (apalis warns
        // at start otherwise).
        .timeout(worker.run_timeout + CANCEL_SLACK)
        .enable_tracing()
        .layer(CatchPanicLayer::with_panic_handler(service::on_panic))
        .build(HandlerService::new(handler, worker.run_timeout, worker.max_attempts));
    let signal = shutdown.clone();
    let signal = async move {
        signal.cancelled().await;
        Ok::<(), apalis_core::error::WorkerError>(())
    };
    let mut running = Box::pin(apalis_worker.run_until(signal));
    let res = tokio::select! {
        res = &mut running => res,
        () = shutdown.cancelled() => drain(&mut running, worker.shutdown_grace, root).await,
    };
    // The last ends are recorded before the caller releases what this worker holds (the
    // task ends when the worker's layers, which hold its handles, are gone).
    drop(running);
    if tokio::time::timeout(CANCEL_SLACK, acking).await.is_err() {
        tracing::warn!(
            message = "Ends of runs were still being recorded at shutdown; the reaper recovers their runs."
        );
    }
    if let Some(hooks) = hooks {
        hooks.drain(worker.shutdown_grace).await;
    }
    res.map_err(|error| WorkerError::Framework(error.to_string()))
}

/// Waits for in-flight runs: `grace`, then cancels them and waits [`CANCEL_SLACK`], then
/// gives up on the rest (they are dropped with the future and released by the caller).
async fn drain<F>(running: &mut F, grace: Duration, root: &CancellationToken) -> F::Output
where
    F: Future<Output = Result<(), apalis_core::error::WorkerError>> + Unpin,
{
    tracing::info!(
        message = "Shutting down: draining in-flight runs.",
        grace_secs = grace.as_secs_f64()
    );
    if let Ok(res) = tokio::time::timeout(grace, &mut *running).await {
        return res;
    }
    tracing::warn!(message = "Shutdown grace over; cancelling in-flight runs.");
    root.cancel();
    if let Ok(res) = tokio::time::timeout(CANCEL_SLACK, &mut *running).await {
        return res;
    }
    tracing::warn!(message = "Runs ignored cancellation; dropping them. They stay recoverable.");
    Ok(())
}

/// `<host>-<pid>-<random>`: unique per process and per call, readable in `<p>:workers`.
pub fn worker_id() -> String {
    let host = crate::config::host_name();
    format!("{host}-{}-{:06x}", std::process::id(), fastrand::u32(..0x0100_0000))
}
