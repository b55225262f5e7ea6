//! The configuration sections that are plain settings (rates, retention of transcripts,
//! notices, the run webhook, the ops server, setup) and the schedules, typed and in range: split
//! from `config.rs` only to keep each file readable. This module must not validate: `validate.rs` builds these.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Serialize;
use url::Url;

use super::ser;
use crate::cron::CronExpr;
use crate::ids::UserId;

/// `[limits]`: fleet-wide rates shared by all workers through Redis; `None` (0) is no limit.
#[derive(Debug, Clone, Serialize)]
pub struct LimitsConfig {
    /// Anthropic creates (sessions, vaults, credentials) per minute. Defaults to 300.
    pub creates_per_minute: Option<f64>,
    /// Every other Anthropic agent, session and vault call per minute. Defaults to 600.
    pub requests_per_minute: Option<f64>,
    /// Anthropic environment calls per minute. Defaults to 60.
    pub environments_per_minute: Option<f64>,
    /// Sessions created per second, a cap of the operator's own below the creates limit.
    pub sessions_per_second: Option<f64>,
    /// Scalekit session tokens minted per second (Scalekit documents no limit).
    pub tokens_per_second: Option<f64>,
}

/// `[transcripts]`: where session events are kept.
#[derive(Debug, Clone, Serialize)]
pub struct TranscriptsConfig {
    /// JSONL directory. Defaults to `./transcripts`.
    pub dir: PathBuf,
    /// Events kept per transcript stream in Redis. Defaults to 10,000.
    pub redis_maxlen: usize,
    /// Lifetime of a transcript in Redis. Defaults to 7 days.
    #[serde(serialize_with = "ser::duration")]
    pub ttl: Duration,
    /// Bytes one attempt records in a run's transcript, in MiB; later events are recorded by
    /// their type and size only. Defaults to 64.
    pub max_run_mb: usize,
    /// KiB of the agent's final message kept on the run record as its result (cut at a
    /// character boundary; the whole text stays in the transcript). Defaults to 16.
    pub result_max_kb: usize,
}

/// `[notices]`: follow-ups for users whose connections lapsed.
#[derive(Debug, Clone, Serialize)]
pub struct NoticesConfig {
    /// Optional webhook that receives each notice.
    #[serde(serialize_with = "ser::opt_url")]
    pub webhook_url: Option<Url>,
    /// Optional HMAC-SHA256 key for the webhook's signature header.
    #[serde(serialize_with = "ser::opt_secret")]
    pub webhook_secret: Option<SecretString>,
}

/// `[webhook]`: the run webhook: a signed POST of a run's public summary when it reaches one of
/// `events` (Standard Webhooks headers and signature, `records::webhook`).
#[derive(Debug, Clone, Serialize)]
pub struct WebhookConfig {
    /// Where to POST; `None` (the default) sends nothing.
    #[serde(serialize_with = "ser::opt_url")]
    pub url: Option<Url>,
    /// The signing secret (`AGENTCRON__WEBHOOK__SECRET`): `whsec_<base64>` is decoded, any
    /// other value used as its bytes. Without one, messages are not signed. Redacted everywhere.
    #[serde(serialize_with = "ser::opt_secret")]
    pub secret: Option<SecretString>,
    /// The states whose transitions are sent: any of `succeeded`, `failed`, `needs_auth`,
    /// `dead`, `cancelled`. Defaults to the terminal ones (all but `failed`).
    pub events: Vec<String>,
    /// Attempts per message, the first included, with `[retry]`'s backoff. Defaults to 8.
    pub max_attempts: u32,
}

/// `[ops]`: the HTTP endpoint for health, metrics and the dashboard.
#[derive(Debug, Clone, Serialize)]
pub struct OpsConfig {
    /// Listen address, `None` for `"off"` (no ops server: no `/metrics`, `/readyz` or
    /// dashboard). Defaults to `127.0.0.1:9187`.
    #[serde(serialize_with = "ser::opt_bind")]
    pub bind: Option<SocketAddr>,
    /// Bearer token; required when `bind` is not a loopback address.
    #[serde(serialize_with = "ser::opt_secret")]
    pub token: Option<SecretString>,
    /// The scheduler's listen address (`/metrics`, `/healthz`, `/readyz`), `None` for
    /// `"off"`. Defaults to `127.0.0.1:9188`.
    #[serde(serialize_with = "ser::opt_bind")]
    pub scheduler_bind: Option<SocketAddr>,
    /// `Host` names the ops servers answer besides loopback ones (`localhost`, `127.0.0.1`,
    /// `[::1]`) and the bound address: the names operators reach them by. Any other `Host`
    /// is refused (DNS rebinding).
    pub hosts: Vec<String>,
    /// Whether `/metrics` is open when a token is set (scrapers often cannot send one).
    /// Defaults to false.
    pub open_metrics: bool,
    /// Connections each ops server holds at once; more wait in the kernel's backlog.
    /// Defaults to 256.
    pub max_connections: usize,
}

