//! Every metric agentcron emits, by name, in one place. Code elsewhere calls these functions;
//! it never invokes the raw `metrics` macros, so names and labels cannot drift.
//!
//! Every label set is bounded: a label value is a fixed enum (`&'static str`), an HTTP status
//! code, or a schedule name the configuration has ([`ScheduleLabel`]); free text from payloads
//! or operators never becomes one, so the number of series cannot grow with what users send.
//!
//! Names follow `agentcron_<noun>_<unit>`. Without an installed recorder (tests, CLI
//! commands) the calls cost nothing; [`install`] installs the Prometheus recorder that
//! `/metrics` renders (the ops room only serves it). A leaf: any room may record, and this
//! module imports no room; it must not decide when to record.

mod help;

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Default histogram buckets (seconds): most phases are one API call; streaming is a turn.
const SECONDS_BUCKETS: &[f64] =
    &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0];
/// Buckets for whole attempts (seconds): seconds up to the one-hour run timeout range.
const RUN_BUCKETS: &[f64] =
    &[0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0];
/// Buckets for a run's own overhead (seconds): milliseconds, since the remote work is excluded.
const OVERHEAD_BUCKETS: &[f64] =
    &[0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The recorder's handle. A global recorder can be installed once per process, and tests
/// start several servers, so the first call installs it and every later one shares it.
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns the handle `/metrics`
/// renders. Histograms get buckets, not quantiles.
///
/// When another recorder was installed first, the handle renders only the descriptions; a
/// warning says so.
///
/// # Panics
/// Never in practice: the bucket lists are non-empty constants.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("agentcron_run_duration_seconds".to_owned()),
                        RUN_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("agentcron_run_overhead_seconds".to_owned()),
                        OVERHEAD_BUCKETS,
                    )
                })
                .expect("the bucket lists are non-empty constants")
                .build_recorder();
            let handle = recorder.handle();
            if let Err(error) = metrics::set_global_recorder(recorder) {
                tracing::warn!(message = "Another metrics recorder is installed; /metrics will be empty.", %error);
            }
            help::describe();
            handle
        })
        .clone()
}

/// The `schedule` label of a metric: the name of a schedule in the configuration, or `adhoc`.
/// A run's schedule is free text when the run came from the intake or `agentcron enqueue`, so
/// it becomes a label only when the configuration has a schedule of that name; the series stay
/// as many as the configured schedules, plus one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleLabel<'a>(&'a str);

impl<'a> ScheduleLabel<'a> {
    /// The label of runs that name no configured schedule (or none at all).
    pub const ADHOC: ScheduleLabel<'static> = ScheduleLabel("adhoc");

    /// The label of a run that names `schedule`: the name when it is one of `configured`, else
    /// [`Self::ADHOC`].
    pub fn of<'c>(
        schedule: Option<&'a str>,
        configured: impl IntoIterator<Item = &'c str>,
    ) -> Self {
        let Some(name) = schedule else { return Self::ADHOC };
        if configured.into_iter().any(|known| known == name) { Self(name) } else { Self::ADHOC }
    }

    /// The label of a schedule of the loaded configuration itself (the scheduler's own,
    /// whose names the configuration validated).
    pub fn configured(name: &'a str) -> Self {
        Self(name)
    }

    /// The label value.
    pub fn as_str(self) -> &'a str {
        self.0
    }
}

/// `agentcron_runs_total{schedule,outcome}` and `agentcron_run_duration_seconds`: one run
/// attempt ended. `schedule` is a configured schedule's name or `adhoc`; `outcome` is
/// `succeeded`, `needs_auth`, `cancelled`, `skipped`, `retry` (transient failure) or `fatal`.
pub fn run_finished(schedule: ScheduleLabel<'_>, outcome: &'static str, elapsed: Duration) {
    let schedule = schedule.as_str().to_owned();
    metrics::counter!("agentcron_runs_total", "schedule" => schedule, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("agentcron_run_duration_seconds").record(elapsed.as_secs_f64());
}

/// `agentcron_tokens_total{kind,schedule}` (`kind`: `input`, `output`, `cache_write`,
/// `cache_read`) and `agentcron_cost_usd_total{schedule}`: tokens a run's model requests used,
/// added once per run however many attempts it took, and their estimated cost in USD. The
/// cost is exported as a gauge (the recorder's counters are integers) that only rises.
pub fn tokens_used(schedule: ScheduleLabel<'_>, tokens: [(&'static str, u64); 4], cost_usd: f64) {
    for (kind, n_tokens) in tokens.into_iter().filter(|(_, n_tokens)| *n_tokens > 0) {
        let schedule = schedule.as_str().to_owned();
        metrics::counter!("agentcron_tokens_total", "kind" => kind, "schedule" => schedule)
            .increment(n_tokens);
    }
    if cost_usd > 0.0 {
        let schedule = schedule.as_str().to_owned();
        metrics::gauge!("agentcron_cost_usd_total", "schedule" => schedule).increment(cost_usd);
    }
}

