//! The scheduler daemon: arms one tokio-cron-scheduler job per enabled schedule, fans each tick
//! out, catches up a missed tick at start, and applies a changed `jobs.toml` (on SIGHUP or when
//! its modification time changes) without a restart. It must not create runs itself (that is
//! `fan_out.rs`) and must not decide fire times (that is `next.rs`).
//!
//! # Why one-shot jobs, re-armed after each tick
//!
//! tokio-cron-scheduler 0.15 captures a fixed UTC offset when a time-zone cron job is created,
//! so a long-running daemon fires an hour off after a DST change, and it uses AND semantics for
//! day-of-month/day-of-week. See: <https://github.com/mvniekerk/tokio-cron-scheduler/issues/87>
//! and `/107`. So each next fire time is computed here, DST-correct, by `zones::next_tick` in the
//! schedule's zone, and the crate only fires a one-shot job at that instant; the tick's handler
//! arms the next one. The crate polls every 500 ms and keeps whole seconds, so a tick is handled
//! up to about half a second late and never early (the delay is rounded up to the tick's
//! second); the run itself is held to `not_before = tick + spread offset` by the queue.
//!
//! # Concurrency
//!
//! One task (the loop in [`run`]) owns all state: fired jobs send a message to it instead of
//! touching state, so reloads and ticks never race. Each schedule has one fan-out task fed by a
//! channel, so the ticks of a schedule fan out in order (the overlap check of tick N+1 must see
//! tick N's runs) while a slow schedule never delays another.

mod ticks;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::ticks::{Tick, fan_out_task, late_limit};
use super::{ScheduleError, zones};
use crate::config::{self, Env, ScheduleConfig};
use crate::queue::Queue;
use crate::telemetry::metrics;

/// How often `jobs.toml`'s modification time is checked.
const FILE_POLL: Duration = Duration::from_secs(2);
/// How long shutdown waits for fan-outs in progress. Stopping one half-way is safe (a repeat
/// completes it), so this only saves a catch-up.
const DRAIN: Duration = Duration::from_secs(10);

/// A job that fired, as sent by tokio-cron-scheduler's task to the daemon loop.
#[derive(Debug)]
struct Fired {
    name: String,
    generation: u64,
    tick: DateTime<Utc>,
}

/// One enabled schedule and its armed job.
#[derive(Debug)]
struct Armed {
    schedule: Arc<ScheduleConfig>,
    /// The configuration as JSON, to tell a changed schedule from an unchanged one on reload.
    fingerprint: String,
    /// Bumped at every arming: a job that fires after it was replaced is recognised and ignored.
    generation: u64,
    /// The tick the armed job fires; `None` when the schedule never fires again.
    next: Option<DateTime<Utc>>,
    job: Option<Uuid>,
    /// Feeds the schedule's fan-out task; dropping it ends the task after its current tick.
    ticks: mpsc::UnboundedSender<Tick>,
}

/// The daemon's state, owned by the loop in [`run`].
struct Daemon {
    path: PathBuf,
    env: Env,
    queue: Queue,
    /// Cancels retries of fan-out tasks at shutdown.
    shutdown: CancellationToken,
    /// tokio-cron-scheduler: fires the armed one-shot jobs.
    jobs: JobScheduler,
    fired: mpsc::UnboundedSender<Fired>,
    armed: HashMap<String, Armed>,
    generation: u64,
    /// The fan-out tasks, one per schedule ever armed; reaped by the loop.
    tasks: JoinSet<()>,
    modified: Option<SystemTime>,
    /// The configuration's warnings logged so far (variables that set no key).
    warned: std::collections::HashSet<String>,
}

/// Runs the scheduler until `shutdown` is cancelled: loads `config_path`, enqueues a missed
/// tick of each schedule with `catch_up`, fires every enabled schedule, and reloads on SIGHUP
/// or a changed file (an invalid file is logged and the running schedules are kept).
///
/// # Errors
/// [`ScheduleError::Config`] when the file is invalid at start; [`ScheduleError::Jobs`] when
/// tokio-cron-scheduler fails; [`ScheduleError::Signal`] when SIGHUP cannot be handled.
///
/// # Cancel safety
/// Cancel it with `shutdown`, not by dropping it: a fan-out in progress is given a few seconds.
pub async fn run(
    config_path: PathBuf,
    env: Env,
    queue: Queue,
    shutdown: CancellationToken,
) -> Result<(), ScheduleError> {
    let modified = modified(&config_path);
    // The command that started the daemon loaded the configuration and logged its warnings;
    // they are remembered here so that a reload logs only new ones.
    let checked = config::check(&config_path, &env);
    let warned = checked.warnings.iter().map(ToString::to_string).collect();
    let config = checked.config?;
    let mut hangup = signal(SignalKind::hangup()).map_err(ScheduleError::Signal)?;
    let jobs = JobScheduler::new().await?;
    jobs.start().await?;
    let (fired_tx, mut fired_rx) = mpsc::unbounded_channel();
    let mut daemon = Daemon {
        path: config_path,
        env,
        queue,
        shutdown: shutdown.clone(),
        jobs,
        fired: fired_tx,
        armed: HashMap::new(),
        generation: 0,
        tasks: JoinSet::new(),
        modified,
        warned,
    };
    daemon.apply(&config.schedules).await?;
    daemon.catch_up(Utc::now());
    let mut poll = tokio::time::interval(FILE_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Every arm is cancel-safe: `recv`, `tick` and `join_next` lose nothing when another arm wins.
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(fired) = fired_rx.recv() => daemon.on_fired(fired).await?,
            _ = hangup.recv() => daemon.reload("SIGHUP").await?,
            _ = poll.tick() => {
                if daemon.file_changed() {
                    daemon.reload("file changed").await?;
                }
            }
            Some(res) = daemon.tasks.join_next() => log_task_end(res),
        }
    }
    daemon.stop().await
}

