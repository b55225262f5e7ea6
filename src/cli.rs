//! The command line: every subcommand with its help, and the dispatch to the
//! library. `main.rs` only parses, sets up logging and calls [`dispatch`].
//!
//! This is an edge of the program: it uses `anyhow`, prints reports to stdout and chooses exit
//! codes. It must not hold logic that tests cannot reach through the library.

// Reports are this module's output: printing is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod admin;
mod authorize;
mod bench;
mod config_check;
mod config_init;
mod demo;
mod enqueue;
mod health;
mod report;
mod results;
mod schedule;
mod setup;
mod sim;
mod usage;
mod users;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::ids::{RunId, UserId};
use crate::telemetry::{LogFormat, Redactor};

pub use self::bench::{
    BenchArgs, BenchCommand, BenchCommon, BenchFanoutArgs, BenchQueueArgs, BenchRunsArgs,
};
pub use self::sim::SimArgs;

pub mod exit;

const AFTER_HELP: &str = "\
Examples:
  agentcron config init                       write a commented ./jobs.toml and .env.example
  agentcron config check                      validate ./jobs.toml, print it with secrets redacted
  agentcron --config /etc/agentcron/jobs.toml worker
  redis-cli LPUSH agentcron:intake '{\"user\":\"alice@example.com\"}'

Configuration: --config PATH, else $AGENTCRON_CONFIG, else ./jobs.toml; any key can be
overridden with AGENTCRON__SECTION__KEY (for example AGENTCRON__WORKER__CONCURRENCY=50).
Commands that only read or change the queue (status, runs, run, result, transcript, notices,
enqueue, requeue, cancel) also work without ./jobs.toml, from the environment alone.
Secrets come from SCALEKIT_CLIENT_ID, SCALEKIT_CLIENT_SECRET and ANTHROPIC_API_KEY (or .env).

Exit codes: 0 success, 1 failure, 2 bad usage or not yet available, 3 setup --check found
differences, 4 authorize --wait timed out with connections still pending.";