/// `agentcron_runs_skipped_total{reason,limit}`: a run was not started (`reason` `budget`;
/// `limit` `user_daily`, `user_monthly`, `schedule_daily` or `schedule_monthly`).
pub fn run_skipped(reason: &'static str, limit: &'static str) {
    metrics::counter!("agentcron_runs_skipped_total", "reason" => reason, "limit" => limit)
        .increment(1);
}

/// `agentcron_budget_overruns_total{limit}`: a run's turn took its user or schedule over
/// `limit` (it finished: no half-done triage).
pub fn budget_overrun(limit: &'static str) {
    metrics::counter!("agentcron_budget_overruns_total", "limit" => limit).increment(1);
}

/// `agentcron_run_overhead_seconds`: one attempt's wall time minus the time it waited on the
/// remote APIs (requests, retry pauses, the event stream): what agentcron itself costs a run,
/// Redis, transcripts and waiting for a CPU included.
pub fn run_overhead(overhead: Duration) {
    metrics::histogram!("agentcron_run_overhead_seconds").record(overhead.as_secs_f64());
}

/// `agentcron_phase_duration_seconds{phase}`: time from entering a phase to the next phase or
/// the end of the attempt.
pub fn phase_finished(phase: &'static str, elapsed: Duration) {
    metrics::histogram!("agentcron_phase_duration_seconds", "phase" => phase)
        .record(elapsed.as_secs_f64());
}

/// `agentcron_queue_depth{state}`: entries in one part of the queue (`pending`, `scheduled`,
/// `running`, `dead`, `rejected`, `intake`), refreshed from Redis at each scrape.
pub fn queue_depth(state: &'static str, n_entries: u64) {
    #[allow(clippy::cast_precision_loss)] // A gauge; queue depths are far below 2^52.
    metrics::gauge!("agentcron_queue_depth", "state" => state).set(n_entries as f64);
}

/// `agentcron_notices_open`: open notices, refreshed from Redis at each scrape.
pub fn notices_open(n_notices: u64) {
    #[allow(clippy::cast_precision_loss)] // A gauge; notice counts are far below 2^52.
    metrics::gauge!("agentcron_notices_open").set(n_notices as f64);
}

/// `agentcron_api_requests_total{api,endpoint,status}`: every HTTP attempt to a remote API;
/// `endpoint` is a fixed name per call, `status` the HTTP code (three digits, so bounded), or
/// `transport` when no response arrived.
pub fn api_request(api: &'static str, endpoint: &'static str, status: &str) {
    metrics::counter!("agentcron_api_requests_total", "api" => api, "endpoint" => endpoint, "status" => status.to_owned())
        .increment(1);
}

/// `agentcron_webhook_deliveries_total{kind,outcome}`: webhook messages, by `kind` (`run`,
/// `notice`) and how their delivery ended (`delivered`, or `failed` after every attempt).
pub fn webhook_delivered(kind: &'static str, outcome: &'static str) {
    metrics::counter!("agentcron_webhook_deliveries_total", "kind" => kind, "outcome" => outcome)
        .increment(1);
}

/// `agentcron_api_retries_total{api,class}`: every retry of a remote call, by error class.
pub fn api_retry(api: &'static str, class: &'static str) {
    metrics::counter!("agentcron_api_retries_total", "api" => api, "class" => class).increment(1);
}

/// `agentcron_runs_enqueued_total{source}`: runs created (duplicates not counted), by where
/// they came from (`cli`, `intake`, `schedule`, …).
pub fn runs_enqueued(source: &'static str, n_runs: usize) {
    metrics::counter!("agentcron_runs_enqueued_total", "source" => source)
        .increment(u64::try_from(n_runs).unwrap_or(u64::MAX));
}

/// `agentcron_intake_rejected_total{reason}`: intake payloads filed under `<p>:rejected`, by
/// the parser's fixed reason (`queue::Rejection::reason`).
pub fn intake_rejected(reason: &'static str) {
    metrics::counter!("agentcron_intake_rejected_total", "reason" => reason).increment(1);
}

/// `agentcron_jobs_total{outcome}`: attempts ended, by what the worker recorded
/// (`succeeded`, `needs_auth`, `cancelled`, `skipped`, `retry`, `dead`, `defer`, `release`,
/// `lost`).
pub fn job_finished(outcome: &'static str) {
    metrics::counter!("agentcron_jobs_total", "outcome" => outcome).increment(1);
}

/// `agentcron_runs_in_flight`: runs this worker process holds now. (The function keeps its
/// worker-side name; the metric is named for what it counts.)
pub fn jobs_in_flight(n_jobs: usize) {
    #[allow(clippy::cast_precision_loss)] // A gauge; in-flight counts are far below 2^52.
    metrics::gauge!("agentcron_runs_in_flight").set(n_jobs as f64);
}

