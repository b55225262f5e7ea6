//! The checks of `[[schedule]]`: unique names, cron expressions that parse and fire, IANA
//! zones, user ids, and their defaults. Split from `validate.rs` only to keep each file
//! readable; the same rules apply (every problem collected, each with its key).

use chrono::{TimeDelta, Utc};

use super::checker::Checker;
use super::{DAY, Overlap, ScheduleConfig};
use crate::config::raw::RawSchedule;
use crate::cron::CronExpr;
use crate::ids::UserId;

const DEFAULT_PROMPT: &str = "It is {local_time}. Triage my inbox.";
/// A schedule must fire within this long from now: one that cannot never will (`0 0 30 2 *`,
/// a year in the past). Five years cover the rarest real pattern, February 29th on a weekday.
const FIRE_HORIZON_DAYS: i64 = 5 * 366;

pub(super) fn schedules(check: &mut Checker<'_>, raw: &[RawSchedule]) -> Vec<ScheduleConfig> {
    let mut seen = std::collections::HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(i, entry)| {
            let key = format!("schedule[{i}]");
            if let Some(name) = entry.name.as_ref().filter(|name| !seen.insert(*name)) {
                check.problem(&format!("{key}.name"), format!("duplicate schedule name {name:?}"));
            }
            schedule(check, &key, entry)
        })
        .collect()
}

fn schedule(check: &mut Checker<'_>, key: &str, raw: &RawSchedule) -> ScheduleConfig {
    let name = match &raw.name {
        Some(name) => {
            check.name(&format!("{key}.name"), name, 64);
            name.clone()
        }
        None => {
            check.problem(&format!("{key}.name"), "missing: every [[schedule]] needs a name");
            String::new()
        }
    };
    let cron = cron(check, &format!("{key}.cron"), raw.cron.as_deref());
    let zone = raw.timezone.as_deref().unwrap_or("UTC");
    let timezone = zone.parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
        check.problem(
            &format!("{key}.timezone"),
            format!("expected an IANA time zone such as \"Europe/Berlin\", found {zone:?}"),
        );
        chrono_tz::UTC
    });
    let mut users = Vec::with_capacity(raw.users.len());
    for (j, user) in raw.users.iter().enumerate() {
        match UserId::parse(user.as_str()) {
            Ok(user) => users.push(user),
            Err(error) => check.problem(
                &format!("{key}.users[{j}]"),
                format!("expected a valid user id: {error}"),
            ),
        }
    }
    ScheduleConfig {
        name,
        cron,
        timezone,
        users,
        prompt: raw.prompt.clone().unwrap_or_else(|| DEFAULT_PROMPT.to_owned()),
        overlap: check.choice(
            &format!("{key}.overlap"),
            raw.overlap.as_deref(),
            &[("skip", Overlap::Skip), ("queue", Overlap::Queue)],
        ),
        spread: check.opt_duration(&format!("{key}.spread"), raw.spread.as_deref(), DAY),
        catch_up: check.opt_duration(&format!("{key}.catch_up"), raw.catch_up.as_deref(), 7 * DAY),
        enabled: raw.enabled.unwrap_or(true),
    }
}

/// The cron expression at `key`: it must parse and fire within [`FIRE_HORIZON_DAYS`].
fn cron(check: &mut Checker<'_>, key: &str, text: Option<&str>) -> CronExpr {
    let Some(text) = text else {
        check.problem(key, "missing: every [[schedule]] needs a cron expression");
        return CronExpr::fallback();
    };
    let cron = match CronExpr::parse(text) {
        Ok(cron) => cron,
        Err(error) => {
            check.problem(key, error.to_string());
            return CronExpr::fallback();
        }
    };
    // Wall-clock time in UTC: a zone shifts fire times by hours, never by years.
    let now = Utc::now().naive_utc();
    if cron.next_within(now, TimeDelta::days(FIRE_HORIZON_DAYS)).is_none() {
        check.problem(key, format!("{text:?} never fires: no date matches it in the next 5 years"));
    }
    cron
}
