//! Benchmarks of the real code paths (`agentcron bench queue|runs|fanout`): no-op jobs through
//! the queue and the worker, the whole run pipeline against the simulator, and one schedule
//! tick fanned out to many users. They report numbers with a baseline measured in the same
//! process (raw Redis round trips) and never judge them: timings on a shared machine are noise.
//!
//! It sits beside the flow and only drives the real stages (`queue`, `worker`, `run`,
//! `schedule`, `ops::setup`). Every benchmark works under its own random key prefix
//! (`agentcron-bench-<uuid>`) with its own configuration built from the shipped `jobs.toml`,
//! and deletes its keys when it ends, also on error or interruption: a user's prefix is never
//! touched.

pub mod fanout;
pub mod runs;
pub mod stats;
pub mod throughput;

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, ConfigError, Env, RedisConn};
use crate::queue::QueueError;
use crate::run::RunError;
use crate::schedule::ScheduleError;
use crate::setup::SetupError;
use crate::sim::SimError;
use crate::worker::WorkerError;

/// The shipped configuration, compiled in: benchmarks never read the user's `jobs.toml`.
const SHIPPED_CONFIG: &str = include_str!("../jobs.toml");
/// The Redis a benchmark uses unless told otherwise.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Keys deleted per `UNLINK` at cleanup.
const CLEANUP_CHUNK: usize = 1_000;
/// The `[limits]` rate per minute the benchmarks set: the highest accepted.
const UNTHROTTLED: &str = "6000000";

