//! The worker's periodic duties besides running runs: connect and register, heartbeat (which
//! also notices a lost lease, takes operators' cancel requests and renews the per-user leases
//! of the runs in flight), reap the runs of dead workers, promote due retries, and release
//! everything at shutdown. Each loop retries Redis with backoff and never ends the worker.
//!
//! This module must not execute runs.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::WorkerError;
use super::cancels::InFlight;
use crate::config::Config;
use crate::queue::{Backoff, Health, Lease, Owner, Queue};
use crate::telemetry::metrics;

/// How often due retries are promoted: bounds how late a retry or `not_before` run starts.
const PROMOTE_EVERY: Duration = Duration::from_millis(250);

/// Connects, retrying with backoff until Redis answers or `shutdown` is cancelled (`None`).
pub(super) async fn connect(config: &Config, shutdown: &CancellationToken) -> Option<Queue> {
    let mut backoff = Backoff::default();
    let mut logged = false;
    loop {
        match Queue::connect(&config.redis).await {
            Ok(queue) => return Some(queue),
            Err(error) if !logged => {
                tracing::warn!(message = "Redis unavailable; retrying with backoff.", error.message = %error);
                logged = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// What a heartbeat says about this worker, and how long its lease lasts.
#[derive(Debug, Clone)]
pub(super) struct Beat {
    lease: Duration,
    every: Duration,
    concurrency: usize,
    started_at_ms: i64,
    in_flight: Arc<crate::queue::Slots>,
    /// Where the cancel requests the heartbeat takes are delivered, and whose per-user leases
    /// it renews.
    runs: InFlight,
}

impl Beat {
    pub(super) fn new(
        config: &Config,
        in_flight: Arc<crate::queue::Slots>,
        runs: InFlight,
    ) -> Self {
        Self {
            lease: config.worker.lease,
            every: config.worker.heartbeat,
            concurrency: config.worker.concurrency,
            started_at_ms: crate::queue::unix_ms(SystemTime::now()),
            in_flight,
            runs,
        }
    }

    fn info(&self) -> String {
        json!({
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "started_at_ms": self.started_at_ms,
            "heartbeat_at_ms": crate::queue::unix_ms(SystemTime::now()),
            "in_flight": self.in_flight.taken(),
            "concurrency": self.concurrency,
        })
        .to_string()
    }
}

/// Creates `owner`'s lease, retrying until it works; false when `shutdown` came first.
///
/// # Errors
/// [`WorkerError::Permission`] when the Redis user may not run the queue's scripts: retrying
/// would not help, and the worker must say what to grant.
pub(super) async fn register(
    queue: &Queue,
    owner: &Owner,
    beat: &Beat,
    shutdown: &CancellationToken,
) -> Result<bool, WorkerError> {
    let mut backoff = Backoff::default();
    loop {
        match queue.heartbeat(owner, beat.lease, &beat.info(), true).await {
            Ok(_) => {
                queue.health().ok();
                queue.health().renewed();
                return Ok(true);
            }
            Err(error) if error.is_permission() => {
                let op = "run the queue's scripts (the heartbeat script on <prefix>:q:leases)";
                return Err(WorkerError::Permission { op, message: error.to_string() });
            }
            Err(error) => queue.health().failed("register", &error),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(false),
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// Renews the lease every `heartbeat` and passes on operators' cancel requests for this
/// worker's runs. A lost lease means the reaper gave this worker's runs to others: cancel them
/// now (they must not run twice) and continue under a new id. Runs [`heartbeat`] on its own
/// thread, with its own single-threaded runtime and Redis connection, until `stop`. Thousands
/// of busy runs on the main runtime must not delay the heartbeat: a starved heartbeat lets
/// this worker's lease expire and the reaper hand its runs to other workers (measured: 10,000
/// in-flight sessions on 2 cores did exactly that).
pub(super) fn spawn_heartbeat(
    config: Config,
    (lease, health): (Arc<Lease>, Arc<Health>),
    beat: Beat,
    stop: CancellationToken,
) -> std::thread::JoinHandle<()> {
    let body = move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(message = "Cannot start the heartbeat runtime.", %error);
                return;
            }
        };
        runtime.block_on(async move {
            if let Some(queue) = connect(&config, &stop).await {
                heartbeat(queue.with_health(health), lease, beat, stop).await;
            }
        });
    };
    // Spawning a thread fails only when the process is out of threads; then nothing else
    // would work either, so the panic names the cause.
    std::thread::Builder::new()
        .name("agentcron-heartbeat".to_owned())
        .spawn(body)
        .expect("the operating system starts the heartbeat thread")
}

async fn heartbeat(queue: Queue, lease: Arc<Lease>, beat: Beat, stop: CancellationToken) {
    let mut register = false;
    // Requests for runs not (yet) in flight here: a request taken between a run's start and its
    // handler's registration is tried once more at the next beat, then forgotten.
    let mut unmatched = Vec::new();
    let mut users_renewed = Instant::now();
    // A failed beat is retried promptly, not a whole beat later: a dropped connection or a
    // refused write must not let the lease run down while Redis is answering again.
    let mut retry = Backoff::default();
    let mut delay = beat.every;
    while sleep_or_stop(delay, &stop).await {
        // With Sentinel, a failover is noticed here within a beat, not only at the next error:
        // the old master accepts writes for seconds after it (they are lost with it).
        queue.connection().follow_master().await;
        let owner = lease.current();
        delay = beat.every;
        match queue.heartbeat(&owner, beat.lease, &beat.info(), register).await {
            Ok(Some(cancels)) => {
                queue.health().ok();
                queue.health().renewed();
                retry.reset();
                register = false;
                beat.runs.cancel(std::mem::take(&mut unmatched));
                unmatched = beat.runs.cancel(cancels);
                if users_renewed.elapsed() >= beat.lease / 3
                    && renew_user_leases(&queue, &beat).await
                {
                    users_renewed = Instant::now();
                }
            }
            Ok(None) => {
                queue.health().ok();
                tracing::warn!(
                    message = "Lease lost: another worker took this worker's runs; cancelling them here.",
                    worker_id = %owner.id
                );
                let next = lease.rotate(&owner);
                tracing::info!(message = "Continuing under a new worker id.", worker_id = %next.id);
                register = true;
                delay = Duration::ZERO;
            }
            Err(error) => {
                queue.health().failed("heartbeat", &error);
                delay = retry.next_delay().min(beat.every);
            }
        }
        metrics::jobs_in_flight(beat.in_flight.taken());
    }
}

/// Renews the per-user lease of every run in flight here, whatever each run is waiting on (a
/// remote call that blocks longer than the lease must not let another run of the same user
/// start). Returns whether Redis answered.
async fn renew_user_leases(queue: &Queue, beat: &Beat) -> bool {
    let holders = beat.runs.holders();
    if holders.is_empty() {
        return true;
    }
    match queue.renew_user_leases(&holders, beat.lease).await {
        Ok(_) => true,
        Err(error) => {
            queue.health().failed("renew_user_leases", &error);
            false
        }
    }
}

/// Every `every`, hands the runs of workers whose lease expired back to the ready list. Every
/// worker reaps; the script is atomic, so two reapers never move the same run. Every `sweep`
/// it also walks part of the `running` index for runs nobody holds (their worker gone and
/// their queue entry lost), so that no run stays `running` forever.
pub(super) async fn reaper(
    queue: Queue,
    (me, lease): (Arc<Lease>, Duration),
    (every, sweep): (Duration, Duration),
    stop: CancellationToken,
) {
    let (mut swept, mut cursors) = (Instant::now(), Vec::new());
    while sleep_or_stop(every, &stop).await {
        match queue.reap(&me.current(), lease).await {
            Ok((n_runs, n_items, n_workers)) => {
                queue.health().ok();
                // A reaped worker stays listed (lease 0) until a pass finds nothing of it left.
                if n_runs + n_items > 0 {
                    metrics::orphans_recovered(n_runs);
                    tracing::info!(
                        message = "Recovered the runs of workers whose lease expired.",
                        n_runs,
                        n_items,
                        n_workers
                    );
                }
            }
            Err(error) => queue.health().failed("reap", &error),
        }
        if swept.elapsed() >= sweep {
            swept = Instant::now();
            sweep_once(&queue, &mut cursors).await;
        }
    }
}

/// One sweep call per shard from `cursors`, which it moves on.
async fn sweep_once(queue: &Queue, cursors: &mut Vec<usize>) {
    match queue.sweep(cursors).await {
        Ok(n_runs) => {
            queue.health().ok();
            if n_runs > 0 {
                metrics::orphans_recovered(n_runs);
                tracing::warn!(
                    message = "Returned to the queue runs recorded running that nobody held (their worker gone, their queue entry lost).",
                    n_runs
                );
            }
        }
        Err(error) => queue.health().failed("sweep", &error),
    }
}

/// Promotes due retries and `not_before` runs to the ready list.
pub(super) async fn promoter(queue: Queue, stop: CancellationToken) {
    while sleep_or_stop(PROMOTE_EVERY, &stop).await {
        match queue.promote_due().await {
            Ok(_) => queue.health().ok(),
            Err(error) => queue.health().failed("promote", &error),
        }
    }
}

/// Puts back everything `owner` still holds. Bounded: after a few failures the runs stay in
/// the processing list, where the reaper finds them once the lease expires.
pub(super) async fn release(queue: &Queue, owner: &Owner) {
    let mut backoff = Backoff::default();
    for _ in 0..5 {
        match queue.release_all(owner).await {
            Ok((n_runs, n_items)) => {
                if n_runs + n_items > 0 {
                    tracing::info!(
                        message = "Released unfinished work to the queue.",
                        n_runs,
                        n_items
                    );
                }
                return;
            }
            Err(error) => queue.health().failed("release", &error),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
    tracing::warn!(
        message = "Could not release unfinished work; the reaper will recover it after the lease."
    );
}

/// Sleeps `delay`; false when `stop` was cancelled first.
pub(super) async fn sleep_or_stop(delay: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}
