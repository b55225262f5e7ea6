//! `agentcron bench queue`: no-op jobs through the real queue path (`Queue::enqueue`, the
//! worker's fetch and finish scripts, apalis) on the local Redis, in one process.
//!
//! Phases, each timed on its own: raw-Redis baseline; batched enqueue of `jobs` runs (500 per
//! round trip, no worker running); one-by-one enqueue of up to 5,000 more; one worker with a
//! handler that does nothing processes the whole backlog (the process rate); then, with the
//! worker idle, runs enqueued one at a time give the enqueue→start latency; with `--intake`,
//! `jobs` payloads pushed on the redis-cli intake list are processed end to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::stats::{self, Baseline, Progress, per_sec, round1, round2};
use super::{BenchError, Result, Scratch, guarded};
use crate::ids::{RunId, UserId};
use crate::outcome::Outcome;
use crate::outcome::RunState;
use crate::queue::{NewRun, Queue};
use crate::worker::{self, Handler, JobContext};

/// Runs enqueued one by one (their rate) and, separately, for the latency sample.
const ONE_BY_ONE_MAX: usize = 5_000;
const LATENCY_MAX: usize = 2_000;
const POLL: Duration = Duration::from_millis(10);

/// What to run.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// Redis URL.
    pub redis_url: String,
    /// The queue\'s shards (`redis.shards`); the configuration\'s default when `None`.
    pub shards: Option<usize>,
    /// Jobs in the batched backlog (and pushed on the intake list with `intake`).
    pub jobs: usize,
    /// `[worker] concurrency`.
    pub concurrency: usize,
    /// Also measure the redis-cli intake path.
    pub intake: bool,
}

/// The numbers. Rates are jobs per second; latencies milliseconds; memory MB.
#[derive(Debug, Clone, Serialize)]
pub struct QueueReport {
    /// The key prefix the benchmark used (deleted at its end).
    pub prefix: String,
    /// Jobs in the batched backlog.
    pub jobs: usize,
    /// Worker concurrency.
    pub concurrency: usize,
    /// `Queue::enqueue` of all jobs in one call (pipelined 500 per round trip).
    pub enqueue_jobs_per_sec: f64,
    /// `Queue::enqueue` of one run per call, awaited in turn.
    pub enqueue_one_jobs_per_sec: f64,
    /// Jobs enqueued one by one.
    pub enqueue_one_jobs: usize,
    /// The backlog (`jobs` + `enqueue_one_jobs`) processed by one worker, end to end: from the
    /// worker's start until every run's `succeeded` is recorded.
    pub process_jobs_per_sec: f64,
    /// Median enqueue→handler-start latency, one run at a time on an idle worker.
    pub p50_ms: f64,
    /// 99th percentile of the same.
    pub p99_ms: f64,
    /// Runs in the latency sample.
    pub latency_jobs: usize,
    /// Payloads pushed on the intake list and processed end to end, per second (`--intake`).
    pub intake_jobs_per_sec: Option<f64>,
    /// Redis commands per job while processing the backlog (all clients; see the idle rate).
    pub redis_commands_per_job: f64,
    /// Redis commands per second with this benchmark idle (other clients, `INFO` itself).
    pub idle_redis_commands_per_sec: f64,
    /// CPU (user + system, all threads) this process used while processing the backlog, ms:
    /// the worker, plus the benchmark's own progress polling (one `ZCARD` per shard per 10 ms).
    pub worker_cpu_ms: f64,
    /// CPU (user + system) the Redis server used while processing the backlog, ms (`INFO cpu`;
    /// every client's work counts, see the idle rate).
    pub redis_cpu_ms: f64,
    /// Peak RSS of this process (worker and producer), MB.
    pub peak_rss_mb: f64,
    /// Raw Redis speed measured in this process just before.
    pub baseline: Baseline,
    /// Our rates divided by the baseline's comparable ones.
    pub ratios: QueueRatios,
}

