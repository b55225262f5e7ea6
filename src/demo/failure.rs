//! Why the demo could not run: [`DemoError`], one variant per stage the demo drives.
//!
//! It only names failures and wraps the stages' own errors. It must not decide how a failure
//! is reported or retried; the CLI does that.

use std::path::PathBuf;

use crate::api::ApiError;
use crate::config::ConfigError;
use crate::ops::http::OpsError;
use crate::queue::QueueError;
use crate::records::RecordsError;
use crate::run::RunError;
use crate::schedule::ScheduleError;
use crate::setup::SetupError;
use crate::sim::SimError;
use crate::worker::WorkerError;

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// `redis-server` is needed and not installed.
    #[error(
        "redis-server not found: install it with `sudo apt-get install redis-server` (Debian/Ubuntu) or `brew install redis` (macOS)"
    )]
    RedisServerMissing,
    /// The private `redis-server` failed to start.
    #[error("private redis-server: {0}")]
    RedisServer(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration to start from is not valid TOML.
    #[error("{path}: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Writing the demo's output failed.
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
    /// The demo configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The simulator failed to start.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// `setup` failed.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The run pipeline could not be prepared.
    #[error(transparent)]
    Run(#[from] RunError),
    /// An HTTP client could not be built.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Redis failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Reading records failed.
    #[error(transparent)]
    Records(#[from] RecordsError),
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// The simulator's control API refused a change.
    #[error("simulator control API: {0}")]
    Control(#[from] reqwest::Error),
    /// The worker stopped with an error.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// The scheduler stopped with an error.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// The ops server (dashboard) failed.
    #[error(transparent)]
    Ops(#[from] OpsError),
    /// The runs did not all end in time.
    #[error("the demo runs did not end within {secs} s: {states}")]
    Timeout {
        /// The deadline.
        secs: u64,
        /// Each user's run state at the deadline.
        states: String,
    },
    /// SIGINT or SIGTERM arrived first.
    #[error("interrupted")]
    Interrupted,
    /// A background task panicked.
    #[error("{0} task failed: {1}")]
    Task(&'static str, String),
}
