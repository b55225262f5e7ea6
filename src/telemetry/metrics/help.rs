//! The `# HELP` text of every metric family agentcron exports, in one table, so that a family
//! without one is easy to see (`tests/it/tidy.rs` checks that every metric the code records is
//! here). This module must not record values.

/// What a family is, for the recorder's `describe_*`.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

use Kind::{Counter, Gauge, Histogram};

/// Every family, its kind and its help text.
const HELP: [(&str, Kind, &str); 33] = [
    ("agentcron_runs_total", Counter, "Run attempts ended, by schedule and outcome."),
    ("agentcron_run_duration_seconds", Histogram, "Duration of one run attempt."),
    ("agentcron_phase_duration_seconds", Histogram, "Duration of a run phase."),
    (
        "agentcron_run_overhead_seconds",
        Histogram,
        "Time of one run attempt not spent waiting on the remote APIs.",
    ),
    (
        "agentcron_api_requests_total",
        Counter,
        "HTTP attempts to a remote API, by api, endpoint and status.",
    ),
    ("agentcron_api_retries_total", Counter, "Retries of remote calls, by api and error class."),
    (
        "agentcron_webhook_deliveries_total",
        Counter,
        "Webhook messages by kind (run, notice) and how their delivery ended.",
    ),
    ("agentcron_queue_depth", Gauge, "Queue entries and runs by state, read at scrape."),
    ("agentcron_runs_in_flight", Gauge, "Runs this worker process holds."),
    ("agentcron_notices_open", Gauge, "Open notices, read at scrape."),
    ("agentcron_intake_rejected_total", Counter, "Intake payloads rejected, by reason."),
    ("agentcron_tokens_total", Counter, "Tokens runs used, by kind and schedule."),
    (
        "agentcron_runs_skipped_total",
        Counter,
        "Runs not started, by reason (budget) and the limit that stopped them.",
    ),
    (
        "agentcron_budget_overruns_total",
        Counter,
        "Runs that went over a token budget during their turn, by the limit crossed.",
    ),
    (
        "agentcron_cost_usd_total",
        Gauge,
        "Estimated cost of the tokens runs used, in USD, by schedule (only rises).",
    ),
    (
        "agentcron_jobs_total",
        Counter,
        "What the queue recorded at the end of each attempt, by outcome.",
    ),
    ("agentcron_runs_enqueued_total", Counter, "Runs created, by source (cli, intake, schedule)."),
    (
        "agentcron_orphans_recovered_total",
        Counter,
        "Runs taken over from workers whose lease expired.",
    ),
    (
        "agentcron_runs_reconciled_total",
        Counter,
        "Runs a worker found fetched but not executing, handed back.",
    ),
    ("agentcron_redis_errors_total", Counter, "Redis failures a worker retried, by operation."),
    ("agentcron_redis_bytes", Gauge, "Bytes agentcron's Redis keys take, as last measured."),
    ("agentcron_redis_keys", Gauge, "agentcron's Redis keys, as last measured."),
    ("agentcron_transcript_bytes", Gauge, "Bytes of the transcript files, after the last prune."),
    (
        "agentcron_transcript_file_errors_total",
        Counter,
        "Transcript file writes that failed (the file is rebuilt from Redis).",
    ),
    ("agentcron_runs_expired_total", Counter, "Finished runs removed by the retention."),
    (
        "agentcron_ratelimit_wait_seconds",
        Histogram,
        "Time spent waiting for a fleet-wide rate limit, by limit.",
    ),
    (
        "agentcron_setup_missing_total",
        Counter,
        "Runs deferred because a setup object was gone at the vendor, by object.",
    ),
    (
        "agentcron_setup_recreated_total",
        Counter,
        "Times a worker recreated missing setup objects (setup.auto).",
    ),
    ("agentcron_stream_frames_skipped_total", Counter, "Event-stream frames skipped, by reason."),
    (
        "agentcron_schedule_runs_total",
        Counter,
        "Users a schedule's ticks handled, by schedule and outcome.",
    ),
    ("agentcron_schedule_ticks_total", Counter, "Schedule ticks, by schedule and outcome."),
    (
        "agentcron_schedule_fan_out_seconds",
        Histogram,
        "Time one tick took to enqueue its users' runs, by schedule.",
    ),
    (
        "agentcron_schedule_reloads_total",
        Counter,
        "Reloads of the scheduler's configuration, by outcome.",
    ),
];

/// Registers every family's help text with the installed recorder.
pub(super) fn describe() {
    for (name, kind, help) in HELP {
        match kind {
            Counter => metrics::describe_counter!(name, help),
            Gauge => metrics::describe_gauge!(name, help),
            Histogram => metrics::describe_histogram!(name, help),
        }
    }
}