/// Our rates against the raw baseline (1.0 = as fast as raw Redis).
#[derive(Debug, Clone, Serialize)]
pub struct QueueRatios {
    /// Batched enqueue / pipelined `LPUSH`.
    pub enqueue_vs_lpush_pipelined: f64,
    /// One-by-one enqueue / sequential `PING`.
    pub enqueue_one_vs_ping: f64,
    /// Processing / sequential `PING` (above 1: batching beats one round trip per job).
    pub process_vs_ping: f64,
    /// Processing / one-by-one `LPUSH`+`RPOP`.
    pub process_vs_lpush_rpop: f64,
}

/// Start times of the latency sample's runs (`lat-<i>`), nanoseconds since `origin` plus one
/// (0 = not started). Atomics: the worker's tasks write them concurrently.
#[derive(Debug)]
struct Board {
    origin: Instant,
    started: Vec<AtomicU64>,
}

impl Board {
    fn new(n: usize) -> Self {
        Self { origin: Instant::now(), started: (0..n).map(|_| AtomicU64::new(0)).collect() }
    }

    fn nanos(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX) + 1
    }

    fn record(&self, run_id: &str) {
        let Some(slot) = run_id
            .strip_prefix("lat-")
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| self.started.get(i))
        else {
            return;
        };
        slot.store(self.nanos(), Ordering::Relaxed);
    }
}

/// Does nothing but note when latency-sample runs start.
#[derive(Debug, Clone)]
struct NoOp {
    board: Arc<Board>,
}

impl Handler for NoOp {
    async fn handle(&self, job: JobContext) -> Outcome {
        self.board.record(job.run_id.as_str());
        Outcome::Succeeded
    }
}

/// Runs the benchmark; its keys are deleted at the end, also when `cancel` fires.
///
/// # Errors
/// [`BenchError`] when Redis fails, the worker stops, or jobs do not finish in time.
pub async fn run(opts: &QueueOptions, cancel: &CancellationToken) -> Result<QueueReport> {
    if opts.jobs == 0 || opts.concurrency == 0 {
        return Err(BenchError::Usage("--jobs and --concurrency must be positive".to_owned()));
    }
    let scratch = Scratch::new(&opts.redis_url, opts.shards)?;
    guarded(&scratch, cancel, measure(opts, &scratch)).await
}

