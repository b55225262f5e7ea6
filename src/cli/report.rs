//! The operator's reports: `status`, `runs`, `transcript`, `notices` (`run` and `result` are in
//! `results.rs`). Aligned tables (colour only on a terminal) or `--json` for scripts; the data
//! comes from `ops::report`.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::{TimeZone, Utc};

use super::setup::{load_config, redis};
use super::{NoticesArgs, ReportArgs, RunsArgs, TranscriptArgs, exit};
use crate::keys::Keys;
use crate::ops::report::{self, RunFilter, RunSummary};
use crate::outcome::RunState;
use crate::records::transcript;
use crate::telemetry::Redactor;

/// ANSI styling, only when stdout is a terminal.
pub(super) struct Style {
    on: bool,
}

impl Style {
    pub(super) fn detect() -> Self {
        Self { on: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.on { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }

    pub(super) fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    fn state(&self, state: &str) -> String {
        let code = match state {
            "succeeded" => "32",
            "dead" | "failed" => "31",
            "needs_auth" | "skipped" => "33",
            "running" => "36",
            _ => "0",
        };
        self.paint(code, state)
    }
}

/// Bytes as megabytes, one decimal.
fn mb(bytes: i64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_048_576.0)
}

pub(super) fn time(ms: Option<i64>) -> String {
    ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .map_or_else(|| "-".to_owned(), |at| at.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// Writes rows as aligned columns under a header.
pub(super) fn table(
    out: &mut impl Write,
    style: &Style,
    header: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths[i]))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    writeln!(out, "{}", style.bold(&line(header.iter().map(|h| (*h).to_owned()).collect())))?;
    for row in rows {
        writeln!(out, "{}", line(row.clone()))?;
    }
    Ok(())
}

pub(super) async fn connect(
    flag: Option<&Path>,
    redactor: &Redactor,
) -> anyhow::Result<(std::sync::Arc<crate::config::Config>, crate::config::RedisConn, Keys)> {
    let config = load_config(flag, redactor, crate::config::Needs::Redis)?;
    let conn = redis(&config).await?;
    let keys = config.redis.keys();
    Ok((config, conn, keys))
}

pub(super) fn print_json(value: &impl serde::Serialize, redactor: &Redactor) -> anyhow::Result<()> {
    println!("{}", redactor.redact(&serde_json::to_string_pretty(value)?));
    Ok(())
}

/// `agentcron status`.
pub(super) async fn status(
    flag: Option<&Path>,
    args: &ReportArgs,
    redactor: &Redactor,
) -> anyhow::Result<ExitCode> {
    let (config, mut conn, keys) = connect(flag, redactor).await?;
    let status = report::status(&mut conn, &keys, &config).await.context("reading status")?;
    if args.json {
        print_json(&status, redactor)?;
        return Ok(ExitCode::from(exit::OK));
    }
    render_status(&status, &mut std::io::stdout())?;
    Ok(ExitCode::from(exit::OK))
}

/// The status screen as text, the same for `agentcron status` and the demo.
pub(super) fn render_status(status: &report::Status, out: &mut impl Write) -> std::io::Result<()> {
    let style = Style::detect();
    writeln!(out, "{}", style.bold(&format!("Workers ({})", status.workers.len())))?;
    let rows: Vec<Vec<String>> = status
        .workers
        .iter()
        .map(|w| {
            let expires = w.lease_expires_at_ms.map_or("-".to_owned(), |at| {
                format!("{:+.1}s", (at - status.at_ms) as f64 / 1000.0)
            });
            vec![w.id.clone(), w.in_flight.to_string(), expires]
        })
        .collect();
    table(out, &style, &["WORKER", "IN FLIGHT", "LEASE"], &rows)?;
    let q = &status.queue;
    writeln!(out, "\n{}", style.bold("Queue"))?;
    writeln!(
        out,
        "pending {}  scheduled {}  running {}  dead {}  rejected {}  intake {}",
        q.pending, q.scheduled, q.running, q.dead, q.rejected, q.intake
    )?;
    writeln!(out, "\n{}", style.bold("Runs by state"))?;
    let rows: Vec<Vec<String>> = RunState::ALL
        .iter()
        .map(|s| {
            let name = s.as_str();
            vec![
                style.state(name),
                status.runs_last_hour.get(name).copied().unwrap_or(0).to_string(),
                status.runs_last_day.get(name).copied().unwrap_or(0).to_string(),
            ]
        })
        .collect();
    table(out, &style, &["STATE", "LAST HOUR", "LAST DAY"], &rows)?;
    writeln!(out, "\n{} {}", style.bold("Open notices:"), status.notices_open)?;
    let spent = |row: &crate::ops::report::UsageRow| {
        format!("{} tokens in {} runs, ~${:.2}", row.tokens(), row.runs, row.cost_usd)
    };
    let (today, month) = (&status.tokens.today, &status.tokens.month);
    writeln!(out, "{} today {} · this month {}", style.bold("Usage:"), spent(today), spent(month))?;
    let size =
        |name: &str| status.usage.get(name).map_or("not measured yet".to_owned(), |n| mb(*n));
    let n_keys = status.usage.get("redis_keys").copied().unwrap_or_default();
    let redis = format!("{} in {n_keys} keys", size("redis_bytes"));
    writeln!(
        out,
        "{} Redis {redis} · transcripts {}",
        style.bold("Storage:"),
        size("transcript_bytes")
    )?;
    if status.transcript_repairs > 0 {
        let line = format!("{} files wait to be rebuilt from Redis", status.transcript_repairs);
        writeln!(out, "{} {}", style.bold("Transcripts:"), style.paint("33", &line))?;
    }
    let tls = if status.redis["tls"] == true { "TLS" } else { "no TLS" };
    let user =
        status.redis["user"].as_str().map(|user| format!(" · user {user}")).unwrap_or_default();
    let host = status.redis["host"].as_str().unwrap_or_default();
    let mut topology = status.redis["topology"].as_str().unwrap_or_default().to_owned();
    let shards = status.redis["shards"].as_u64().unwrap_or(1);
    if let Some(masters) = status.redis["masters"].as_array() {
        let home = status.redis["slot_master"].as_str().unwrap_or("?");
        let on = status.redis["shard_masters"].as_u64().unwrap_or(1);
        topology = format!("cluster of {} masters, control slot on {home}", masters.len());
        let spread = format!(", {shards} shards on {on} masters");
        topology.push_str(if shards > 1 { &spread } else { "" });
    } else if shards > 1 {
        topology.push_str(&format!(", {shards} shards"));
    }
    writeln!(out, "{} {host} ({topology}, {tls}{user})", style.bold("Redis:"))?;
    if let Some(policy) = status.redis_policy.as_deref().filter(|p| *p != "noeviction") {
        let line = format!("maxmemory-policy {policy} can drop keys: runs may be lost");
        writeln!(out, "{} {}", style.bold("Redis:"), style.paint("31", &line))?;
    }
    if let Some(mark) = &status.setup_missing {
        let object = mark["object"].as_str().unwrap_or("an object");
        let line =
            format!("the {object} is missing at the vendor; runs wait: run `agentcron setup`");
        writeln!(out, "{} {}", style.bold("Setup:"), style.paint("31", &line))?;
    }
    if !status.recent_failures.is_empty() {
        writeln!(out, "\n{}", style.bold("Latest failures"))?;
        let rows: Vec<Vec<String>> = status
            .recent_failures
            .iter()
            .map(|r| {
                vec![
                    r.run_id.to_string(),
                    style.state(&r.state),
                    r.error_class.clone().unwrap_or_default(),
                    r.last_error.clone().unwrap_or_default().chars().take(80).collect(),
                ]
            })
            .collect();
        table(out, &style, &["RUN", "STATE", "CLASS", "ERROR"], &rows)?;
    }
    if !status.next_ticks.is_empty() {
        writeln!(out, "\n{}", style.bold("Next ticks"))?;
        let rows: Vec<Vec<String>> = status
            .next_ticks
            .iter()
            .map(|t| vec![t.schedule.clone(), t.local.clone(), t.utc.clone()])
            .collect();
        table(out, &style, &["SCHEDULE", "LOCAL", "UTC"], &rows)?;
    }
    Ok(())
}

/// Parses `--since`: RFC 3339, or an age such as `1h`.
fn since(text: &str) -> anyhow::Result<i64> {
    report::since_ms(text)
        .with_context(|| format!("--since {text:?}: expected RFC 3339 or an age such as 1h"))
}

/// `agentcron runs`.
pub(super) async fn runs(
    flag: Option<&Path>,
    args: &RunsArgs,
    redactor: &Redactor,
) -> anyhow::Result<ExitCode> {
    let since_ms = match args.since.as_deref().map(since).transpose() {
        Ok(since) => since,
        Err(error) => {
            eprintln!("agentcron runs: {error:#}");
            return Ok(ExitCode::from(exit::USAGE));
        }
    };
    if let Some(state) = &args.state
        && RunState::parse(state).is_none()
    {
        let names: Vec<_> = RunState::ALL.iter().map(|s| s.as_str()).collect();
        eprintln!("agentcron runs: --state {state:?}: expected one of {}", names.join(", "));
        return Ok(ExitCode::from(exit::USAGE));
    }
    let (_, mut conn, keys) = connect(flag, redactor).await?;
    let filter = RunFilter {
        user: args.user.clone(),
        state: args.state.clone(),
        schedule: args.schedule.clone(),
        since_ms,
        limit: args.limit,
    };
    let runs = report::runs(&mut conn, &keys, &filter).await.context("listing runs")?;
    if args.json {
        print_json(&runs, redactor)?;
        return Ok(ExitCode::from(exit::OK));
    }
    let style = Style::detect();
    let rows: Vec<Vec<String>> = runs.iter().map(|r| run_row(&style, r)).collect();
    table(
        &mut std::io::stdout(),
        &style,
        &["RUN", "USER", "STATE", "PHASE", "ATTEMPTS", "CREATED"],
        &rows,
    )?;
    Ok(ExitCode::from(exit::OK))
}

fn run_row(style: &Style, run: &RunSummary) -> Vec<String> {
    vec![
        run.run_id.to_string(),
        run.user.to_string(),
        style.state(&run.state),
        run.phase.clone().unwrap_or_else(|| "-".to_owned()),
        run.attempts.to_string(),
        time(run.created_at_ms),
    ]
}

/// `agentcron transcript <id> [--follow]`.
pub(super) async fn transcript(
    flag: Option<&Path>,
    args: &TranscriptArgs,
    redactor: &Redactor,
) -> anyhow::Result<ExitCode> {
    let (_, mut conn, keys) = connect(flag, redactor).await?;
    let mut printed = 0;
    loop {
        let lines = transcript::lines(&mut conn, &keys, &args.id)
            .await
            .context("reading the transcript")?;
        for line in lines.iter().skip(printed) {
            if args.json {
                println!("{}", redactor.redact(&line.to_string()));
            } else if let Some(text) = report::render_line(line) {
                print!("{}", redactor.redact(&text));
            }
        }
        printed = lines.len();
        let state = report::run(&mut conn, &keys, &args.id)
            .await?
            .and_then(|d| d.record.get("state").cloned());
        let finished = state.as_deref().and_then(RunState::parse).is_none_or(|s| s.is_terminal());
        if !args.follow || finished {
            if printed == 0 && state.is_none() {
                eprintln!("agentcron transcript: no run {:?}", args.id);
                return Ok(ExitCode::from(exit::FAILURE));
            }
            if !args.json {
                println!();
            }
            return Ok(ExitCode::from(exit::OK));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `agentcron notices [--open|--all]`.
pub(super) async fn notices(
    flag: Option<&Path>,
    args: &NoticesArgs,
    redactor: &Redactor,
) -> anyhow::Result<ExitCode> {
    let (_, mut conn, keys) = connect(flag, redactor).await?;
    let notices = report::notices(&mut conn, &keys, args.all).await.context("reading notices")?;
    if args.json {
        print_json(&notices, redactor)?;
        return Ok(ExitCode::from(exit::OK));
    }
    let style = Style::detect();
    let field = |n: &report::Notice, name: &str| n.fields.get(name).cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = notices
        .iter()
        .map(|n| {
            let seen = n.fields.get("last_seen_ms").and_then(|v| v.parse().ok());
            vec![
                n.user.to_string(),
                n.connection.clone(),
                field(n, "status"),
                field(n, "connection_status"),
                field(n, "count"),
                time(seen),
                field(n, "auth_link"),
            ]
        })
        .collect();
    table(
        &mut std::io::stdout(),
        &style,
        &["USER", "CONNECTION", "NOTICE", "ACCOUNT", "COUNT", "LAST SEEN", "AUTH LINK"],
        &rows,
    )?;
    Ok(ExitCode::from(exit::OK))
}