/// `agentcron_orphans_recovered_total`: runs taken back from workers whose lease expired.
pub fn orphans_recovered(n_runs: usize) {
    metrics::counter!("agentcron_orphans_recovered_total")
        .increment(u64::try_from(n_runs).unwrap_or(u64::MAX));
}

/// `agentcron_runs_reconciled_total`: runs a worker found in its processing list but was not
/// executing (a fetch whose reply was lost), handed back to the queue.
pub fn runs_reconciled(n_runs: usize) {
    metrics::counter!("agentcron_runs_reconciled_total")
        .increment(u64::try_from(n_runs).unwrap_or(u64::MAX));
}

/// `agentcron_redis_bytes` and `agentcron_redis_keys`: what the keys under the prefix take, as
/// of the last full pass of the worker's measuring scan.
pub fn redis_usage(bytes: u64, n_keys: u64) {
    metrics::gauge!("agentcron_redis_bytes").set(bytes as f64);
    metrics::gauge!("agentcron_redis_keys").set(n_keys as f64);
}

/// `agentcron_transcript_bytes`: the transcript files, after the last prune.
pub fn transcript_usage(bytes: u64) {
    metrics::gauge!("agentcron_transcript_bytes").set(bytes as f64);
}

/// `agentcron_transcript_file_errors_total`: transcript file writes that failed (the file is
/// rebuilt from Redis; the run goes on).
pub fn transcript_file_failed() {
    metrics::counter!("agentcron_transcript_file_errors_total").increment(1);
}

/// `agentcron_runs_expired_total`: finished runs removed by the retention.
pub fn runs_expired(n_runs: usize) {
    metrics::counter!("agentcron_runs_expired_total")
        .increment(u64::try_from(n_runs).unwrap_or(u64::MAX));
}

/// `agentcron_setup_missing_total{object}`: runs that found a setup object (`mcp config`,
/// `agent`, `environment`) missing at the vendor and were deferred.
pub fn setup_missing(object: &'static str) {
    metrics::counter!("agentcron_setup_missing_total", "object" => object).increment(1);
}

/// `agentcron_setup_recreated_total`: times a worker recreated missing setup objects itself.
pub fn setup_recreated() {
    metrics::counter!("agentcron_setup_recreated_total").increment(1);
}

/// `agentcron_stream_frames_skipped_total{reason}`: event-stream frames skipped (`not_json`).
pub fn stream_frame_skipped(reason: &'static str) {
    metrics::counter!("agentcron_stream_frames_skipped_total", "reason" => reason).increment(1);
}

/// `agentcron_redis_errors_total{op}`: failed Redis calls of the queue and worker loops.
pub fn redis_error(op: &'static str) {
    metrics::counter!("agentcron_redis_errors_total", "op" => op).increment(1);
}

/// `agentcron_ratelimit_wait_seconds{name}`: time a caller waited for a fleet-wide token, by
/// bucket (`creates`, `requests`, `environments`, `sessions`, `tokens`).
pub fn ratelimit_waited(name: &'static str, waited: std::time::Duration) {
    metrics::histogram!("agentcron_ratelimit_wait_seconds", "name" => name)
        .record(waited.as_secs_f64());
}

/// `agentcron_schedule_runs_total{schedule,outcome}`: users of a tick, by what this process did
/// for them (`enqueued`, `duplicate` — another replica or an earlier fan-out created the run,
/// `skipped` — the previous run was still active, `invalid` — a malformed user id).
pub fn schedule_runs(schedule: ScheduleLabel<'_>, outcome: &'static str, n_users: usize) {
    let schedule = schedule.as_str().to_owned();
    metrics::counter!("agentcron_schedule_runs_total", "schedule" => schedule, "outcome" => outcome)
        .increment(u64::try_from(n_users).unwrap_or(u64::MAX));
}

/// `agentcron_schedule_ticks_total{schedule,outcome}`: ticks handled, by outcome (`fanned_out`,
/// `retry` — a fan-out failed and will be tried again, `missed` — given up on).
pub fn schedule_tick(schedule: ScheduleLabel<'_>, outcome: &'static str) {
    let schedule = schedule.as_str().to_owned();
    metrics::counter!("agentcron_schedule_ticks_total", "schedule" => schedule, "outcome" => outcome)
        .increment(1);
}

/// `agentcron_schedule_fan_out_seconds{schedule}`: time to fan one tick out to its users.
pub fn schedule_fan_out(schedule: ScheduleLabel<'_>, elapsed: std::time::Duration) {
    let schedule = schedule.as_str().to_owned();
    metrics::histogram!("agentcron_schedule_fan_out_seconds", "schedule" => schedule)
        .record(elapsed.as_secs_f64());
}

/// `agentcron_schedule_reloads_total{outcome}`: configuration reloads (`applied`, `rejected`).
pub fn schedule_reload(outcome: &'static str) {
    metrics::counter!("agentcron_schedule_reloads_total", "outcome" => outcome).increment(1);
}
