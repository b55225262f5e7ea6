//! Schedule: cron expressions in a time zone, turned into ticks and fanned out to users.
//!
//! Owns the meaning of a `[[schedule]]` (its fire times across DST in `schedule/next.rs`, from
//! the leaf [`crate::cron::CronExpr`]), the fan-out of a tick to users with deterministic run ids
//! (`schedule/fan_out.rs`), the daemon that fires ticks and reloads `jobs.toml`
//! (`schedule/daemon.rs`) and the data of `agentcron schedules` (`schedule/listing.rs`). It must
//! not run jobs or talk to the remote APIs: a tick only creates run records and jobs.
//!
//! No leader: any number of schedulers may run; the run id `<schedule>:<user>:<tick-seconds>`
//! makes each (schedule, user, tick) one run record, created once by whichever comes first.

mod daemon;
mod fan_out;
mod instruct;
mod listing;
mod next;
mod preview;
mod zones;

pub use self::daemon::run;
pub use self::fan_out::{TickReport, fan_out, users};
pub use self::listing::{ScheduleReport, TickStats, report};
pub use self::next::spread_offset;
pub use self::preview::{PreviewFire, PreviewProblem, preview};
pub use self::zones::{next_tick, next_ticks};
use crate::config::ConfigError;
use crate::queue::QueueError;

/// Why the scheduler or a fan-out failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// Redis failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The configuration could not be loaded at start.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// tokio-cron-scheduler failed to start, arm or stop a job.
    #[error("job scheduler: {0:?}")]
    Jobs(tokio_cron_scheduler::JobSchedulerError),
    /// The SIGHUP handler could not be installed.
    #[error("cannot listen for SIGHUP: {0}")]
    Signal(#[source] std::io::Error),
}

impl From<tokio_cron_scheduler::JobSchedulerError> for ScheduleError {
    fn from(error: tokio_cron_scheduler::JobSchedulerError) -> Self {
        Self::Jobs(error)
    }
}
