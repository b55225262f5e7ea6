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
