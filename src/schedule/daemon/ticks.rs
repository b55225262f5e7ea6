//! The daemon's fan-out tasks: one per schedule, fanning its ticks out in order and retrying a
//! failed tick with backoff until the tick's late limit, then counting it as missed.
//!
//! It must not arm or disarm jobs, nor read `jobs.toml`; the daemon loop does that and only
//! sends ticks here.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::super::fan_out;
use crate::config::ScheduleConfig;
use crate::queue::Queue;
use crate::telemetry::metrics::{self, ScheduleLabel};

/// A tick is retried (Redis down) or still fired after a stall for at least this long, or for
/// the schedule's `catch_up` when that is longer. Later, it is given up and counted as missed.
const LATE_LIMIT: Duration = Duration::from_secs(300);
/// First and largest delay between fan-out attempts of a failed tick.
const RETRY_INITIAL: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// A tick to fan out, as sent to a schedule's fan-out task.
pub(super) type Tick = (Arc<ScheduleConfig>, DateTime<Utc>);

/// Fans out the ticks of one schedule, in order, until its sender is dropped or shutdown.
pub(super) async fn fan_out_task(
    queue: Queue,
    mut ticks: mpsc::UnboundedReceiver<Tick>,
    shutdown: CancellationToken,
) {
    loop {
        // Both arms are cancel-safe: an unreceived tick stays in the channel.
        let tick = tokio::select! {
            () = shutdown.cancelled() => return,
            tick = ticks.recv() => tick,
        };
        let Some((schedule, tick)) = tick else { return };
        fan_out_until_done(&queue, &schedule, tick, &shutdown).await;
    }
}

/// Fans out one tick, retrying with backoff while Redis fails, until the late limit.
async fn fan_out_until_done(
    queue: &Queue,
    schedule: &ScheduleConfig,
    tick: DateTime<Utc>,
    shutdown: &CancellationToken,
) {
    let deadline = tick + late_limit(schedule);
    let mut delay = RETRY_INITIAL;
    loop {
        let error = match fan_out::fan_out(queue, schedule, tick).await {
            Ok(report) => {
                tracing::info!(message = "Tick fanned out.", schedule = %schedule.name, tick = %tick.to_rfc3339(), n_users = report.users, n_enqueued = report.enqueued, n_duplicates = report.duplicates, n_skipped = report.skipped, n_invalid = report.invalid);
                metrics::schedule_tick(ScheduleLabel::configured(&schedule.name), "fanned_out");
                return;
            }
            Err(error) => error,
        };
        if Utc::now() + delay > deadline {
            tracing::error!(message = "Tick missed: its fan-out kept failing.", schedule = %schedule.name, tick = %tick.to_rfc3339(), error.message = %error);
            metrics::schedule_tick(ScheduleLabel::configured(&schedule.name), "missed");
            return;
        }
        tracing::warn!(message = "Fan-out failed; retrying.", schedule = %schedule.name, tick = %tick.to_rfc3339(), error.message = %error, retry_in_ms = delay.as_millis());
        metrics::schedule_tick(ScheduleLabel::configured(&schedule.name), "retry");
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(RETRY_MAX);
    }
}

pub(super) fn late_limit(schedule: &ScheduleConfig) -> chrono::Duration {
    let limit = schedule.catch_up.map_or(LATE_LIMIT, |catch_up| catch_up.max(LATE_LIMIT));
    chrono::Duration::from_std(limit).unwrap_or(chrono::Duration::MAX)
}