async fn measure(opts: &QueueOptions, scratch: &Scratch) -> Result<QueueReport> {
    let mut config = scratch.config("http://127.0.0.1:9")?;
    config.worker.concurrency = opts.concurrency;
    let queue = Queue::connect(&config.redis).await?;
    let mut conn = scratch.connection().await?;
    let baseline_key = queue.keys().bench_baseline();
    let baseline = Baseline::measure(&mut conn, &baseline_key, opts.jobs.min(20_000)).await?;
    let idle = stats::idle_commands(&mut conn, Duration::from_secs(1)).await?;

    let runs: Vec<NewRun> = (0..opts.jobs).map(|i| bench_run(format!("b-{i}"), i)).collect();
    let started = Instant::now();
    queue.enqueue(&runs, "other").await?;
    let enqueue_jobs_per_sec = per_sec(runs.len(), started.elapsed());
    drop(runs);

    let n_one = opts.jobs.min(ONE_BY_ONE_MAX);
    let started = Instant::now();
    for i in 0..n_one {
        queue.enqueue(&[bench_run(format!("o-{i}"), i)], "other").await?;
    }
    let enqueue_one_jobs_per_sec = per_sec(n_one, started.elapsed());

    let n_latency = opts.jobs.min(LATENCY_MAX);
    let board = Arc::new(Board::new(n_latency));
    let shutdown = CancellationToken::new();
    let worker_queue = queue.clone();
    let worker_config = config.clone();
    let handler = NoOp { board: Arc::clone(&board) };
    let token = shutdown.clone();
    // Owned here and awaited below, so the worker never outlives the benchmark.
    let worker = tokio::spawn(async move {
        let worker_id = worker::worker_id();
        worker::run_on(worker_queue, &worker_config, handler, token, &worker_id).await
    });
    let backlog = opts.jobs + n_one;
    let commands_before = stats::redis_commands(&mut conn).await?;
    let redis_cpu_before = stats::redis_cpu_seconds(&mut conn).await?;
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    wait_succeeded(&queue, backlog, "processing the backlog").await?;
    let process_elapsed = started.elapsed();
    let worker_cpu_ms = (process_cpu_seconds() - cpu_before).max(0.0) * 1000.0;
    let redis_cpu_ms = (stats::redis_cpu_seconds(&mut conn).await? - redis_cpu_before) * 1000.0;
    let commands = stats::redis_commands(&mut conn).await?.saturating_sub(commands_before);
    let process_jobs_per_sec = per_sec(backlog, process_elapsed);

    let mut latencies = Vec::with_capacity(n_latency);
    let mut enqueued_at = Vec::with_capacity(n_latency);
    for i in 0..n_latency {
        enqueued_at.push(board.nanos());
        queue.enqueue(&[bench_run(format!("lat-{i}"), i)], "other").await?;
    }
    wait_succeeded(&queue, backlog + n_latency, "the latency sample").await?;
    for (slot, enqueued) in board.started.iter().zip(&enqueued_at) {
        let started = slot.load(Ordering::Relaxed);
        if started > 0 {
            latencies.push(started.saturating_sub(*enqueued) as f64 / 1e6);
        }
    }

    let intake_jobs_per_sec = if opts.intake {
        let done = backlog + n_latency;
        Some(intake(&queue, &mut conn, opts.jobs, done).await?)
    } else {
        None
    };
    shutdown.cancel();
    match worker.await {
        Ok(res) => res?,
        Err(error) => return Err(BenchError::Usage(format!("worker task failed: {error}"))),
    }

    let p50_ms = stats::percentile(&mut latencies, 0.5);
    let p99_ms = stats::percentile(&mut latencies, 0.99);
    let ratio = |ours: f64, raw: f64| round2(ours / raw.max(1e-9));
    Ok(QueueReport {
        prefix: scratch.prefix.clone(),
        jobs: opts.jobs,
        concurrency: opts.concurrency,
        enqueue_jobs_per_sec: round1(enqueue_jobs_per_sec),
        enqueue_one_jobs_per_sec: round1(enqueue_one_jobs_per_sec),
        enqueue_one_jobs: n_one,
        process_jobs_per_sec: round1(process_jobs_per_sec),
        p50_ms: (p50_ms * 1000.0).round() / 1000.0,
        p99_ms: (p99_ms * 1000.0).round() / 1000.0,
        latency_jobs: latencies.len(),
        intake_jobs_per_sec: intake_jobs_per_sec.map(round1),
        redis_commands_per_job: round2(commands as f64 / backlog as f64),
        idle_redis_commands_per_sec: round1(idle),
        worker_cpu_ms: round1(worker_cpu_ms),
        redis_cpu_ms: round1(redis_cpu_ms.max(0.0)),
        peak_rss_mb: round1(stats::peak_rss_mb()),
        ratios: QueueRatios {
            enqueue_vs_lpush_pipelined: ratio(
                enqueue_jobs_per_sec,
                baseline.lpush_pipelined_per_sec,
            ),
            enqueue_one_vs_ping: ratio(enqueue_one_jobs_per_sec, baseline.ping_per_sec),
            process_vs_ping: ratio(process_jobs_per_sec, baseline.ping_per_sec),
            process_vs_lpush_rpop: ratio(process_jobs_per_sec, baseline.lpush_rpop_per_sec),
        },
        baseline,
    })
}

