//! The data of `agentcron schedules`: each schedule's next fire times (in its zone and in
//! UTC), its user count, and its last tick with outcome counts, read from Redis. It must not
//! print (that is `cli/schedule.rs`) or write anything.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{ScheduleError, fan_out, zones};
use crate::config::ScheduleConfig;
use crate::ids::RunId;
use crate::queue::{Queue, QueueError};

/// Fire times shown per schedule.
const N_NEXT: usize = 3;
/// Run states read per pipeline.
const BATCH: usize = 1_000;

/// One schedule, as `agentcron schedules` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleReport {
    /// The schedule's name.
    pub name: String,
    /// Disabled schedules never fire; their next times are still shown.
    pub enabled: bool,
    /// The cron expression as written.
    pub cron: String,
    /// The IANA zone, or `user (default <zone>)` when each user's own zone is used.
    pub timezone: String,
    /// The next fire times.
    pub next: Vec<FireTime>,
    /// Distinct users now (inline and the Redis set).
    pub users: usize,
    /// The last tick fanned out, if any.
    pub last_tick: Option<TickStats>,
}

/// One fire time in both clocks.
#[derive(Debug, Clone, Serialize)]
pub struct FireTime {
    /// In the schedule's zone, RFC 3339 with its offset.
    pub local: String,
    /// In UTC, RFC 3339.
    pub utc: String,
}

/// The last tick of a schedule and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct TickStats {
    /// When it fired.
    pub tick: FireTime,
    /// Users at the tick.
    pub users: usize,
    /// Runs created for it (by any replica).
    pub enqueued: usize,
    /// Users skipped because their previous run was still active.
    pub skipped: usize,
    /// Malformed user ids left out.
    pub invalid: usize,
    /// Users paused at the tick.
    pub paused: usize,
    /// Users left out because their profile's zone or pause cannot be read (see `users show`).
    pub bad_profile: usize,
    /// The tick's runs by current state (`queued`, `running`, `succeeded`, …), for the users of
    /// the schedule now.
    pub states: BTreeMap<String, usize>,
}

/// Builds the report of every schedule in `schedules` as of `now`.
///
/// # Errors
/// [`ScheduleError::Queue`] when Redis fails.
pub async fn report(
    queue: &Queue,
    schedules: &[ScheduleConfig],
    now: DateTime<Utc>,
) -> Result<Vec<ScheduleReport>, ScheduleError> {
    let mut reports = Vec::with_capacity(schedules.len());
    for schedule in schedules {
        reports.push(report_one(queue, schedule, now).await?);
    }
    Ok(reports)
}

async fn report_one(
    queue: &Queue,
    schedule: &ScheduleConfig,
    now: DateTime<Utc>,
) -> Result<ScheduleReport, ScheduleError> {
    let users: Vec<String> = fan_out::users(queue, schedule).await?.into_iter().collect();
    let next = zones::next_ticks(schedule, now, N_NEXT)
        .into_iter()
        .map(|time| fire_time(schedule, time))
        .collect();
    let last_tick = last_tick(queue, schedule, &users).await?;
    Ok(ScheduleReport {
        name: schedule.name.clone(),
        enabled: schedule.enabled,
        cron: schedule.cron.to_string(),
        timezone: if schedule.per_user_zone {
            format!("user (default {})", schedule.timezone)
        } else {
            schedule.timezone.to_string()
        },
        next,
        users: users.len(),
        last_tick,
    })
}

fn fire_time(schedule: &ScheduleConfig, time: DateTime<Utc>) -> FireTime {
    FireTime { local: time.with_timezone(&schedule.timezone).to_rfc3339(), utc: time.to_rfc3339() }
}

async fn last_tick(
    queue: &Queue,
    schedule: &ScheduleConfig,
    users: &[String],
) -> Result<Option<TickStats>, ScheduleError> {
    let mut conn = queue.connection();
    let stats: BTreeMap<String, i64> =
        redis::AsyncCommands::hgetall(&mut conn, queue.keys().schedule_stats(&schedule.name))
            .await
            .map_err(QueueError::from)?;
    let Some(tick) = stats.get("last_tick").and_then(|secs| DateTime::from_timestamp(*secs, 0))
    else {
        return Ok(None);
    };
    let count =
        |field: &str| stats.get(field).and_then(|value| usize::try_from(*value).ok()).unwrap_or(0);
    let (n_users, enqueued, invalid) = (count("users"), count("enqueued"), count("invalid"));
    let (paused, bad_profile) = (count("paused"), count("bad_profile"));
    Ok(Some(TickStats {
        tick: fire_time(schedule, tick),
        users: n_users,
        enqueued,
        // Every valid user of a tick is enqueued (by some replica), paused or skipped, so this
        // is exact once every replica has finished the tick.
        skipped: n_users
            .saturating_sub(invalid)
            .saturating_sub(enqueued)
            .saturating_sub(paused)
            .saturating_sub(bad_profile),
        invalid,
        paused,
        bad_profile,
        states: states(queue, schedule, users, tick).await?,
    }))
}

/// The states of the runs of `tick` for `users`, counted; users without a run are left out.
async fn states(
    queue: &Queue,
    schedule: &ScheduleConfig,
    users: &[String],
    tick: DateTime<Utc>,
) -> Result<BTreeMap<String, usize>, ScheduleError> {
    let mut counts = BTreeMap::new();
    let mut conn = queue.connection();
    for batch in users.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for user in batch {
            // An invalid user's run was never created: it reads as none.
            let Ok(run_id) = RunId::scheduled(&schedule.name, user, tick.timestamp()) else {
                continue;
            };
            pipe.hget(queue.keys().run(&run_id), "state");
        }
        let states: Vec<Option<String>> =
            pipe.query_async(&mut conn).await.map_err(QueueError::from)?;
        for state in states.into_iter().flatten() {
            *counts.entry(state).or_insert(0) += 1;
        }
    }
    Ok(counts)
}
