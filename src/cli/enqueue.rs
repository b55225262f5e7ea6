//! `agentcron enqueue`: create runs for users now (or at `--at`) and print their run ids.
//! A run id that exists already is reported as such and not queued again.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

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

/// `--at`: an RFC 3339 time, or a delay from now such as `10m`; at most a year ahead.
fn parse_at(at: &str) -> anyhow::Result<i64> {
    let now_ms = crate::queue::unix_ms(SystemTime::now());
    let at_ms = if let Ok(time) = chrono::DateTime::parse_from_rfc3339(at) {
        time.timestamp_millis()
    } else {
        let delay: Duration = humantime::parse_duration(at).with_context(|| {
            format!("--at `{at}` is neither an RFC 3339 time nor a delay like 10m")
        })?;
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        now_ms.saturating_add(delay_ms)
    };
    // The intake's limit: a run meant for later is more likely a typo (a unit, a year) than a
    // plan, and would sit in the delayed set for years.
    anyhow::ensure!(
        at_ms.saturating_sub(now_ms) <= crate::queue::intake::MAX_NOT_BEFORE_AHEAD_MS,
        "--at `{at}` is more than a year ahead; a run can be enqueued at most 365 days ahead"
    );
    Ok(at_ms)
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
        let now = crate::queue::unix_ms(SystemTime::now());
        assert!((now + 590_000..=now + 610_000).contains(&soon));
        assert!(parse_at("tomorrow").is_err());
        assert!(parse_at("364d").is_ok());
        for far in ["366d", "2years", "1000000000y", "9999-01-01T00:00:00Z"] {
            let error = parse_at(far).unwrap_err().to_string();
            assert!(error.contains("more than a year ahead"), "{far}: {error}");
        }
    }
}