/// `[setup]`: what a worker does when a run finds a setup object missing at the vendor.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SetupConfig {
    /// Recreate it itself (one worker of the fleet at a time); else runs wait, queued, until an
    /// operator runs `agentcron setup`.
    pub auto: bool,
}

/// `[retention]`: how long finished work is kept. The worker's retention loop removes what is
/// older, in bounded batches, every `every`.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionConfig {
    /// Finished runs (succeeded, cancelled, needs_auth, dead: created and ended this long ago)
    /// and resolved notices. Defaults to 30 days.
    #[serde(serialize_with = "ser::duration")]
    pub runs: Duration,
    /// Transcript files, by day. Defaults to 30 days.
    #[serde(serialize_with = "ser::duration")]
    pub transcripts: Duration,
    /// Transcript files in all (the oldest days go first; today's never). Defaults to 10 GiB.
    pub transcripts_max_mb: u64,
    /// How often the retention loop runs. Defaults to 1 minute.
    #[serde(serialize_with = "ser::duration")]
    pub every: Duration,
    /// The per-day usage aggregates (`<p>:tokens:<day>`), after their last change. Defaults to
    /// 90 days.
    #[serde(serialize_with = "ser::duration")]
    pub usage: Duration,
}

/// One `[[schedule]]`.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleConfig {
    /// Unique name, `[A-Za-z0-9_-]`, used in run ids.
    pub name: String,
    /// When it fires, in `timezone` (or each user's zone).
    pub cron: CronExpr,
    /// IANA zone. Defaults to `UTC`. With `per_user_zone`, the zone of users whose profile
    /// sets none (`default_timezone` in the file).
    #[serde(serialize_with = "ser::display")]
    pub timezone: chrono_tz::Tz,
    /// `timezone = "user"`: the cron fires at its local time in each user's own zone.
    pub per_user_zone: bool,
    /// Local dates (in the zone a user's run uses) on which the schedule does not fire.
    pub skip_dates: Vec<chrono::NaiveDate>,
    /// Users listed inline; more come from the Redis set of the schedule.
    pub users: Vec<UserId>,
    /// Prompt with `{user}`, `{local_time}` and `{run_id}` placeholders.
    pub prompt: String,
    /// What a tick does while the user's previous run is active. Defaults to `skip`.
    pub overlap: Overlap,
    /// Window over which the users' starts are spread; none means all at the tick.
    #[serde(serialize_with = "ser::opt_duration")]
    pub spread: Option<Duration>,
    /// A tick missed by at most this much is enqueued once at start; none means no catch-up.
    #[serde(serialize_with = "ser::opt_duration")]
    pub catch_up: Option<Duration>,
    /// Disabled schedules are loaded but never fire. Defaults to true.
    pub enabled: bool,
    /// Tokens all runs of the schedule may use per UTC day; `None` is no budget.
    pub budget_daily_tokens: Option<u64>,
    /// Tokens all runs of the schedule may use per UTC month; `None` is no budget.
    pub budget_monthly_tokens: Option<u64>,
}

/// `[budget]`: the tokens (of every kind: input, output, cache writes and reads) one user's runs
/// may use per UTC day and per UTC month, unless the user's profile sets its own
/// (`budget_daily_tokens`, `budget_monthly_tokens`); `None` (0 or unset) is no budget.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BudgetConfig {
    /// Per user and UTC day.
    pub daily_tokens: Option<u64>,
    /// Per user and UTC month.
    pub monthly_tokens: Option<u64>,
}

/// One `[[price]]`: USD per million tokens of the models whose id starts with `model`, used for
/// the cost estimate before the compiled-in table (the longest matching prefix wins).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelPrice {
    /// A model id or a prefix of one, such as `claude-sonnet-4`.
    pub model: String,
    /// Input tokens.
    pub input: f64,
    /// Output tokens.
    pub output: f64,
    /// Tokens written to the prompt cache. Defaults to 1.25 times `input`.
    pub cache_write: f64,
    /// Tokens read from the prompt cache. Defaults to a tenth of `input`.
    pub cache_read: f64,
}

/// What a tick does for a user whose previous run of the schedule is still active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Record the tick as skipped for that user.
    Skip,
    /// Enqueue anyway; the per-user lease keeps the runs apart.
    Queue,
}
