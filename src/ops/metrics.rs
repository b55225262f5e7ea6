//! Every metric agentcron emits, by name, in one place. Code elsewhere calls these functions;
//! it never invokes the raw `metrics` macros, so names and labels cannot drift.
//!
//! Names follow `agentcron_<noun>_<unit>`. Without an installed recorder (tests, CLI
//! commands) the calls cost nothing. This module must not decide when to record.

/// `agentcron_api_requests_total{api,endpoint,status}`: every HTTP attempt to a remote API;
/// `status` is the HTTP code, or `transport` when no response arrived.
pub fn api_request(api: &'static str, endpoint: &'static str, status: &str) {
    metrics::counter!("agentcron_api_requests_total", "api" => api, "endpoint" => endpoint, "status" => status.to_owned())
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

/// `agentcron_intake_rejected_total{reason}`: intake payloads filed under `<p>:rejected`.
pub fn intake_rejected(reason: &'static str) {
    metrics::counter!("agentcron_intake_rejected_total", "reason" => reason).increment(1);
}

/// `agentcron_jobs_total{outcome}`: attempts ended, by what the worker recorded
/// (`succeeded`, `needs_auth`, `cancelled`, `retry`, `dead`, `defer`, `release`, `lost`).
pub fn job_finished(outcome: &'static str) {
    metrics::counter!("agentcron_jobs_total", "outcome" => outcome).increment(1);
}

/// `agentcron_jobs_in_flight`: runs this worker process holds now.
pub fn jobs_in_flight(n_jobs: usize) {
    #[allow(clippy::cast_precision_loss)] // A gauge; in-flight counts are far below 2^52.
    metrics::gauge!("agentcron_jobs_in_flight").set(n_jobs as f64);
}

/// `agentcron_orphans_recovered_total`: runs taken back from workers whose lease expired.
pub fn orphans_recovered(n_runs: usize) {
    metrics::counter!("agentcron_orphans_recovered_total")
        .increment(u64::try_from(n_runs).unwrap_or(u64::MAX));
}

/// `agentcron_redis_errors_total{op}`: failed Redis calls of the queue and worker loops.
pub fn redis_error(op: &'static str) {
    metrics::counter!("agentcron_redis_errors_total", "op" => op).increment(1);
}

/// `agentcron_ratelimit_wait_seconds{name}`: time a caller waited for a fleet-wide token.
pub fn ratelimit_waited(name: &str, waited: std::time::Duration) {
    metrics::histogram!("agentcron_ratelimit_wait_seconds", "name" => name.to_owned())
        .record(waited.as_secs_f64());
}

/// `agentcron_schedule_runs_total{schedule,outcome}`: users of a tick, by what this process did
/// for them (`enqueued`, `duplicate` — another replica or an earlier fan-out created the run,
/// `skipped` — the previous run was still active, `invalid` — a malformed user id).
pub fn schedule_runs(schedule: &str, outcome: &'static str, n_users: usize) {
    metrics::counter!("agentcron_schedule_runs_total", "schedule" => schedule.to_owned(), "outcome" => outcome)
        .increment(u64::try_from(n_users).unwrap_or(u64::MAX));
}

/// `agentcron_schedule_ticks_total{schedule,outcome}`: ticks handled, by outcome (`fanned_out`,
/// `retry` — a fan-out failed and will be tried again, `missed` — given up on).
pub fn schedule_tick(schedule: &str, outcome: &'static str) {
    metrics::counter!("agentcron_schedule_ticks_total", "schedule" => schedule.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// `agentcron_schedule_fan_out_seconds{schedule}`: time to fan one tick out to its users.
pub fn schedule_fan_out(schedule: &str, elapsed: std::time::Duration) {
    metrics::histogram!("agentcron_schedule_fan_out_seconds", "schedule" => schedule.to_owned())
        .record(elapsed.as_secs_f64());
}

/// `agentcron_schedule_reloads_total{outcome}`: configuration reloads (`applied`, `rejected`).
pub fn schedule_reload(outcome: &'static str) {
    metrics::counter!("agentcron_schedule_reloads_total", "outcome" => outcome).increment(1);
}