impl Daemon {
    /// Arms, re-arms or disarms schedules to match `schedules`, logging each difference.
    async fn apply(&mut self, schedules: &[ScheduleConfig]) -> Result<(), ScheduleError> {
        let wanted: HashMap<&str, &ScheduleConfig> =
            schedules.iter().filter(|s| s.enabled).map(|s| (s.name.as_str(), s)).collect();
        let gone: Vec<String> =
            self.armed.keys().filter(|name| !wanted.contains_key(name.as_str())).cloned().collect();
        for name in gone {
            if let Some(armed) = self.armed.remove(&name) {
                self.disarm(&armed).await?;
                tracing::info!(message = "Schedule removed or disabled.", schedule = %name);
            }
        }
        for schedule in schedules.iter().filter(|s| !s.enabled) {
            tracing::info!(message = "Schedule disabled; it does not fire.", schedule = %schedule.name);
        }
        for schedule in wanted.into_values() {
            self.apply_one(schedule).await?;
        }
        Ok(())
    }

    async fn apply_one(&mut self, schedule: &ScheduleConfig) -> Result<(), ScheduleError> {
        let fingerprint = serde_json::to_string(schedule).unwrap_or_default();
        let now = Utc::now();
        let previous = self.armed.remove(&schedule.name);
        let (ticks, after) = match previous {
            Some(armed) if armed.fingerprint == fingerprint => {
                self.armed.insert(schedule.name.clone(), armed);
                return Ok(());
            }
            Some(armed) => {
                self.disarm(&armed).await?;
                tracing::info!(message = "Schedule changed; re-armed.", schedule = %schedule.name, cron = %schedule.cron, timezone = %schedule.timezone, n_users = schedule.users.len());
                // A tick the old job was about to fire is not lost to the swap: search from
                // just before it. Its run id dedupes it if it fired already.
                let after =
                    armed.next.map_or(now, |tick| (tick - chrono::Duration::seconds(1)).min(now));
                (armed.ticks, after)
            }
            None => {
                tracing::info!(message = "Schedule added.", schedule = %schedule.name, cron = %schedule.cron, timezone = %schedule.timezone, n_users = schedule.users.len());
                (self.spawn_fan_out_task(), now)
            }
        };
        let schedule = Arc::new(schedule.clone());
        self.arm(schedule, fingerprint, ticks, after).await
    }

    /// Arms the first fire time of `schedule` after `after`.
    async fn arm(
        &mut self,
        schedule: Arc<ScheduleConfig>,
        fingerprint: String,
        ticks: mpsc::UnboundedSender<Tick>,
        after: DateTime<Utc>,
    ) -> Result<(), ScheduleError> {
        self.generation += 1;
        let generation = self.generation;
        let next = zones::next_tick(&schedule, after);
        let job = match next {
            Some(tick) => Some(self.add_job(&schedule.name, generation, tick).await?),
            None => {
                tracing::warn!(message = "Schedule has no future fire time.", schedule = %schedule.name);
                None
            }
        };
        let name = schedule.name.clone();
        let armed = Armed { schedule, fingerprint, generation, next, job, ticks };
        self.armed.insert(name, armed);
        Ok(())
    }

    /// Adds a one-shot job that reports `tick` to the loop when it is due.
    async fn add_job(
        &self,
        name: &str,
        generation: u64,
        tick: DateTime<Utc>,
    ) -> Result<Uuid, ScheduleError> {
        // The crate's one-shot job is due at `now_secs + delay_secs` in whole seconds, so this
        // delay makes it due exactly at the tick's second, never before.
        let delay_secs = (tick.timestamp() - Utc::now().timestamp()).max(0);
        let delay = Duration::from_secs(u64::try_from(delay_secs).unwrap_or(0));
        let fired = self.fired.clone();
        let name = name.to_owned();
        let job = Job::new_one_shot_async(delay, move |_uuid, _jobs| {
            let fired = fired.clone();
            let message = Fired { name: name.clone(), generation, tick };
            Box::pin(async move {
                // Sending fails only once the loop has ended, at shutdown: nothing to do then.
                fired.send(message).ok();
            })
        })?;
        Ok(self.jobs.add(job).await?)
    }

