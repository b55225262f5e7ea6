//! `agentcron enqueue`: create runs for users now (or at `--at`) and print their run ids.
//! A run id that exists already is reported as such and not queued again.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::{EnqueueArgs, exit};
use crate::config::{self, Env};
use crate::ids::{RunId, UserId};
use crate::queue::{Enqueued, NewRun};

/// Enqueues and prints; exit 2 on bad arguments, 1 when Redis fails.
pub(super) async fn run(flag: Option<&Path>, args: &EnqueueArgs) -> anyhow::Result<ExitCode> {
    let runs = match runs(args) {
        Ok(runs) => runs,
        Err(error) => {
            eprintln!("agentcron enqueue: {error:#}");
            return Ok(ExitCode::from(exit::USAGE));
        }
    };
    let env = Env::from_process();
    let path = config::resolve_path(flag, &env);
    let config = config::load_for(flag, &env, config::Needs::Redis)
        .with_context(|| super::setup::loading(&path))?;
    let queue = super::setup::queue(&config).await?;
    queue.check_layout().await.context("checking the queue's shards")?;
    let enqueued = queue.enqueue(&runs, "cli").await.context("enqueueing runs")?;
    print(&enqueued, args.json)?;
    Ok(ExitCode::from(exit::OK))
}

/// The runs the arguments ask for, validated before anything is written.
fn runs(args: &EnqueueArgs) -> anyhow::Result<Vec<NewRun>> {
    let mut users = args.users.clone();
    if let Some(file) = &args.from_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading users from {}", file.display()))?;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let user = UserId::parse(line)
                .with_context(|| format!("invalid user in {}", file.display()))?;
            users.push(user);
        }
    }
    anyhow::ensure!(!users.is_empty(), "name at least one user, or --from-file");
    anyhow::ensure!(
        args.run_id.is_none() || users.len() == 1,
        "--run-id needs exactly one user (got {})",
        users.len()
    );
    let not_before_ms = args.at.as_deref().map(parse_at).transpose()?;
    let runs = users
        .into_iter()
        .map(|user| NewRun {
            run_id: args.run_id.clone().unwrap_or_else(RunId::generate),
            user,
            schedule: None,
            prompt: args.prompt.clone(),
            not_before_ms,
            instructions: None,
        })
        .collect();
    Ok(runs)
}

/// The forms `--at` takes, for its help and its error.
const AT_FORMS: &str = "an RFC 3339 time (2027-01-05T08:00:00+01:00), a delay (10m, +2h, 1h30m), \
                        `today 17:30`, `tomorrow 08:00`, or `08:00` (the next 08:00), the last \
                        three in this machine's time zone";

/// `--at`: see [`AT_FORMS`]; at most a year ahead.
fn parse_at(at: &str) -> anyhow::Result<i64> {
    let now = chrono::Local::now();
    let now_ms = now.timestamp_millis();
    let at_ms =
        at_ms(at.trim(), now).ok_or_else(|| anyhow::anyhow!("--at `{at}`: expected {AT_FORMS}"))?;
    // The intake's limit: a run meant for later is more likely a typo (a unit, a year) than a
    // plan, and would sit in the delayed set for years.
    anyhow::ensure!(
        at_ms.saturating_sub(now_ms) <= crate::queue::intake::MAX_NOT_BEFORE_AHEAD_MS,
        "--at `{at}` is more than a year ahead; a run can be enqueued at most 365 days ahead"
    );
    Ok(at_ms)
}

/// `text` as unix ms, from `now`: `None` when it is none of [`AT_FORMS`].
fn at_ms(text: &str, now: chrono::DateTime<chrono::Local>) -> Option<i64> {
    use chrono::{Days, NaiveTime, TimeZone};
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp_millis());
    }
    if let Ok(delay) = humantime::parse_duration(text.strip_prefix('+').unwrap_or(text)) {
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        return Some(now.timestamp_millis().saturating_add(delay_ms));
    }
    let (day, clock) = match text.split_once(' ') {
        Some(("today", clock)) => (Some(0), clock),
        Some(("tomorrow", clock)) => (Some(1), clock),
        Some(_) => return None,
        None => (None, text),
    };
    let clock = NaiveTime::parse_from_str(clock.trim(), "%H:%M").ok()?;
    let date = now.date_naive().checked_add_days(Days::new(day.unwrap_or(0)))?;
    let mut when = chrono::Local.from_local_datetime(&date.and_time(clock)).earliest()?;
    // A bare clock time is the next one: tomorrow's when today's has passed.
    if day.is_none() && when <= now {
        let date = date.checked_add_days(Days::new(1))?;
        when = chrono::Local.from_local_datetime(&date.and_time(clock)).earliest()?;
    }
    Some(when.timestamp_millis())
}

fn print(enqueued: &[Enqueued], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(enqueued)?);
        return Ok(());
    }
    println!("{:<40}  {:<8}  USER", "RUN ID", "STATUS");
    for run in enqueued {
        let status = if run.created { "queued" } else { "exists" };
        println!("{:<40}  {status:<8}  {}", run.run_id, run.user);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_accepts_times_and_delays() {
        assert_eq!(parse_at("1970-01-01T00:00:02Z").unwrap(), 2000);
        let soon = parse_at("10m").unwrap();
        let now = crate::queue::unix_ms(std::time::SystemTime::now());
        assert!((now + 590_000..=now + 610_000).contains(&soon));
        let error = parse_at("tomorrow").unwrap_err().to_string();
        assert!(error.contains("tomorrow 08:00") && error.contains("+2h"), "{error}");
        assert!(parse_at("364d").is_ok());
        let later = parse_at("+2h").unwrap();
        assert!((now + 7_190_000..=now + 7_210_000).contains(&later));
        for far in ["366d", "2years", "1000000000y", "9999-01-01T00:00:00Z"] {
            let error = parse_at(far).unwrap_err().to_string();
            assert!(error.contains("more than a year ahead"), "{far}: {error}");
        }
    }

    #[test]
    fn at_accepts_clock_times_today_tomorrow_and_next() {
        use chrono::TimeZone;
        let now = chrono::Local.with_ymd_and_hms(2027, 3, 10, 12, 0, 0).unwrap();
        let at = |text| {
            let ms = at_ms(text, now).unwrap();
            chrono::Local.timestamp_millis_opt(ms).unwrap().format("%F %R").to_string()
        };
        assert_eq!(at("tomorrow 08:00"), "2027-03-11 08:00");
        assert_eq!(at("today 17:30"), "2027-03-10 17:30");
        assert_eq!(at("08:00"), "2027-03-11 08:00", "the next 08:00");
        assert_eq!(at("13:15"), "2027-03-10 13:15");
        for bad in ["tomorrow", "next week", "25:00", "tomorrow 8", "yesterday 08:00"] {
            assert_eq!(at_ms(bad, now), None, "{bad}");
        }
    }
}
