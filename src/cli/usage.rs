//! `agentcron usage [--since 7d] [--by user|schedule|day] [--top N] [--json]`: the tokens and
//! estimated cost of runs over the last days, from the per-day aggregates
//! (`ops::report::tokens`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{TimeZone, Utc};

use super::exit;
use super::report::{Style, connect, print_json, table};
use crate::ops::report::{self, UsageBy};
use crate::telemetry::Redactor;

/// Arguments of `usage`.
#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// The first day counted: an age such as 7d, or an RFC 3339 time.
    #[arg(long, default_value = "7d")]
    pub since: String,
    /// Group by user, schedule or day.
    #[arg(long, value_enum, default_value_t = UsageGroup::User)]
    pub by: UsageGroup,
    /// At most this many rows (the most tokens first; for days, the newest).
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `usage --by` groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UsageGroup {
    /// Per user.
    User,
    /// Per schedule (`adhoc` for runs of none).
    Schedule,
    /// Per day (UTC).
    Day,
}

/// `agentcron usage`.
pub(super) async fn run(
    flag: Option<&Path>,
    args: &UsageArgs,
    redactor: &Redactor,
) -> anyhow::Result<ExitCode> {
    let Some(first) = report::since_ms(&args.since)
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .map(|at| at.date_naive())
    else {
        eprintln!(
            "agentcron usage: --since {:?}: expected RFC 3339 or an age such as 7d",
            args.since
        );
        return Ok(ExitCode::from(exit::USAGE));
    };
    let by = match args.by {
        UsageGroup::User => UsageBy::User,
        UsageGroup::Schedule => UsageBy::Schedule,
        UsageGroup::Day => UsageBy::Day,
    };
    let (_, mut conn, keys) = connect(flag, redactor).await?;
    let today = Utc::now().date_naive();
    let rows = report::usage(&mut conn, &keys, (first, today), by, args.top)
        .await
        .context("reading usage")?;
    if args.json {
        print_json(&rows, redactor)?;
        return Ok(ExitCode::from(exit::OK));
    }
    let style = Style::detect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                row.key.clone(),
                row.runs.to_string(),
                row.input.to_string(),
                row.output.to_string(),
                row.cache_write.to_string(),
                row.cache_read.to_string(),
                format!("{:.4}", row.cost_usd),
            ]
        })
        .collect();
    let group = match by {
        UsageBy::User => "USER",
        UsageBy::Schedule => "SCHEDULE",
        UsageBy::Day => "DAY",
    };
    let header = [group, "RUNS", "INPUT", "OUTPUT", "CACHE_WRITE", "CACHE_READ", "COST_USD"];
    let mut out = std::io::stdout();
    let cells: Vec<Vec<String>> = cells
        .into_iter()
        .map(|row| row.iter().map(|c| redactor.redact(c).into_owned()).collect())
        .collect();
    table(&mut out, &style, &header, &cells)?;
    println!("(cost is an estimate from list prices)");
    Ok(ExitCode::from(exit::OK))
}
