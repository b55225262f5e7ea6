//! `agentcron bench runs`: the whole run pipeline (`run::Context` as the worker's handler)
//! for N users at once against the simulator, in one worker process: each run checks the
//! user's connections, mints a token, fills the vault, creates a real session, sends the
//! message and follows the event stream to the end of the turn.
//!
//! The simulator runs in this process unless `sim_url` names one started with
//! `agentcron sim`; in-process, its memory and CPU count in the numbers, and each session
//! holds two sockets (both ends), so the open-file limit caps N. Its `event_delay_ms` fault
//! spaces the agent's events so that sessions overlap. Pipeline overhead per attempt is its
//! wall time minus the time it spent waiting on the simulator (requests, retry pauses and the
//! event stream, measured by `api::wait`): our code, Redis, transcripts and waiting for a CPU.
//! The older estimate, wall time minus the pauses the simulator was told to make, is kept as
//! `unpaused_*`: it also counts the simulator's own work.

mod sampling;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use self::sampling::{read_timings, sample_until_done};
use super::stats::{self, Baseline, per_sec, round1, round2};
use super::{BenchError, Result, Scratch, guarded};
use crate::ids::{RunId, UserId};
use crate::outcome::Outcome;
use crate::queue::{NewRun, Queue};
use crate::run::{self, Context};
use crate::setup;
use crate::sim::{self, SimConfig, SimHandle};
use crate::telemetry::Redactor;
use crate::worker::{self, Handler, JobContext};

/// Largest worker concurrency the benchmark configures.
pub const MAX_CONCURRENCY: usize = 10_000;
/// Transcript events the simulator records without a pause after them: the `user.message`
/// itself (appended by the send, not by the agent) and the final `session.status_idle` (see
/// `sim/agent.rs`, `go_idle`). Counting only the latter made the overhead negative at low
/// concurrency.
const UNDELAYED_EVENTS: u64 = 2;

/// What to run.
#[derive(Debug, Clone)]
pub struct RunsOptions {
    /// Redis URL.
    pub redis_url: String,
    /// The queue\'s shards (`redis.shards`); the configuration\'s default when `None`.
    pub shards: Option<usize>,
    /// A running simulator (`agentcron sim`); `None` starts one in this process.
    pub sim_url: Option<String>,
    /// Users, one run each, all enqueued at once.
    pub users: usize,
    /// Worker concurrency; `None` runs every user at once (up to [`MAX_CONCURRENCY`]).
    pub concurrency: Option<usize>,
    /// Events per session the caller expects. The simulator's turn emits a fixed script, so
    /// this cannot be set: the report gives the count found in the transcripts.
    pub events: Option<usize>,
    /// Pause after each agent event (the simulator's `event_delay_ms` fault), ms.
    pub event_delay_ms: u64,
}