/// Runs a Claude Managed Agent per user on a schedule, with Scalekit-authenticated tools.
#[derive(Debug, Parser)]
#[command(name = "agentcron", version, about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// Configuration file [default: $AGENTCRON_CONFIG, else ./jobs.toml].
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Log format on stderr; RUST_LOG sets the filter (default info).
    #[arg(long, global = true, value_enum, env = "AGENTCRON_LOG_FORMAT", default_value = "pretty")]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand. Those marked "not yet available" exit with code 2.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Find or create the MCP config, the agent and the environment (idempotent).
    #[command(
        after_help = "Examples:\n  agentcron setup\n  agentcron setup --json | jq -r .setup.agent_id\n  agentcron setup --check    exit 3 and name each difference when jobs.toml and the vendors disagree"
    )]
    Setup(SetupArgs),
    /// Print each user's connections and an auth link for every inactive one.
    #[command(
        after_help = "Examples:\n  agentcron authorize alice@example.com bob@example.com --wait --timeout 10m\n  agentcron authorize alice@example.com --json\n\nExit codes: 0 done (with --wait: every connection active), 1 failure, 4 --wait timed out\nwith connections still pending (named on stderr)."
    )]
    Authorize(AuthorizeArgs),
    /// Enqueue a run for each user now (or at --at) and print the run ids.
    #[command(
        after_help = "Examples:\n  agentcron enqueue alice@example.com bob@example.com\n  agentcron enqueue --from-file users.txt --prompt 'Triage my inbox.'"
    )]
    Enqueue(EnqueueArgs),
    /// Run the worker daemon: executes queued runs until SIGTERM.
    #[command(after_help = "Example:\n  agentcron worker --schedule")]
    Worker(WorkerArgs),
    /// Run the cron scheduler alone: fires `[[schedule]]` ticks into the queue.
    #[command(after_help = "Example:\n  agentcron scheduler")]
    Scheduler,
    /// Exit 0 when Redis answers (and with --worker or --scheduler, the process on this host is
    /// healthy), else 1 naming what is not: for container healthchecks.
    #[command(after_help = health::AFTER_HELP)]
    Health(health::HealthArgs),
    /// One screen: workers, queue depths, runs by state, notices, failures, next ticks.
    #[command(after_help = "Example:\n  agentcron status --json | jq .queue")]
    Status(ReportArgs),
    /// List runs, newest first.
    #[command(after_help = "Example:\n  agentcron runs --state dead --since 1h --limit 20")]
    Runs(RunsArgs),
    /// Show one run record (result, tool calls, usage, cost estimate) with its phase timeline.
    #[command(
        after_help = "Example:\n  agentcron run 'morning-triage:alice@example.com:1767254400'"
    )]
    Run(RunIdArgs),
    /// Print only a run's result, the agent's final message (exit 1 when it has none).
    #[command(after_help = "Example:\n  agentcron result <RUN_ID> | mail -s triage a@b.c")]
    Result(RunIdArgs),
    /// Tokens and estimated cost of the runs of the last days, by user, schedule or day.
    #[command(after_help = "Example:\n  agentcron usage --since 30d --by user --top 10")]
    Usage(usage::UsageArgs),
    /// Print a run's transcript as the guide does: the agent's text, then `→ tool` per tool use.
    #[command(after_help = "Example:\n  agentcron transcript <RUN_ID> --follow")]
    Transcript(TranscriptArgs),
    /// List notices for users whose connections need re-authorisation.
    #[command(after_help = "Example:\n  agentcron notices --open --json")]
    Notices(NoticesArgs),
    /// Put a dead or failed run back on the queue.
    #[command(after_help = "Example:\n  agentcron requeue <RUN_ID>")]
    Requeue(RunIdArgs),
    /// Cancel a queued or running run.
    #[command(after_help = "Example:\n  agentcron cancel <RUN_ID>")]
    Cancel(RunIdArgs),
    /// Each schedule's next fire times, in its zone and in UTC; `preview` for each user's.
    #[command(
        after_help = "Examples:\n  agentcron schedules --json\n  agentcron schedules preview morning-triage --user alice@example.com --count 5"
    )]
    Schedules(schedule::SchedulesArgs),
    /// User profiles: each user's time zone, pause and prompt template values.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Serve the local simulator of the Scalekit and Anthropic APIs.
    #[command(after_help = "Example:\n  agentcron sim --port 8787")]
    Sim(SimArgs),
    /// Run the end-to-end demo against the simulator.
    #[command(after_help = "Example:\n  agentcron demo")]
    Demo(DemoArgs),
    /// Benchmarks: queue throughput, concurrent sessions, schedule fan-out.
    #[command(
        after_help = "Example:\n  agentcron bench queue --jobs 50000 --concurrency 200 --json"
    )]
    Bench(BenchArgs),
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `agentcron config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it with secrets redacted (exit 1 when invalid).
    #[command(
        after_help = "Examples:\n  agentcron config check\n  AGENTCRON__WORKER__CONCURRENCY=50 agentcron config check --json\n  agentcron config check --secrets   # also require the API credentials"
    )]
    Check(ConfigCheckArgs),
    /// Write a commented jobs.toml and a .env.example to start from (exit 1 if either exists).
    #[command(
        after_help = "Examples:\n  agentcron config init\n  agentcron config init --dir /etc/agentcron\n  agentcron config init --force   # overwrite both files"
    )]
    Init(ConfigInitArgs),
}

/// Arguments of `config init`.
#[derive(Debug, Args)]
pub struct ConfigInitArgs {
    /// Where to write jobs.toml and .env.example (created when missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Overwrite files that exist.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `config check`.
#[derive(Debug, Args)]
pub struct ConfigCheckArgs {
    /// Print JSON instead of TOML.
    #[arg(long)]
    pub json: bool,
    /// Also fail when SCALEKIT_CLIENT_ID, SCALEKIT_CLIENT_SECRET or ANTHROPIC_API_KEY is missing.
    #[arg(long)]
    pub secrets: bool,
    /// Also fail (exit 1) on warnings: AGENTCRON_ variables that set no key.
    #[arg(long)]
    pub strict: bool,
    /// Also connect to redis.url and fail (exit 1) when a worker would refuse it: a
    /// maxmemory-policy that can drop keys, unless redis.allow_eviction is set.
    #[arg(long)]
    pub redis: bool,
}

/// `--json` for reports.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Report how the MCP config, agent and environment differ from the configuration (a
    /// missing one included) without changing anything; exit 3 when they do.
    #[arg(long)]
    pub check: bool,
    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub budget: BudgetArgs,
}

/// How long an interactive command tries to reach Scalekit and Anthropic.
#[derive(Debug, Args)]
pub struct BudgetArgs {
    /// The most one remote call may take, its retries included, before the command fails
    /// naming the service (the worker has no such budget: it waits out an outage).
    #[arg(
        long,
        default_value = "30s",
        value_name = "DURATION",
        value_parser = humantime::parse_duration
    )]
    pub connect_budget: std::time::Duration,
}

/// Arguments of `authorize`.
#[derive(Debug, Args)]
pub struct AuthorizeArgs {
    /// User identifiers; all are worked on at once.
    #[arg(required = true)]
    pub users: Vec<UserId>,
    /// Keep polling, printing each change, until every connection is active (exit 0) or the
    /// timeout passes (exit 4, naming what is still pending). One link per pending connection,
    /// reused until it expires.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait polls.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
    /// Print JSON lines: an object per user whenever its connections change (exactly one per
    /// user without --wait); a user's last line is its state at exit.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub budget: BudgetArgs,
}

/// Arguments of `enqueue`.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// User identifiers.
    pub users: Vec<UserId>,
    /// Read user identifiers from a file, one per line.
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    /// Prompt for the agent (placeholders {user}, {local_time}, {run_id}).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Not before this time: RFC 3339, a delay (10m, +2h), `today 17:30`, `tomorrow 08:00` or
    /// `08:00` (the next one; local time).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Run id for a single user (deduplicates).
    #[arg(long)]
    pub run_id: Option<RunId>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Also run the cron scheduler in this process.
    #[arg(long)]
    pub schedule: bool,
}

/// Arguments of `runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only this user's runs.
    #[arg(long)]
    pub user: Option<String>,
    /// Only runs in this state.
    #[arg(long)]
    pub state: Option<String>,
    /// Only runs of this schedule.
    #[arg(long)]
    pub schedule: Option<String>,
    /// Only runs newer than this (RFC 3339, or an age such as 1h).
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many runs.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// A run id and `--json`.
#[derive(Debug, Args)]
pub struct RunIdArgs {
    /// The run id.
    pub id: RunId,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `transcript`.
#[derive(Debug, Args)]
pub struct TranscriptArgs {
    /// The run id.
    pub id: RunId,
    /// Keep printing new events until the run ends.
    #[arg(long)]
    pub follow: bool,
    /// Print the raw events as JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `notices`.
#[derive(Debug, Args)]
pub struct NoticesArgs {
    /// Only open notices (the default).
    #[arg(long, conflicts_with = "all")]
    pub open: bool,
    /// Open and resolved notices.
    #[arg(long)]
    pub all: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep a 10-second demo schedule running until Ctrl-C.
    #[arg(long)]
    pub follow: bool,
}

/// Runs the parsed command and returns the process exit code.
///
/// # Errors
/// Any failure of the command, to be printed (redacted) by `main`.
pub async fn dispatch(cli: Cli, redactor: &Redactor) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Config(ConfigCommand::Check(args)) => {
            config_check::run(cli.config.as_deref(), &args, redactor).await
        }
        Command::Config(ConfigCommand::Init(args)) => config_init::run(&args),
        Command::Enqueue(args) => enqueue::run(cli.config.as_deref(), &args).await,
        Command::Sim(args) => sim::run(&args).await,
        Command::Setup(args) => setup::run(cli.config.as_deref(), &args, redactor).await,
        Command::Authorize(args) => authorize::run(cli.config.as_deref(), &args, redactor).await,
        Command::Scheduler => schedule::scheduler(cli.config.as_deref()).await,
        Command::Schedules(args) => schedule::schedules(cli.config.as_deref(), &args).await,
        Command::Users(command) => users::run(cli.config.as_deref(), &command, redactor).await,
        Command::Worker(args) => worker::run(cli.config.as_deref(), &args, redactor).await,
        Command::Health(args) => health::run(cli.config.as_deref(), &args, redactor).await,
        Command::Status(args) => report::status(cli.config.as_deref(), &args, redactor).await,
        Command::Runs(args) => report::runs(cli.config.as_deref(), &args, redactor).await,
        Command::Run(args) => results::run(cli.config.as_deref(), &args, redactor).await,
        Command::Result(args) => results::result(cli.config.as_deref(), &args, redactor).await,
        Command::Usage(args) => usage::run(cli.config.as_deref(), &args, redactor).await,
        Command::Transcript(args) => {
            report::transcript(cli.config.as_deref(), &args, redactor).await
        }
        Command::Notices(args) => report::notices(cli.config.as_deref(), &args, redactor).await,
        Command::Demo(args) => demo::run(cli.config.as_deref(), &args, redactor).await,
        Command::Requeue(args) => {
            admin::run(cli.config.as_deref(), &args, admin::Verb::Requeue, redactor).await
        }
        Command::Cancel(args) => {
            admin::run(cli.config.as_deref(), &args, admin::Verb::Cancel, redactor).await
        }
        Command::Bench(args) => bench::run(&args).await,
    }
}