    async fn disarm(&self, armed: &Armed) -> Result<(), ScheduleError> {
        if let Some(job) = armed.job {
            self.jobs.remove(&job).await?;
        }
        Ok(())
    }

    /// A job fired: hand the tick to the schedule's fan-out task and arm the next one.
    async fn on_fired(&mut self, fired: Fired) -> Result<(), ScheduleError> {
        let Some(armed) = self.armed.remove(&fired.name) else { return Ok(()) };
        // A replaced job or a second firing of the same job: ignore it.
        if armed.generation != fired.generation || armed.next != Some(fired.tick) {
            self.armed.insert(fired.name, armed);
            return Ok(());
        }
        // A failed send means the fan-out task ended, which happens only at shutdown.
        armed.ticks.send((armed.schedule.clone(), fired.tick)).ok();
        // After a stall (a suspended machine), ticks older than the late limit are not replayed.
        let oldest = Utc::now() - late_limit(&armed.schedule);
        let after = fired.tick.max(oldest);
        if after > fired.tick {
            tracing::warn!(message = "Scheduler stalled; skipping ticks older than the late limit.", schedule = %fired.name);
        }
        self.arm(armed.schedule, armed.fingerprint, armed.ticks, after).await
    }

    /// At start: the latest tick of each schedule with `catch_up` in `(now - catch_up, now]`.
    /// Its deterministic run ids make a second start (or another replica) a no-op.
    fn catch_up(&self, now: DateTime<Utc>) {
        for armed in self.armed.values() {
            let schedule = &armed.schedule;
            let Some(window) = schedule.catch_up else { continue };
            let Ok(window) = chrono::Duration::from_std(window) else { continue };
            for tick in zones::latest_ticks(schedule, now - window, now) {
                tracing::info!(message = "Catching up a missed tick.", schedule = %schedule.name, tick = %tick.to_rfc3339());
                armed.ticks.send((schedule.clone(), tick)).ok();
            }
        }
    }

    /// Loads the file again; applies it when valid, else logs every problem and keeps going.
    async fn reload(&mut self, reason: &'static str) -> Result<(), ScheduleError> {
        self.modified = modified(&self.path);
        let checked = config::check(&self.path, &self.env);
        for warning in checked.warnings {
            let text = warning.to_string();
            if !self.warned.contains(&text) {
                tracing::warn!(message = "An environment variable sets no configuration key.", var = %warning.var, warning = %warning.message);
                self.warned.insert(text);
            }
        }
        match checked.config {
            Ok(config) => {
                tracing::info!(message = "Reloading schedules.", reason, path = %self.path.display());
                if config.redis.prefix != self.queue.keys().prefix() {
                    tracing::warn!(
                        message = "The [redis] settings changed; restart to apply them."
                    );
                }
                self.apply(&config.schedules).await?;
                metrics::schedule_reload("applied");
            }
            Err(error) => {
                for problem in error.problems() {
                    tracing::error!(message = "Invalid configuration value.", problem = %problem);
                }
                tracing::error!(message = "Rejected the new configuration; keeping the running schedules.", reason, error.message = %error);
                metrics::schedule_reload("rejected");
            }
        }
        Ok(())
    }

    fn file_changed(&self) -> bool {
        modified(&self.path) != self.modified
    }

    fn spawn_fan_out_task(&mut self) -> mpsc::UnboundedSender<Tick> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let queue = self.queue.clone();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(fan_out_task(queue, receiver, shutdown));
        sender
    }

    /// Stops firing, then gives fan-outs in progress [`DRAIN`] to finish.
    async fn stop(mut self) -> Result<(), ScheduleError> {
        // Dropping the senders lets each fan-out task end after its current tick.
        self.armed.clear();
        let res = self.jobs.shutdown().await;
        let drained = tokio::time::timeout(DRAIN, async {
            while let Some(end) = self.tasks.join_next().await {
                log_task_end(end);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                message = "Fan-outs still running at shutdown were stopped; catch-up or another replica completes them."
            );
            self.tasks.abort_all();
        }
        Ok(res?)
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|metadata| metadata.modified()).ok()
}

fn log_task_end(res: Result<(), tokio::task::JoinError>) {
    if let Err(error) = res
        && error.is_panic()
    {
        tracing::error!(message = "A fan-out task panicked.", error.message = %error);
    }
}
