//! `agentcron scheduler` (run the cron scheduler until SIGINT or SIGTERM) and
//! `agentcron schedules` (each schedule's next fire times, users and last tick). The logic lives
//! in `crate::schedule`; this file only loads the configuration, connects and prints.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use clap::{Args, Subcommand};

use super::{ReportArgs, exit};

mod preview;
use crate::config::{self, Env};
use crate::ops::http::{self, OpsState};
use crate::queue::Queue;
use crate::schedule::{self, ScheduleReport};

/// Runs the scheduler in the foreground; exit 0 after SIGINT or SIGTERM.
pub(super) async fn scheduler(flag: Option<&Path>) -> anyhow::Result<ExitCode> {
    let env = Env::from_process();
    let path = config::resolve_path(flag, &env);
    let config = config::load(&path, &env).with_context(|| super::setup::loading(&path))?;
    // Bound first, so a bad or taken address fails before anything else starts.
    let listener = http::bind_scheduler(&config.ops).await?;
    let queue = Queue::connect(&config.redis).await.context("connecting to Redis")?;
    queue.check_layout().await.context("checking the queue's shards")?;
    let stop_ops = CancellationToken::new();
    let server = match listener {
        Some(listener) => {
            let redactor = crate::telemetry::Redactor::new(config.secret_values());
            let ops = OpsState::new(Arc::new(config.clone()), redactor)?;
            let addr = listener.local_addr().context("reading the ops address")?;
            tracing::info!(message = "Scheduler ops HTTP listening.", url = %format!("http://{addr}/metrics"));
            Some(tokio::spawn(http::serve_scheduler(ops, listener, stop_ops.clone())))
        }
        None => None,
    };
    let res = run_daemon(path, env, queue).await;
    stop_ops.cancel();
    if let Some(server) = server {
        server.await.context("ops HTTP task")?.context("ops HTTP")?;
    }
    res
}

/// The daemon, until a signal (then it drains) or its own end.
async fn run_daemon(path: std::path::PathBuf, env: Env, queue: Queue) -> anyhow::Result<ExitCode> {
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

/// Arguments of `schedules`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SchedulesArgs {
    /// A report of one schedule instead of all.
    #[command(subcommand)]
    pub command: Option<SchedulesCommand>,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// `agentcron schedules …`.
#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// The next fire times of each user of a schedule, in the user's zone and in UTC.
    #[command(
        after_help = "Examples:\n  agentcron schedules preview morning-triage --user alice@example.com --count 5\n  agentcron schedules preview morning-triage --from 2027-03-13T00:00:00Z --count 3 --json"
    )]
    Preview(PreviewArgs),
}

/// Arguments of `schedules preview`.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// The schedule.
    pub name: String,
    /// Only these users (repeatable); default: every user of the schedule, up to 1,000.
    #[arg(long = "user", value_name = "USER")]
    pub users: Vec<String>,
    /// Start after this time (RFC 3339); default now.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Fire times per user.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub count: u16,
    /// Print JSON: one object per fire time, with `user`, `timezone`, `local`, `utc`, `paused`.
    #[arg(long)]
    pub json: bool,
}

/// Users `preview` shows when none is named.
const PREVIEW_USERS: usize = 1_000;

/// Prints the report of every schedule, as a table or `--json`; or a preview.
pub(super) async fn schedules(
    flag: Option<&Path>,
    args: &SchedulesArgs,
) -> anyhow::Result<ExitCode> {
    let env = Env::from_process();
    let path = config::resolve_path(flag, &env);
    let config = config::load(&path, &env).with_context(|| super::setup::loading(&path))?;
    let queue = Queue::connect(&config.redis).await.context("connecting to Redis")?;
    if let Some(SchedulesCommand::Preview(preview)) = &args.command {
        return preview::run(&queue, &config.schedules, preview).await;
    }
    let args = &args.report;
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
                    "            {} users: {} enqueued, {} skipped, {} paused, {} invalid",
                    last.users, last.enqueued, last.skipped, last.paused, last.invalid
                );
                if last.bad_profile > 0 {
                    println!(
                        "            {} left out: a profile value cannot be used (agentcron users list --schedule {})",
                        last.bad_profile, report.name
                    );
                }
                let states: Vec<String> =
                    last.states.iter().map(|(state, n)| format!("{n} {state}")).collect();
                if !states.is_empty() {
                    println!("            runs now: {}", states.join(", "));
                }
            }
        }
    }
}