/// Pushes `n` JSON payloads on the intake list (pipelined, as a script would) and waits until
/// `done + n` runs have succeeded. Returns payloads per second, end to end.
async fn intake(
    queue: &Queue,
    conn: &mut crate::config::RedisConn,
    n: usize,
    done: usize,
) -> Result<f64> {
    let key = queue.keys().intake();
    let started = Instant::now();
    for chunk_start in (0..n).step_by(500) {
        let mut pipe = redis::pipe();
        for i in chunk_start..(chunk_start + 500).min(n) {
            let payload = serde_json::json!({ "user": bench_user(i), "run_id": format!("in-{i}") });
            pipe.cmd("LPUSH").arg(&key).arg(payload.to_string()).ignore();
        }
        pipe.query_async::<()>(conn).await?;
    }
    wait_succeeded(queue, done + n, "the intake payloads").await?;
    Ok(per_sec(n, started.elapsed()))
}

/// Waits until `n` runs are in the `succeeded` index, showing progress on a terminal.
async fn wait_succeeded(queue: &Queue, n: usize, what: &str) -> Result<()> {
    let deadline = Duration::from_secs(60).max(Duration::from_millis(n as u64));
    let started = Instant::now();
    let mut progress = Progress::new(what);
    loop {
        let succeeded = queue
            .sum_over_shards("ZCARD", |keys| keys.runs_by_state(RunState::Succeeded.as_str()))
            .await?;
        progress.update(succeeded, n);
        if succeeded >= n {
            progress.finish();
            return Ok(());
        }
        if started.elapsed() > deadline {
            progress.finish();
            let what = format!("{what}: {succeeded} of {n} runs succeeded");
            return Err(BenchError::Timeout { secs: deadline.as_secs(), what });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// CPU seconds (user + system) this process has used, all its threads, live and exited: fields
/// 14 and 15 of `/proc/self/stat`, in clock ticks (`AT_CLKTCK` of `/proc/self/auxv`, else the
/// kernel's fixed 100). 0 off Linux.
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // The command name (field 2) may hold spaces and parentheses: count after its last ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let ticks: u64 =
        rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse::<u64>().ok()).sum();
    ticks as f64 / clock_ticks_per_second()
}

/// `AT_CLKTCK` (17) from this process's auxiliary vector: `sysconf(_SC_CLK_TCK)` without libc.
fn clock_ticks_per_second() -> f64 {
    const AT_CLKTCK: u64 = 17;
    const WORD: usize = std::mem::size_of::<usize>();
    let auxv = std::fs::read("/proc/self/auxv").unwrap_or_default();
    let word = |chunk: &[u8]| -> u64 {
        let mut bytes = [0_u8; WORD];
        bytes.copy_from_slice(chunk);
        usize::from_ne_bytes(bytes) as u64
    };
    auxv.chunks_exact(2 * WORD)
        .find(|pair| word(&pair[..WORD]) == AT_CLKTCK)
        .map(|pair| word(&pair[WORD..]))
        .filter(|&hz| hz > 0)
        .map_or(100.0, |hz| hz as f64)
}

fn bench_user(i: usize) -> String {
    format!("bench-{i}@example.com")
}

fn bench_run(run_id: String, i: usize) -> NewRun {
    let (run_id, user) = (RunId::trusted(run_id), UserId::trusted(bench_user(i)));
    NewRun { run_id, user, schedule: None, prompt: None, not_before_ms: None, instructions: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_time_is_read_and_grows_with_work() {
        if !cfg!(target_os = "linux") {
            return;
        }
        assert!(clock_ticks_per_second() > 0.0);
        // A fresh test process may not have used one tick (10 ms) yet: no lower bound here.
        let before = process_cpu_seconds();
        assert!(before >= 0.0);
        // Spins until two ticks show up (10 s at most: a loaded machine may not schedule us).
        let started = Instant::now();
        let mut x = 0_u64;
        while process_cpu_seconds() - before < 0.02 && started.elapsed() < Duration::from_secs(10) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let used = process_cpu_seconds() - before;
        assert!(used >= 0.02, "{used} s of CPU after {:?} of spinning", started.elapsed());
        assert!(used <= started.elapsed().as_secs_f64() * 4.0 + 0.05, "{used} s");
    }
}
