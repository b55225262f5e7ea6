//! In-process workers for the queue and worker tests: a configuration on the test's Redis
//! prefix with short timings, a scriptable test handler that records every attempt and any
//! overlap, spawning workers, and reading run records and queue state.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentcron::config::{Config, Env};
use agentcron::outcome::Outcome;
use agentcron::worker::{self, Handler, JobContext, WorkerError};
use redis::AsyncCommands;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::TestRedis;

/// The shipped configuration on `redis`'s prefix, with timings short enough for tests:
/// heartbeat 100 ms, lease 1 s, retries after 10–50 ms, three attempts.
pub fn config(redis: &TestRedis) -> Config {
    let mut config = agentcron::config::load(&super::shipped_config(), &Env::default()).unwrap();
    config.redis.prefix = redis.prefix.clone();
    config.redis.url = redis.url.parse().unwrap();
    config.worker.concurrency = 50;
    config.worker.heartbeat = Duration::from_millis(100);
    config.worker.lease = Duration::from_secs(1);
    config.worker.max_attempts = 3;
    config.worker.shutdown_grace = Duration::from_secs(5);
    config.retry.initial = Duration::from_millis(10);
    config.retry.max_interval = Duration::from_millis(50);
    config.retry.jitter = false;
    config
}

/// What the test handler does for one attempt.
pub type Plan =
    Arc<dyn Fn(JobContext) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// A plan from an async closure.
pub fn plan<F, Fut>(f: F) -> Plan
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    Arc::new(move |job| Box::pin(f(job)))
}

/// One attempt as the handler saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub run_id: String,
    pub attempt: u32,
    pub worker_id: String,
    pub resumed: bool,
}

/// Everything the handler observed, shared by all workers of a test.
#[derive(Debug, Default)]
pub struct Stats {
    pub starts: Mutex<Vec<Start>>,
    running: Mutex<HashSet<String>>,
    /// Attempts that began while another attempt of the same run was still executing.
    pub overlaps: AtomicUsize,
    pub finished: AtomicUsize,
}

impl Stats {
    pub fn starts(&self) -> Vec<Start> {
        self.starts.lock().unwrap().clone()
    }

    pub fn starts_of(&self, run_id: &str) -> Vec<Start> {
        self.starts().into_iter().filter(|start| start.run_id == run_id).collect()
    }

    /// Attempts per run id.
    pub fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for start in self.starts() {
            *counts.entry(start.run_id).or_default() += 1;
        }
        counts
    }
}

/// Records each attempt, detects overlapping executions of one run, then follows its plan.
#[derive(Clone)]
pub struct TestHandler {
    plan: Plan,
    pub stats: Arc<Stats>,
}

impl TestHandler {
    pub fn new(plan: Plan) -> Self {
        Self { plan, stats: Arc::default() }
    }

    /// A handler that succeeds at once.
    pub fn succeeding() -> Self {
        Self::new(plan(|_| async { Outcome::Succeeded }))
    }

    /// Another handler with the same stats (for a second worker).
    pub fn with_plan(&self, plan: Plan) -> Self {
        Self { plan, stats: Arc::clone(&self.stats) }
    }
}

impl Handler for TestHandler {
    async fn handle(&self, job: JobContext) -> Outcome {
        let run_id = job.run_id.to_string();
        self.stats.starts.lock().unwrap().push(Start {
            run_id: run_id.clone(),
            attempt: job.attempt,
            worker_id: job.worker_id.clone(),
            resumed: job.resumed,
        });
        if !self.stats.running.lock().unwrap().insert(run_id.clone()) {
            self.stats.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        let outcome = (self.plan)(job).await;
        self.stats.running.lock().unwrap().remove(&run_id);
        self.stats.finished.fetch_add(1, Ordering::SeqCst);
        outcome
    }
}

/// A worker running in this process.
pub struct Running {
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<Result<(), WorkerError>>,
}

impl Running {
    /// Graceful stop: cancel and wait for the drain.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle).await.unwrap().unwrap().unwrap();
    }
}

pub fn spawn(config: &Config, handler: TestHandler) -> Running {
    let shutdown = CancellationToken::new();
    let config = config.clone();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move { worker::run(&config, handler, token).await });
    Running { shutdown, handle }
}

/// The run record.
pub async fn record(redis: &TestRedis, run_id: &str) -> HashMap<String, String> {
    let mut conn = redis.conn.clone();
    conn.hgetall(format!("{}:run:{run_id}", redis.prefix)).await.unwrap()
}

/// The record's `state`, or "" when there is no record.
pub async fn state(redis: &TestRedis, run_id: &str) -> String {
    record(redis, run_id).await.remove("state").unwrap_or_default()
}

/// Members of `<p>:runs:state:<state>`.
pub async fn count_in_state(redis: &TestRedis, state: &str) -> usize {
    let mut conn = redis.conn.clone();
    conn.zcard(format!("{}:runs:state:{state}", redis.prefix)).await.unwrap()
}

/// A queue handle on the test's prefix.
pub async fn queue(config: &Config) -> agentcron::queue::Queue {
    agentcron::queue::Queue::connect(&config.redis).await.unwrap()
}

/// Enqueues runs `<tag>-0 … <tag>-<n-1>` for users `user-<i>`; returns the ids.
pub async fn enqueue_n(config: &Config, tag: &str, n: usize) -> Vec<String> {
    let runs: Vec<_> = (0..n)
        .map(|i| agentcron::queue::NewRun {
            run_id: super::run_id(&format!("{tag}-{i}")),
            ..agentcron::queue::NewRun::now(super::user_id(&format!("user-{i}")))
        })
        .collect();
    let enqueued = queue(config).await.enqueue(&runs, "test").await.unwrap();
    assert!(enqueued.iter().all(|run| run.created));
    runs.into_iter().map(|run| run.run_id.into_inner()).collect()
}

/// A handler whose every attempt waits for a permit of `gate`, then succeeds: the test holds
/// its runs in flight until it adds permits.
pub fn gated(gate: &Arc<tokio::sync::Semaphore>) -> TestHandler {
    let gate = Arc::clone(gate);
    TestHandler::new(plan(move |_| {
        let gate = Arc::clone(&gate);
        async move {
            gate.acquire().await.unwrap().forget();
            Outcome::Succeeded
        }
    }))
}
