//! `agentcron bench queue|runs|fanout`: runs one benchmark of [`crate::bench`] until it ends or
//! SIGINT/SIGTERM (its keys are deleted either way) and prints its numbers as a table or, with
//! `--json`, as one JSON object.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::exit;
use crate::bench::{fanout, runs, throughput};

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark.
    #[command(subcommand)]
    pub which: BenchCommand,
}

/// `agentcron bench …`. Each uses its own random key prefix and deletes its keys at the end.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// No-op jobs through the real queue: enqueue rates, process rate, enqueue→start latency.
    #[command(
        after_help = "Example:\n  agentcron bench queue --jobs 50000 --concurrency 200 --intake --json"
    )]
    Queue(BenchQueueArgs),
    /// The whole run pipeline against the simulator, one session per user.
    #[command(
        after_help = "Examples:\n  agentcron bench runs --users 1000 --event-delay-ms 200\n  agentcron bench runs --users 1000 --concurrency 20 --event-delay-ms 50   # per-run overhead, no CPU queueing\n  agentcron sim --port 8787 &  agentcron bench runs --users 10000 --event-delay-ms 3000 --sim-url http://127.0.0.1:8787"
    )]
    Runs(BenchRunsArgs),
    /// One schedule tick fanned out to N users, until all runs exist.
    #[command(after_help = "Example:\n  agentcron bench fanout --users 100000 --json")]
    Fanout(BenchFanoutArgs),
}

/// Arguments every benchmark takes.
#[derive(Debug, Args)]
pub struct BenchCommon {
    /// Redis to benchmark against (only keys under a random `agentcron-bench-<uuid>` prefix).
    #[arg(long, env = "REDIS_URL", default_value = crate::bench::DEFAULT_REDIS_URL)]
    pub redis_url: String,
    /// The queue's shards (`redis.shards`: 16 on a cluster, 1 on one node by default).
    #[arg(long, env = "AGENTCRON__REDIS__SHARDS")]
    pub shards: Option<usize>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `bench queue`.
#[derive(Debug, Args)]
pub struct BenchQueueArgs {
    /// Jobs in the backlog.
    #[arg(long, default_value_t = 50_000)]
    pub jobs: usize,
    /// Worker concurrency.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Also push the jobs through the redis-cli intake list.
    #[arg(long)]
    pub intake: bool,
    /// Common flags.
    #[command(flatten)]
    pub common: BenchCommon,
}

/// Arguments of `bench runs`.
#[derive(Debug, Args)]
pub struct BenchRunsArgs {
    /// Users, one run (one session) each, all enqueued at once.
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Worker concurrency (runs in flight at most); default: all users at once (at most
    /// 10,000). A small value measures each run's own overhead without queueing for the CPU.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Events per session you expect; the simulator's turn is fixed, the report counts them.
    #[arg(long)]
    pub events: Option<usize>,
    /// Pause after each agent event, so that sessions overlap.
    #[arg(long, default_value_t = 100)]
    pub event_delay_ms: u64,
    /// Use this simulator (`agentcron sim --port P`) instead of one in this process.
    #[arg(long, value_name = "URL")]
    pub sim_url: Option<String>,
    /// Common flags.
    #[command(flatten)]
    pub common: BenchCommon,
}

/// Arguments of `bench fanout`.
#[derive(Debug, Args)]
pub struct BenchFanoutArgs {
    /// Users of the schedule.
    #[arg(long, default_value_t = 100_000)]
    pub users: usize,
    /// With N > 0: `timezone = "user"`, the users' profiles spread over N zones, and a cron
    /// every minute, so that every zone fires at the tick (the cost of zone groups).
    #[arg(long, default_value_t = 0)]
    pub zones: usize,
    /// Common flags.
    #[command(flatten)]
    pub common: BenchCommon,
}

/// Runs the chosen benchmark.
pub(super) async fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let cancel = crate::shutdown::on_signals().context("installing signal handlers")?;
    match &args.which {
        BenchCommand::Queue(args) => {
            let opts = throughput::QueueOptions {
                redis_url: args.common.redis_url.clone(),
                shards: args.common.shards,
                jobs: args.jobs,
                concurrency: args.concurrency,
                intake: args.intake,
            };
            let report = throughput::run(&opts, &cancel).await.context("bench queue")?;
            print(&report, args.common.json, queue_lines)
        }
        BenchCommand::Runs(args) => {
            let opts = runs::RunsOptions {
                redis_url: args.common.redis_url.clone(),
                shards: args.common.shards,
                sim_url: args.sim_url.clone(),
                users: args.users,
                concurrency: args.concurrency,
                events: args.events,
                event_delay_ms: args.event_delay_ms,
            };
            let report = runs::run(&opts, &cancel).await.context("bench runs")?;
            print(&report, args.common.json, runs_lines)
        }
        BenchCommand::Fanout(args) => {
            let opts = fanout::FanoutOptions {
                redis_url: args.common.redis_url.clone(),
                shards: args.common.shards,
                users: args.users,
                zones: args.zones,
            };
            let report = fanout::run(&opts, &cancel).await.context("bench fanout")?;
            print(&report, args.common.json, fanout_lines)
        }
    }
}

fn print<R: Serialize>(
    report: &R,
    json: bool,
    lines: fn(&R) -> Vec<(&'static str, String)>,
) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string(report).context("serialising the report")?);
    } else {
        for (name, value) in lines(report) {
            println!("{name:<34} {value}");
        }
    }
    Ok(ExitCode::from(exit::OK))
}