/// The numbers.
#[derive(Debug, Clone, Serialize)]
pub struct RunsReport {
    /// The key prefix the benchmark used (deleted at its end).
    pub prefix: String,
    /// Users (= runs).
    pub users: usize,
    /// Worker concurrency.
    pub concurrency: usize,
    /// Where the simulator ran: `in-process` or its URL.
    pub simulator: String,
    /// Events per session asked for (informational; see `events_per_session`).
    pub events_requested: Option<usize>,
    /// Mean transcript events per session, counted in Redis afterwards.
    pub events_per_session: f64,
    /// The simulator's pause after each event, ms.
    pub event_delay_ms: u64,
    /// Runs that ended `succeeded`.
    pub succeeded: usize,
    /// Runs that ended otherwise.
    pub failed: usize,
    /// Runs per second, from the worker's start until the last run ended.
    pub runs_per_sec: f64,
    /// Wall time from the worker's start until the last run ended, s.
    pub wall_s: f64,
    /// Median pipeline overhead per attempt (wall time minus time waiting on the simulator), ms.
    pub overhead_p50_ms: f64,
    /// 99th percentile of the same.
    pub overhead_p99_ms: f64,
    /// Median run wall time minus the pauses the simulator was told to make, ms: the overhead
    /// plus the simulator's own work.
    pub unpaused_p50_ms: f64,
    /// 99th percentile of the same.
    pub unpaused_p99_ms: f64,
    /// Median run wall time (`started_at_ms` → `ended_at_ms`), ms.
    pub run_p50_ms: f64,
    /// Median time from the run's start to its streaming phase (connections, token, vault,
    /// session, message), ms: part of the overhead.
    pub pre_stream_p50_ms: f64,
    /// 99th percentile of the same.
    pub pre_stream_p99_ms: f64,
    /// Most runs in the `running` state at one sample (every 100 ms).
    pub peak_concurrent_sessions: usize,
    /// Peak RSS of this process (worker, and the simulator when in-process), MB.
    pub peak_rss_mb: f64,
    /// RSS before the worker started, MB.
    pub baseline_rss_mb: f64,
    /// Largest RSS sampled while runs were in flight, MB.
    pub rss_at_peak_mb: f64,
    /// (`rss_at_peak_mb` − `baseline_rss_mb`) / runs in flight at that sample, KB.
    pub rss_per_session_kb: f64,
    /// Redis commands per run (all clients, from `INFO commandstats`; see the idle rate).
    pub redis_commands_per_run: f64,
    /// The same by command (commands scripts run are counted by name; `evalsha` is the call),
    /// largest first.
    pub redis_commands_by_name: Vec<(String, f64)>,
    /// Redis commands per second with this benchmark idle; times `wall_s` over `users` is the
    /// share of `redis_commands_per_run` that is not ours.
    pub idle_redis_commands_per_sec: f64,
    /// Raw Redis speed measured in this process just before.
    pub baseline: Baseline,
}

/// Runs the benchmark; its keys are deleted at the end, also when `cancel` fires.
///
/// # Errors
/// [`BenchError`] when the simulator, setup, Redis or the worker fail, or runs do not end in
/// time.
pub async fn run(opts: &RunsOptions, cancel: &CancellationToken) -> Result<RunsReport> {
    if opts.users == 0 {
        return Err(BenchError::Usage("--users must be positive".to_owned()));
    }
    if opts.sim_url.is_none() {
        check_open_files(opts.users)?;
    }
    let scratch = Scratch::new(&opts.redis_url, opts.shards)?;
    let sim = match &opts.sim_url {
        Some(_) => None,
        None => Some(sim::serve(SimConfig::default()).await?),
    };
    let res = guarded(&scratch, cancel, measure(opts, &scratch, sim.as_ref())).await;
    if let Some(sim) = sim {
        sim.shutdown().await;
    }
    res
}

/// In-process, each session holds both ends of its stream: refuse early rather than fail
/// with "too many open files" half-way.
fn check_open_files(users: usize) -> Result<()> {
    let needed = users.min(MAX_CONCURRENCY) * 2 + 500;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse::<usize>().ok());
    match soft {
        Some(soft) if soft < needed => Err(BenchError::Usage(format!(
            "{users} sessions with the simulator in this process need about {needed} open files \
             (two sockets each); the limit is {soft}: raise it (ulimit -n) or run the simulator \
             in another process (agentcron sim --port 8787 & … --sim-url http://127.0.0.1:8787)"
        ))),
        _ => Ok(()),
    }
}

/// The pipeline as the worker runs it, keeping each attempt's overhead: its wall time minus
/// the time it waited on the simulator.
#[derive(Clone)]
struct Timed {
    ctx: Context,
    overheads: Arc<Mutex<Vec<f64>>>,
}

impl Handler for Timed {
    async fn handle(&self, job: JobContext) -> Outcome {
        let started = Instant::now();
        // Boxed: see `api::wait::measure`.
        let (outcome, waited) = crate::api::wait::measure(Box::pin(self.ctx.handle(job))).await;
        let overhead_ms = started.elapsed().saturating_sub(waited).as_secs_f64() * 1000.0;
        self.overheads.lock().unwrap_or_else(PoisonError::into_inner).push(overhead_ms);
        outcome
    }
}

