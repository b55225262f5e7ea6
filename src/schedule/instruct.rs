//! What each user's run of a tick is given: read the users' profiles (one pipeline per
//! batch), leave out the paused, the users whose zone does not fire now or is on a skip date,
//! and those whose profile cannot be read, and give every other run its zone, local fire time
//! and rendered prompt, so that the worker uses only what the run record says.
//!
//! A prompt whose template needs a value the profile lacks (and has no default) is stored as
//! the template, not rendered: the worker renders it again from the profile when it runs,
//! and fails the run with `missing_value:<name>` if the value is still missing. This module
//! must not enqueue (see `fan_out.rs`).

use chrono::{DateTime, Utc};

use super::next;
use super::zones::{self, InZone, TickZones};
use crate::config::ScheduleConfig;
use crate::ids::{RunId, UserId};
use crate::queue::{Instructions, NewRun, Queue, QueueError};
use crate::template::{LOCAL_TIME_FORMAT, Template};
use crate::users::{self, Profile};

/// What became of one batch of users.
#[derive(Debug, Default)]
pub(super) struct Decided {
    pub(super) runs: Vec<NewRun>,
    /// Paused at the tick.
    pub(super) paused: usize,
    /// Their zone fires at the tick but the local date is a skip date.
    pub(super) skip_dates: usize,
    /// Their zone does not fire at this tick (per-user-zone schedules only).
    pub(super) not_due: usize,
    /// Their profile's zone or pause cannot be read.
    pub(super) bad_profile: usize,
    /// Their run id would be too long.
    pub(super) invalid: usize,
}

/// Decides the runs of `users` at `tick`.
///
/// # Errors
/// [`QueueError::Redis`] when reading the profiles fails.
pub(super) async fn decide(
    queue: &Queue,
    schedule: &ScheduleConfig,
    template: &Template,
    zones: &mut TickZones<'_>,
    tick: DateTime<Utc>,
    users: &[UserId],
) -> Result<Decided, QueueError> {
    let refs: Vec<&UserId> = users.iter().collect();
    let profiles = users::read(&mut queue.connection(), queue.keys(), &refs).await?;
    let mut decided = Decided::default();
    for (user, profile) in users.iter().zip(&profiles) {
        let Some(zone) = zones::zone_for(schedule, profile) else {
            report_bad(schedule, user, profile);
            decided.bad_profile += 1;
            continue;
        };
        match zones.in_zone(zone) {
            InZone::NotDue => decided.not_due += 1,
            InZone::SkipDate => decided.skip_dates += 1,
            InZone::Due if profile.paused_at(tick) => {
                if profile.problem(users::PAUSED_UNTIL).is_some() {
                    report_bad(schedule, user, profile);
                    decided.bad_profile += 1;
                } else {
                    decided.paused += 1;
                }
            }
            InZone::Due => match new_run(schedule, template, user, profile, zone, tick) {
                Some(run) => decided.runs.push(run),
                None => decided.invalid += 1,
            },
        }
    }
    Ok(decided)
}

fn report_bad(schedule: &ScheduleConfig, user: &UserId, profile: &Profile) {
    for problem in &profile.problems {
        tracing::warn!(message = "A user's profile has a value that cannot be used; the user is left out of the tick.", schedule = %schedule.name, user = %user, field = %problem.field, reason = %problem.reason);
    }
}

/// The run of `user` at `tick` in `zone`, or `None` when the run id would be invalid.
fn new_run(
    schedule: &ScheduleConfig,
    template: &Template,
    user: &UserId,
    profile: &Profile,
    zone: chrono_tz::Tz,
    tick: DateTime<Utc>,
) -> Option<NewRun> {
    let run_id = RunId::scheduled(&schedule.name, user.as_str(), tick.timestamp()).ok()?;
    let offset = schedule.spread.map_or(std::time::Duration::ZERO, |window| {
        next::spread_offset(&schedule.name, user.as_str(), window)
    });
    let offset_ms = i64::try_from(offset.as_millis()).unwrap_or(i64::MAX);
    let local = tick.with_timezone(&zone);
    let local_time = local.format(LOCAL_TIME_FORMAT).to_string();
    let builtins =
        [("user", user.as_str()), ("run_id", run_id.as_str()), ("local_time", local_time.as_str())];
    let rendered = profile.render(template, &builtins).ok();
    let prompt = rendered.clone().unwrap_or_else(|| schedule.prompt.clone());
    Some(NewRun {
        run_id,
        user: user.clone(),
        schedule: Some(schedule.name.clone()),
        prompt: Some(prompt),
        // Even without spread: a run never starts before its tick, should a tick fire early.
        not_before_ms: Some(tick.timestamp_millis().saturating_add(offset_ms)),
        instructions: Some(Instructions {
            timezone: zone.name().to_owned(),
            local_time: local.to_rfc3339(),
            rendered: rendered.is_some(),
        }),
    })
}
