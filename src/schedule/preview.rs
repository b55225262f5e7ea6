//! The data of `agentcron schedules preview`: each user's next fire times, in the zone the
//! user's runs would use and in UTC, read from the same profiles the fan-out reads, so an
//! operator can check zones and daylight-saving changes before a tick happens. It must not
//! print or write anything.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{ScheduleError, zones};
use crate::config::ScheduleConfig;
use crate::ids::UserId;
use crate::queue::{Queue, QueueError};
use crate::users;

/// Fire times searched per user for `count` that are not on a skip date: a bound for a
/// schedule whose every fire falls on one.
const MAX_SEARCH: usize = 10_000;

/// One fire time of one user.
#[derive(Debug, Clone, Serialize)]
pub struct PreviewFire {
    /// The user.
    pub user: String,
    /// The zone the user's runs use.
    pub timezone: String,
    /// In that zone, RFC 3339 with its offset.
    pub local: String,
    /// In UTC, RFC 3339.
    pub utc: String,
    /// Whether the user is paused then (the tick would skip the user).
    pub paused: bool,
}

/// A user the preview cannot place, and why.
#[derive(Debug, Clone, Serialize)]
pub struct PreviewProblem {
    /// The user.
    pub user: String,
    /// Why (a profile value that cannot be used).
    pub problem: String,
}

/// The next `count` fire times after `from` of each of `users`; skip dates left out.
///
/// # Errors
/// [`ScheduleError::Queue`] when reading the profiles fails.
pub async fn preview(
    queue: &Queue,
    schedule: &ScheduleConfig,
    users: &[UserId],
    from: DateTime<Utc>,
    count: usize,
) -> Result<(Vec<PreviewFire>, Vec<PreviewProblem>), ScheduleError> {
    let refs: Vec<&UserId> = users.iter().collect();
    let profiles = users::read(&mut queue.connection(), queue.keys(), &refs)
        .await
        .map_err(QueueError::from)?;
    let (mut fires, mut problems) = (Vec::new(), Vec::new());
    for (user, profile) in users.iter().zip(profiles) {
        let Some(zone) = zones::zone_for(schedule, &profile) else {
            let reason = profile.problem(users::TIMEZONE).map(|p| p.reason.clone());
            problems.push(PreviewProblem {
                user: user.as_str().to_owned(),
                problem: format!("timezone: {}", reason.unwrap_or_default()),
            });
            continue;
        };
        let shown = zones::fires_in_zone(schedule, zone, from)
            .take(MAX_SEARCH)
            .filter(|&fire| !zones::on_skip_date(schedule, zone, fire))
            .take(count)
            .map(|fire| PreviewFire {
                user: user.as_str().to_owned(),
                timezone: zone.name().to_owned(),
                local: fire.with_timezone(&zone).to_rfc3339(),
                utc: fire.to_rfc3339(),
                paused: profile.paused_at(fire),
            });
        fires.extend(shown);
    }
    Ok((fires, problems))
}