async fn measure(
    opts: &RunsOptions,
    scratch: &Scratch,
    sim: Option<&SimHandle>,
) -> Result<RunsReport> {
    let api_url = match (sim, &opts.sim_url) {
        (Some(sim), _) => sim.base_url().to_owned(),
        (None, Some(url)) => url.trim_end_matches('/').to_owned(),
        (None, None) => return Err(BenchError::Usage("no simulator".to_owned())),
    };
    let mut config = scratch.config(&api_url)?;
    config.worker.concurrency = opts.concurrency.unwrap_or(opts.users).clamp(1, MAX_CONCURRENCY);
    let config = Arc::new(config);
    let queue = Queue::connect(&config.redis).await?;
    let (scalekit, anthropic, http) = run::clients(&config)?;
    let mut manager = queue.connection();
    setup::ensure(&config, &scalekit, &anthropic, &mut manager, queue.keys()).await?;
    let fault = slow_events(&http, &api_url, opts.event_delay_ms).await?;
    let ctx = Context::connect(Arc::clone(&config), Redactor::default()).await?;
    let overheads = Arc::new(Mutex::new(Vec::with_capacity(opts.users)));
    let handler = Timed { ctx, overheads: Arc::clone(&overheads) };

    let mut conn = scratch.connection().await?;
    let baseline_key = queue.keys().bench_baseline();
    let baseline = Baseline::measure(&mut conn, &baseline_key, 2_000).await?;
    let idle = stats::idle_commands(&mut conn, Duration::from_secs(1)).await?;
    let run_ids = enqueue(&queue, opts.users).await?;
    let baseline_rss_mb = stats::rss_mb();

    let commands_before = stats::redis_command_counts(&mut conn).await?;
    let shutdown = CancellationToken::new();
    let (worker_queue, worker_config, token) =
        (queue.clone(), Arc::clone(&config), shutdown.clone());
    // Owned here and awaited below, so the worker never outlives the benchmark.
    let worker = tokio::spawn(async move {
        let worker_id = worker::worker_id();
        worker::run_on(worker_queue, &worker_config, handler, token, &worker_id).await
    });
    let started = Instant::now();
    let sampled = sample_until_done(&queue, &config, opts.users).await;
    let wall = started.elapsed();
    let commands_after = stats::redis_command_counts(&mut conn).await?;
    shutdown.cancel();
    let worker_res = worker.await;
    let sampled = sampled?;
    match worker_res {
        Ok(res) => res?,
        Err(error) => return Err(BenchError::Usage(format!("worker task failed: {error}"))),
    }
    if let Some(id) = fault {
        clear_fault(&http, &api_url, &id).await;
    }

    let timings = read_timings(&queue, &run_ids).await?;
    let mut overheads =
        std::mem::take(&mut *overheads.lock().unwrap_or_else(PoisonError::into_inner));
    let mut unpaused = Vec::with_capacity(timings.len());
    let mut walls = Vec::with_capacity(timings.len());
    let mut pre_stream = Vec::with_capacity(timings.len());
    let mut n_events = 0;
    for timing in &timings {
        let waited = timing.events.saturating_sub(UNDELAYED_EVENTS) * opts.event_delay_ms;
        let run_ms = timing.ended_ms.saturating_sub(timing.started_ms) as f64;
        walls.push(run_ms);
        pre_stream.push(timing.streaming_ms.saturating_sub(timing.started_ms) as f64);
        unpaused.push(run_ms - waited as f64);
        n_events += timing.events;
    }
    let n_timed = timings.len().max(1) as f64;
    let mut commands_by_name = stats::command_deltas(&commands_before, &commands_after, 1);
    // The sampler's own ZCARDs and the two INFO calls are the benchmark's, not the pipeline's.
    for (name, count) in &mut commands_by_name {
        match name.as_str() {
            "zcard" => *count = (*count - sampled.own_commands as f64).max(0.0),
            "info" => *count = (*count - 2.0).max(0.0),
            _ => {}
        }
    }
    let commands: f64 = commands_by_name.iter().map(|(_, count)| count).sum();
    let per_run = |count: f64| round2(count / opts.users as f64);
    let mut redis_commands_by_name: Vec<(String, f64)> = commands_by_name
        .into_iter()
        .map(|(name, count)| (name, per_run(count)))
        .filter(|(_, per)| *per >= 0.1)
        .collect();
    redis_commands_by_name.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rss_growth = (sampled.rss_at_peak_mb - baseline_rss_mb).max(0.0);
    Ok(RunsReport {
        prefix: scratch.prefix.clone(),
        users: opts.users,
        concurrency: config.worker.concurrency,
        simulator: opts.sim_url.clone().unwrap_or_else(|| "in-process".to_owned()),
        events_requested: opts.events,
        events_per_session: round1(n_events as f64 / n_timed),
        event_delay_ms: opts.event_delay_ms,
        succeeded: sampled.succeeded,
        failed: opts.users - sampled.succeeded,
        runs_per_sec: round1(per_sec(opts.users, wall)),
        wall_s: round1(wall.as_secs_f64()),
        overhead_p50_ms: round1(stats::percentile(&mut overheads, 0.5)),
        overhead_p99_ms: round1(stats::percentile(&mut overheads, 0.99)),
        unpaused_p50_ms: round1(stats::percentile(&mut unpaused, 0.5)),
        unpaused_p99_ms: round1(stats::percentile(&mut unpaused, 0.99)),
        run_p50_ms: round1(stats::percentile(&mut walls, 0.5)),
        pre_stream_p50_ms: round1(stats::percentile(&mut pre_stream, 0.5)),
        pre_stream_p99_ms: round1(stats::percentile(&mut pre_stream, 0.99)),
        peak_concurrent_sessions: sampled.peak_running,
        peak_rss_mb: round1(stats::peak_rss_mb()),
        baseline_rss_mb: round1(baseline_rss_mb),
        rss_at_peak_mb: round1(sampled.rss_at_peak_mb),
        rss_per_session_kb: round1(rss_growth * 1024.0 / sampled.peak_running.max(1) as f64),
        redis_commands_per_run: per_run(commands),
        redis_commands_by_name,
        idle_redis_commands_per_sec: round1(idle),
        baseline,
    })
}