/// Result of a benchmark.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// Why a benchmark could not run to its end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The benchmark's configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The simulator failed to start or refused a fault.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// Talking to the simulator's control API failed.
    #[error("simulator control API: {0}")]
    Control(#[from] reqwest::Error),
    /// `setup` against the simulator failed.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The run pipeline could not be prepared.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The worker stopped with an error.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// The fan-out failed.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// A scratch file could not be written.
    #[error("{path}: {source}")]
    File {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Invalid options.
    #[error("{0}")]
    Usage(String),
    /// The work did not finish in time.
    #[error("timed out after {secs} s: {what}")]
    Timeout {
        /// The deadline.
        secs: u64,
        /// What was still missing.
        what: String,
    },
    /// SIGINT or SIGTERM arrived first.
    #[error("interrupted")]
    Interrupted,
}

/// One benchmark's private namespace: a random key prefix on the chosen Redis and a scratch
/// directory. [`Scratch::cleanup`] deletes both.
#[derive(Debug)]
pub struct Scratch {
    /// `agentcron-bench-<uuid>`.
    pub prefix: String,
    /// The Redis URL.
    pub redis_url: String,
    /// The scratch directory (the configuration file, transcripts).
    pub dir: PathBuf,
    /// `redis.shards`, when given.
    pub shards: Option<usize>,
}

impl Scratch {
    /// A fresh prefix and directory.
    ///
    /// # Errors
    /// [`BenchError::Redis`] for an invalid URL; [`BenchError::File`] when the directory cannot
    /// be created.
    pub fn new(redis_url: &str, shards: Option<usize>) -> Result<Self> {
        let prefix = format!("agentcron-bench-{}", uuid::Uuid::new_v4().simple());
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir)
            .map_err(|source| BenchError::File { path: dir.clone(), source })?;
        Ok(Self { prefix, redis_url: redis_url.to_owned(), dir, shards })
    }

    /// The shipped configuration pointed at this scratch's Redis prefix and directory, and at
    /// `api_url` for both APIs with the simulator's default credentials.
    ///
    /// # Errors
    /// [`BenchError::File`] when the file cannot be written; [`BenchError::Config`] when the
    /// result is invalid.
    pub fn config(&self, api_url: &str) -> Result<Config> {
        let path = self.dir.join("jobs.toml");
        std::fs::write(&path, SHIPPED_CONFIG)
            .map_err(|source| BenchError::File { path: path.clone(), source })?;
        let sim = crate::sim::SimConfig::default();
        let shards = self.shards.map(|n| ("AGENTCRON__REDIS__SHARDS", n.to_string()));
        let env = Env::from_pairs(shards.into_iter().chain([
            (config::REDIS_URL, self.redis_url.clone()),
            ("AGENTCRON__REDIS__PREFIX", self.prefix.clone()),
            (config::SCALEKIT_ENV_URL, api_url.to_owned()),
            (config::ANTHROPIC_BASE_URL, api_url.to_owned()),
            (config::SCALEKIT_CLIENT_ID, sim.scalekit_client_id),
            (config::SCALEKIT_CLIENT_SECRET, sim.scalekit_client_secret),
            (config::ANTHROPIC_API_KEY, sim.anthropic_api_key),
            ("AGENTCRON__TRANSCRIPTS__DIR", self.dir.join("transcripts").display().to_string()),
            ("AGENTCRON__OPS__BIND", "127.0.0.1:0".to_owned()),
            // The simulator has no rate limit: each request still takes from its fleet-wide
            // bucket (so the cost is measured), at a rate that never makes a run wait.
            ("AGENTCRON__LIMITS__CREATES_PER_MINUTE", UNTHROTTLED.to_owned()),
            ("AGENTCRON__LIMITS__REQUESTS_PER_MINUTE", UNTHROTTLED.to_owned()),
            ("AGENTCRON__LIMITS__ENVIRONMENTS_PER_MINUTE", UNTHROTTLED.to_owned()),
        ]));
        Ok(config::load(&path, &env)?)
    }

    /// A new connection for the benchmark's own commands, made as the worker makes its own (on
    /// a cluster, to the master of the scratch prefix's slot, so `INFO` counts that master's
    /// commands).
    ///
    /// # Errors
    /// [`BenchError::Queue`] when Redis cannot be reached.
    pub async fn connection(&self) -> Result<RedisConn> {
        connect(&self.config("http://127.0.0.1:9")?.redis).await
    }

    /// Deletes every key under the prefix and the scratch directory. Best effort: a leftover
    /// under a random prefix harms nobody, so failures are only logged.
    pub async fn cleanup(&self) {
        if let Err(error) = self.delete_keys().await {
            tracing::warn!(message = "Could not delete the benchmark's keys.", prefix = %self.prefix, %error);
        }
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            tracing::debug!(message = "Could not remove the scratch directory.", %error);
        }
    }

    async fn delete_keys(&self) -> Result<usize> {
        let redis = self.config("http://127.0.0.1:9")?.redis;
        let mut conn = connect(&redis).await?;
        Ok(crate::queue::remove_all_keys(&mut conn, &redis.keys(), CLEANUP_CHUNK).await?)
    }
}

async fn connect(redis: &config::RedisConfig) -> Result<RedisConn> {
    Ok(redis.connect(Default::default()).await.map_err(QueueError::Connect)?)
}

/// Runs `work` until it ends or `cancel` fires, then cleans `scratch` up either way.
///
/// # Errors
/// What `work` returned, or [`BenchError::Interrupted`].
pub(crate) async fn guarded<T>(
    scratch: &Scratch,
    cancel: &CancellationToken,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    // Cancel safety: dropping `work` drops the worker and the simulator it owns; the keys they
    // wrote are deleted below.
    let res = tokio::select! {
        res = work => res,
        () = cancel.cancelled() => Err(BenchError::Interrupted),
    };
    scratch.cleanup().await;
    res
}

/// Polls `probe` every `every` until `done` accepts its answer or `deadline` passes.
///
/// # Errors
/// [`BenchError::Timeout`] naming `what`; errors of `probe`.
pub(crate) async fn wait_until<T, P, Fut>(
    what: &str,
    deadline: Duration,
    every: Duration,
    mut probe: P,
    mut done: impl FnMut(T) -> bool,
) -> Result<()>
where
    P: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if done(probe().await?) {
            return Ok(());
        }
        if started.elapsed() > deadline {
            return Err(BenchError::Timeout { secs: deadline.as_secs(), what: what.to_owned() });
        }
        tokio::time::sleep(every).await;
    }
}
