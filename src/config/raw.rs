//! The configuration exactly as written in `jobs.toml` and the environment, before validation.
//!
//! Every field is optional or defaulted here and every value keeps its textual form (durations,
//! URLs, cron expressions are strings), so that validation in `validate.rs` can report *all*
//! problems at once with the key that holds each one. Unknown keys are rejected.
//! This module must not interpret values: that belongs to `validate.rs`.

use serde::Deserialize;

/// The whole file. Sections may be omitted; each has compiled defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) redis: RawRedis,
    #[serde(default)]
    pub(crate) worker: RawWorker,
    #[serde(default)]
    pub(crate) scalekit: RawScalekit,
    #[serde(default)]
    pub(crate) anthropic: RawAnthropic,
    #[serde(default)]
    pub(crate) http: RawHttp,
    #[serde(default)]
    pub(crate) retry: RawRetry,
    #[serde(default)]
    pub(crate) limits: RawLimits,
    #[serde(default)]
    pub(crate) transcripts: RawTranscripts,
    #[serde(default)]
    pub(crate) notices: RawNotices,
    #[serde(default)]
    pub(crate) ops: RawOps,
    #[serde(default)]
    pub(crate) setup: RawSetup,
    #[serde(default)]
    pub(crate) retention: RawRetention,
    #[serde(default)]
    pub(crate) schedule: Vec<RawSchedule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedis {
    pub(crate) url: Option<String>,
    pub(crate) prefix: Option<String>,
    pub(crate) allow_eviction: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorker {
    pub(crate) concurrency: Option<i64>,
    pub(crate) run_timeout: Option<String>,
    pub(crate) max_attempts: Option<i64>,
    pub(crate) shutdown_grace: Option<String>,
    pub(crate) heartbeat: Option<String>,
    pub(crate) lease: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScalekit {
    pub(crate) env_url: Option<String>,
    pub(crate) mcp_config_name: Option<String>,
    pub(crate) token_expiry: Option<String>,
    pub(crate) token_refresh_margin: Option<String>,
    pub(crate) connections: Option<Vec<RawConnection>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConnection {
    pub(crate) name: String,
    pub(crate) tools: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAnthropic {
    pub(crate) base_url: Option<String>,
    pub(crate) environment_id: Option<String>,
    pub(crate) environment_name: Option<String>,
    pub(crate) requires_action: Option<String>,
    pub(crate) archive_sessions: Option<bool>,
    #[serde(default)]
    pub(crate) agent: RawAgent,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAgent {
    pub(crate) name: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) system: Option<String>,
    pub(crate) mcp_server_name: Option<String>,
    pub(crate) toolsets: Option<Vec<String>>,
    pub(crate) permission_policy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    pub(crate) connect_timeout: Option<String>,
    pub(crate) request_timeout: Option<String>,
    pub(crate) stream_idle_timeout: Option<String>,
    pub(crate) max_event_bytes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    pub(crate) initial: Option<String>,
    pub(crate) max_interval: Option<String>,
    pub(crate) max_elapsed: Option<String>,
    pub(crate) multiplier: Option<f64>,
    pub(crate) jitter: Option<bool>,
    pub(crate) max_attempts: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub(crate) creates_per_minute: Option<f64>,
    pub(crate) requests_per_minute: Option<f64>,
    pub(crate) environments_per_minute: Option<f64>,
    pub(crate) sessions_per_second: Option<f64>,
    pub(crate) tokens_per_second: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTranscripts {
    pub(crate) dir: Option<String>,
    pub(crate) redis_maxlen: Option<i64>,
    pub(crate) ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotices {
    pub(crate) webhook_url: Option<String>,
    pub(crate) webhook_secret: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetention {
    pub(crate) runs: Option<String>,
    pub(crate) transcripts: Option<String>,
    pub(crate) transcripts_max_mb: Option<i64>,
    pub(crate) every: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSetup {
    pub(crate) auto: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOps {
    pub(crate) bind: Option<String>,
    pub(crate) token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSchedule {
    pub(crate) name: String,
    pub(crate) cron: String,
    pub(crate) timezone: Option<String>,
    #[serde(default)]
    pub(crate) users: Vec<String>,
    pub(crate) prompt: Option<String>,
    pub(crate) overlap: Option<String>,
    pub(crate) spread: Option<String>,
    pub(crate) catch_up: Option<String>,
    pub(crate) enabled: Option<bool>,
}