/// Adds the `event_delay_ms` fault to every session's turn; returns the rule's id.
async fn slow_events(
    http: &reqwest::Client,
    api_url: &str,
    delay_ms: u64,
) -> Result<Option<String>> {
    if delay_ms == 0 {
        return Ok(None);
    }
    let rule = serde_json::json!({
        "method": "POST",
        "path": "/v1/sessions/*/events",
        "event_delay_ms": delay_ms,
    });
    let reply: serde_json::Value = http
        .post(format!("{api_url}/_sim/faults"))
        .json(&rule)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(reply.get("id").map(|id| id.as_str().map_or_else(|| id.to_string(), str::to_owned)))
}

/// Removes the fault again, so that a shared simulator is left as found. Best effort.
async fn clear_fault(http: &reqwest::Client, api_url: &str, id: &str) {
    let res = http.delete(format!("{api_url}/_sim/faults/{id}")).send().await;
    if let Err(error) = res.and_then(reqwest::Response::error_for_status) {
        tracing::warn!(message = "Could not remove the simulator fault.", %error);
    }
}

/// One run per user `runs-<i>@example.com`, all at once; returns the run ids.
async fn enqueue(queue: &Queue, users: usize) -> Result<Vec<RunId>> {
    let runs: Vec<NewRun> = (0..users)
        .map(|i| NewRun {
            run_id: RunId::trusted(format!("r-{i}")),
            ..NewRun::now(UserId::trusted(format!("runs-{i}@example.com")))
        })
        .collect();
    queue.enqueue(&runs, "other").await?;
    Ok(runs.into_iter().map(|run| run.run_id).collect())
}
