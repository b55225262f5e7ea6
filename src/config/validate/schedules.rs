//! The checks of `[[schedule]]`: unique names, cron expressions that parse and fire, IANA
//! zones, user ids, and their defaults. Split from `validate.rs` only to keep each file
//! readable; the same rules apply (every problem collected, each with its key).

use chrono::{NaiveDate, TimeDelta, Utc};

use super::checker::Checker;
use super::{DAY, Overlap, ScheduleConfig};
use crate::config::raw::RawSchedule;
use crate::cron::CronExpr;
use crate::ids::UserId;

/// Most `skip_dates` of one schedule: years of holidays, and a bound on the check per tick.
const MAX_SKIP_DATES: usize = 1_000;
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
    let per_user_zone = raw.timezone.as_deref() == Some("user");
    let (zone_key, zone) = match (&raw.timezone, &raw.default_timezone) {
        (Some(zone), _) if zone != "user" => {
            if raw.default_timezone.is_some() {
                let reason = "only with timezone = \"user\": it is the zone of users without one";
                check.problem(&format!("{key}.default_timezone"), reason);
            }
            ("timezone", zone.as_str())
        }
        (_, Some(zone)) => ("default_timezone", zone.as_str()),
        _ => ("timezone", "UTC"),
    };
    let timezone = zone.parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
        check.problem(
            &format!("{key}.{zone_key}"),
            format!(
                "expected an IANA time zone such as \"Europe/Berlin\"{}, found {zone:?}",
                if zone_key == "timezone" { " or \"user\"" } else { "" }
            ),
        );
        chrono_tz::UTC
    });
    let skip_dates = skip_dates(check, &format!("{key}.skip_dates"), raw.skip_dates.as_deref());
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
        per_user_zone,
        skip_dates,
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
        budget_daily_tokens: super::settings::tokens(
            check,
            &format!("{key}.budget_daily_tokens"),
            raw.budget_daily_tokens,
        ),
        budget_monthly_tokens: super::settings::tokens(
            check,
            &format!("{key}.budget_monthly_tokens"),
            raw.budget_monthly_tokens,
        ),
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

/// `skip_dates`: local dates `YYYY-MM-DD`, sorted and each once.
fn skip_dates(check: &mut Checker<'_>, key: &str, raw: Option<&[String]>) -> Vec<NaiveDate> {
    let mut dates: Vec<NaiveDate> = Vec::new();
    for (j, text) in raw.unwrap_or_default().iter().enumerate() {
        match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            Ok(date) => dates.push(date),
            Err(_) => check.problem(
                &format!("{key}[{j}]"),
                format!("expected a date such as \"2026-12-25\", found {text:?}"),
            ),
        }
    }
    if dates.len() > MAX_SKIP_DATES {
        check.problem(key, format!("at most {MAX_SKIP_DATES} dates"));
    }
    dates.sort_unstable();
    dates.dedup();
    dates
}