fn ratio(value: f64) -> String {
    format!("{value:.2}×")
}

fn queue_lines(r: &throughput::QueueReport) -> Vec<(&'static str, String)> {
    let b = &r.baseline;
    let mut lines = vec![
        ("jobs / concurrency", format!("{} / {}", r.jobs, r.concurrency)),
        (
            "enqueue, batched",
            format!(
                "{:.0} jobs/s ({} raw LPUSH pipelined)",
                r.enqueue_jobs_per_sec,
                ratio(r.ratios.enqueue_vs_lpush_pipelined)
            ),
        ),
        (
            "enqueue, one by one",
            format!(
                "{:.0} jobs/s ({} raw PING)",
                r.enqueue_one_jobs_per_sec,
                ratio(r.ratios.enqueue_one_vs_ping)
            ),
        ),
        (
            "process, no-op handler",
            format!(
                "{:.0} jobs/s ({} raw PING, {} raw LPUSH+RPOP)",
                r.process_jobs_per_sec,
                ratio(r.ratios.process_vs_ping),
                ratio(r.ratios.process_vs_lpush_rpop)
            ),
        ),
        (
            "enqueue→start p50 / p99",
            format!("{:.3} / {:.3} ms ({} runs)", r.p50_ms, r.p99_ms, r.latency_jobs),
        ),
    ];
    if let Some(intake) = r.intake_jobs_per_sec {
        lines.push(("intake (LPUSH JSON → processed)", format!("{intake:.0} jobs/s")));
    }
    lines.extend([
        (
            "redis commands per job",
            format!("{} (idle: {}/s)", r.redis_commands_per_job, r.idle_redis_commands_per_sec),
        ),
        ("CPU processing, worker / redis", format!("{} / {} ms", r.worker_cpu_ms, r.redis_cpu_ms)),
        ("peak RSS", format!("{} MB", r.peak_rss_mb)),
        (
            "baseline",
            format!(
                "PING {:.0}/s, LPUSH pipelined {:.0}/s, LPUSH+RPOP {:.0}/s",
                b.ping_per_sec, b.lpush_pipelined_per_sec, b.lpush_rpop_per_sec
            ),
        ),
    ]);
    lines
}

fn runs_lines(r: &runs::RunsReport) -> Vec<(&'static str, String)> {
    vec![
        ("users / concurrency", format!("{} / {}", r.users, r.concurrency)),
        ("simulator", r.simulator.clone()),
        (
            "events per session / delay",
            format!("{} / {} ms", r.events_per_session, r.event_delay_ms),
        ),
        ("succeeded / failed", format!("{} / {}", r.succeeded, r.failed)),
        ("runs/s", format!("{} ({} s wall)", r.runs_per_sec, r.wall_s)),
        ("run wall time p50", format!("{} ms", r.run_p50_ms)),
        (
            "pre-stream phases p50 / p99",
            format!("{} / {} ms", r.pre_stream_p50_ms, r.pre_stream_p99_ms),
        ),
        (
            "pipeline overhead p50 / p99",
            format!("{} / {} ms", r.overhead_p50_ms, r.overhead_p99_ms),
        ),
        ("peak concurrent sessions", r.peak_concurrent_sessions.to_string()),
        ("peak RSS", format!("{} MB", r.peak_rss_mb)),
        (
            "RSS per in-flight session",
            format!(
                "{} KB ({} → {} MB)",
                r.rss_per_session_kb, r.baseline_rss_mb, r.rss_at_peak_mb
            ),
        ),
        (
            "redis commands per run",
            format!("{} (idle: {}/s)", r.redis_commands_per_run, r.idle_redis_commands_per_sec),
        ),
        ("  by command", top_commands(&r.redis_commands_by_name)),
        ("baseline PING", format!("{:.0}/s", r.baseline.ping_per_sec)),
    ]
}

fn top_commands(by_name: &[(String, f64)]) -> String {
    let top: Vec<String> =
        by_name.iter().take(10).map(|(name, per_run)| format!("{name} {per_run}")).collect();
    top.join(", ")
}

fn fanout_lines(r: &fanout::FanoutReport) -> Vec<(&'static str, String)> {
    vec![
        ("users", r.users.to_string()),
        (
            "tick → all runs and jobs exist",
            format!("{} ms ({:.0} users/s)", r.fanout_ms, r.users_per_sec),
        ),
        ("enqueued / records / jobs", format!("{} / {} / {}", r.enqueued, r.run_records, r.jobs)),
        (
            "redis commands per user",
            format!("{} (idle: {}/s)", r.redis_commands_per_user, r.idle_redis_commands_per_sec),
        ),
        ("redis CPU", format!("{} ms ({} busy)", r.redis_cpu_ms, ratio(r.redis_busy))),
        ("peak RSS", format!("{} MB", r.peak_rss_mb)),
        (
            "baseline LPUSH pipelined",
            format!(
                "{:.0}/s ({} of it)",
                r.baseline.lpush_pipelined_per_sec,
                ratio(r.ratio_vs_lpush_pipelined)
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_redis_is_local() {
        assert!(crate::bench::DEFAULT_REDIS_URL.starts_with("redis://127.0.0.1"));
    }
}
