//! `agentcron scheduler` (run the cron scheduler until SIGINT or SIGTERM) and
//! `agentcron schedules` (each schedule's next fire times, users and last tick). The logic lives
//! in `crate::schedule`; this file only loads the configuration, connects and prints.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::{ReportArgs, exit};
use crate::config::{self, Env};
use crate::queue::Queue;
use crate::schedule::{self, ScheduleReport};

/// Runs the scheduler in the foreground; exit 0 after SIGINT or SIGTERM.
pub(super) async fn scheduler(flag: Option<&Path>) -> anyhow::Result<ExitCode> {
    let env = Env::from_process();
    let path = config::resolve_path(flag, &env);
    let config = config::load(&path, &env).with_context(|| super::setup::loading(&path))?;
    let queue = Queue::connect(&config.redis).await.context("connecting to Redis")?;
    queue.check_layout().await.context("checking the queue's shards")?;
    let shutdown = CancellationToken::new();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    let daemon = schedule::run(path, env, queue, shutdown.clone());
    tokio::pin!(daemon);
    // The daemon runs until a signal cancels it; then it is polled to its end so it can drain.
    tokio::select! {
        res = &mut daemon => return res.map(|()| ExitCode::from(exit::OK)).context("scheduler"),
        res = tokio::signal::ctrl_c() => res.context("listening for SIGINT")?,
        _ = terminate.recv() => {}
    }
    tracing::info!(message = "Shutting down the scheduler.");
    shutdown.cancel();
    daemon.await.context("scheduler")?;
    Ok(ExitCode::from(exit::OK))
}

/// Prints the report of every schedule, as a table or `--json`.
pub(super) async fn schedules(flag: Option<&Path>, args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let env = Env::from_process();
    let path = config::resolve_path(flag, &env);
    let config = config::load(&path, &env).with_context(|| super::setup::loading(&path))?;
    let queue = Queue::connect(&config.redis).await.context("connecting to Redis")?;
    let reports = schedule::report(&queue, &config.schedules, chrono::Utc::now())
        .await
        .context("reading schedules from Redis")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print_table(&reports);
    }
    Ok(ExitCode::from(exit::OK))
}

fn print_table(reports: &[ScheduleReport]) {
    if reports.is_empty() {
        println!("No [[schedule]] in the configuration.");
    }
    for (i, report) in reports.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let state = if report.enabled { "" } else { "  (disabled)" };
        println!("{}{state}", report.name);
        println!("  cron      {}  in {}", report.cron, report.timezone);
        println!("  users     {}", report.users);
        for (j, fire) in report.next.iter().enumerate() {
            let label = if j == 0 { "next" } else { "" };
            println!("  {label:<8}  {}  ({})", fire.local, fire.utc);
        }
        match &report.last_tick {
            None => println!("  last      never"),
            Some(last) => {
                println!("  last      {}  ({})", last.tick.local, last.tick.utc);
                println!(
                    "            {} users: {} enqueued, {} skipped, {} invalid",
                    last.users, last.enqueued, last.skipped, last.invalid
                );
                let states: Vec<String> =
                    last.states.iter().map(|(state, n)| format!("{n} {state}")).collect();
                if !states.is_empty() {
                    println!("            runs now: {}", states.join(", "));
                }
            }
        }
    }
}
