//! Configuration: compiled defaults, then `jobs.toml`, then environment overrides, then secrets.
//!
//! Layers, lowest first: defaults written in `config/validate.rs`; the file (`--config`,
//! `$AGENTCRON_CONFIG` or `./jobs.toml`); the conventional variables `REDIS_URL`,
//! `ANTHROPIC_BASE_URL`, `SCALEKIT_ENV_URL`, `ANTHROPIC_ENVIRONMENT_ID`; and
//! `AGENTCRON__SECTION__KEY`, which overrides anything. Secrets come only from the environment
//! (or `.env`) under the guide's names. Everything is validated once, here, and every problem is
//! reported at once with the file, the key and the line, or the variable (the document parsed
//! once per load, `layers.rs`, keeps every key's position, `locate.rs`; `read.rs` reads each key
//! from it and the environment, `unknown.rs` names the keys that are not keys). `AGENTCRON_`
//! variables that set nothing are [`Warning`]s (`overrides.rs`). This module owns the typed
//! [`Config`] and the entry points; its submodules the raw shape (`raw.rs`), validation
//! (`validate.rs`), the entry points' reading of the file (`load.rs`), errors and redacting
//! serialisers. It must not connect to anything: the rest of the crate receives a [`Config`]
//! whose values are already typed and known to be in range.

mod env;
mod error;
mod layers;
mod load;
mod locate;
mod overrides;
mod raw;
mod read;
mod redis_client;
mod redis_cluster;
mod redis_conn;
mod redis_sentinel;
mod sections;
mod ser;
mod unknown;
mod validate;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Serialize;
use url::Url;

pub use self::env::{
    AGENTCRON_CONFIG, ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, ANTHROPIC_ENVIRONMENT_ID, Env,
    OVERRIDE_PREFIX, REDIS_URL, SCALEKIT_CLIENT_ID, SCALEKIT_CLIENT_SECRET, SCALEKIT_ENV_URL,
    host_name,
};
pub use self::error::{ConfigError, Origin, Problem, Result, Warning};
pub use self::load::{Checked, Needs, check, load, load_for, resolve_path};
pub use self::locate::KeyPath;
pub use self::redis_client::RedisClientError;
pub use self::redis_cluster::{ClusterMaster, cluster_masters};
pub use self::redis_conn::RedisConn;
pub use self::sections::{
    BudgetConfig, LimitsConfig, ModelPrice, NoticesConfig, OpsConfig, Overlap, RetentionConfig,
    ScheduleConfig, SetupConfig, TranscriptsConfig, WebhookConfig,
};

/// The default configuration file, relative to the working directory.
pub const DEFAULT_PATH: &str = "jobs.toml";

/// The validated configuration. Serialises with secrets redacted (for `config check`).
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The file this was loaded from.
    #[serde(skip)]
    pub source: PathBuf,
    /// `[redis]`.
    pub redis: RedisConfig,
    /// `[worker]`.
    pub worker: WorkerConfig,
    /// `[scalekit]`.
    pub scalekit: ScalekitConfig,
    /// `[anthropic]`.
    pub anthropic: AnthropicConfig,
    /// `[http]`.
    pub http: HttpConfig,
    /// `[retry]`.
    pub retry: RetryConfig,
    /// `[limits]`.
    pub limits: LimitsConfig,
    /// `[transcripts]`.
    pub transcripts: TranscriptsConfig,
    /// `[notices]`.
    pub notices: NoticesConfig,
    /// `[webhook]`.
    pub webhook: WebhookConfig,
    /// `[ops]`.
    pub ops: OpsConfig,
    /// `[setup]`.
    pub setup: SetupConfig,
    /// `[retention]`.
    pub retention: RetentionConfig,
    /// `[budget]`.
    pub budget: BudgetConfig,
    /// `[[price]]` entries: the cost estimate's prices, before the compiled-in table.
    #[serde(rename = "price")]
    pub prices: Vec<ModelPrice>,
    /// `[[schedule]]` entries, in file order.
    #[serde(rename = "schedule")]
    pub schedules: Vec<ScheduleConfig>,
    /// Credentials from the environment.
    pub secrets: Secrets,
}

/// `[redis]`: where the queue and all records live.
#[derive(Clone, Serialize)]
pub struct RedisConfig {
    /// Connection URL. Defaults to `redis://127.0.0.1:6379`. A password in it is redacted.
    #[serde(serialize_with = "ser::url")]
    pub url: Url,
    /// Prefix of every key. Defaults to `agentcron`.
    pub prefix: String,
    /// Run on a Redis whose `maxmemory-policy` can drop keys. Defaults to false: such a Redis
    /// loses runs without a trace, so a worker refuses it.
    pub allow_eviction: bool,
    /// ACL user (`REDIS_USERNAME`); replaces the URL's.
    pub username: Option<String>,
    /// ACL password (`REDIS_PASSWORD`); replaces the URL's. Redacted everywhere.
    #[serde(serialize_with = "ser::opt_secret")]
    pub password: Option<SecretString>,
    /// `[redis.tls]`: certificates for a `rediss://` URL.
    pub tls: RedisTls,
    /// `[redis.sentinel]`: find the master through Sentinel (the URL then gives the scheme and
    /// credentials; its host is only where a lazy connection starts).
    pub sentinel: Option<RedisSentinel>,
    /// Redis Cluster (`redis.cluster = true`, or a `redis+cluster://` URL): the URL names one
    /// seed node, and every key carries the prefix as its hash tag (`crate::keys`).
    pub cluster: bool,
    /// More seed nodes (`host:port`), tried after the URL's; giving any turns `cluster` on.
    pub cluster_nodes: Vec<String>,
    /// Shards of the queue (`crate::keys`): 16 on a cluster, 1 on one node, unless set.
    pub shards: usize,
    /// Entries each run lifecycle events stream (`<p>:events`, one per shard) keeps, about:
    /// `XADD … MAXLEN ~`. Defaults to 100,000.
    pub events_max_len: usize,
    /// How long a command line report waits to reach Redis before it fails naming the URL.
    /// Defaults to 3 s. (The daemons keep trying.)
    #[serde(serialize_with = "ser::duration")]
    pub connect_timeout: std::time::Duration,
}

/// `[redis.sentinel]`: the master's name and the sentinels to ask.
#[derive(Debug, Clone, Serialize)]
pub struct RedisSentinel {
    /// The name the sentinels monitor (`sentinel monitor <master> …`).
    pub master: String,
    /// `host:port` of each sentinel (`AGENTCRON__REDIS__SENTINEL__NODES=a:26379,b:26379`).
    pub nodes: Vec<String>,
    /// The sentinels' own ACL user, when they have one (`sentinel sentinel-user`).
    pub username: Option<String>,
    /// The sentinels' own password (`requirepass` of a sentinel;
    /// `AGENTCRON__REDIS__SENTINEL__PASSWORD`). Redacted everywhere.
    #[serde(serialize_with = "ser::opt_secret")]
    pub password: Option<SecretString>,
}

/// `[redis.tls]`: PEM files for a `rediss://` URL. Without `ca_file` the platform's roots are
/// trusted; with it, only that CA (it replaces the platform's roots, it does not add to them).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RedisTls {
    /// The CA that signed the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// The client certificate for mutual TLS, with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    pub key_file: Option<PathBuf>,
}

impl fmt::Debug for RedisConfig {
    // The URL may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = ser::redacted_url(&self.url);
        f.debug_struct("RedisConfig")
            .field("url", &url.as_str())
            .field("prefix", &self.prefix)
            .field("username", &self.username)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// `[worker]`: the daemon's limits.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerConfig {
    /// In-flight runs per worker process. Defaults to 200: runs wait on the network.
    pub concurrency: usize,
    /// Longest a run may take. Defaults to 15 minutes.
    #[serde(serialize_with = "ser::duration")]
    pub run_timeout: Duration,
    /// Attempts before a run is dead. Defaults to 5.
    pub max_attempts: u32,
    /// How long shutdown waits for in-flight runs. Defaults to 30 s.
    #[serde(serialize_with = "ser::duration")]
    pub shutdown_grace: Duration,
    /// Heartbeat interval. Defaults to 5 s.
    #[serde(serialize_with = "ser::duration")]
    pub heartbeat: Duration,
    /// A job whose worker misses heartbeats this long is taken over. Defaults to 30 s.
    #[serde(serialize_with = "ser::duration")]
    pub lease: Duration,
    /// How long an attempt's end waits for others to be recorded with it in one Redis call.
    /// Defaults to 0: ends are recorded together only when they are ready together (while the
    /// previous call runs), so no end waits for a timer.
    #[serde(serialize_with = "ser::duration")]
    pub finish_linger: Duration,
}

/// `[scalekit]`: the Virtual MCP server and its connections.
#[derive(Debug, Clone, Serialize)]
pub struct ScalekitConfig {
    /// Environment URL (`SCALEKIT_ENV_URL`).
    #[serde(serialize_with = "ser::url")]
    pub env_url: Url,
    /// Name of the MCP config to find or create. Defaults to `email-calendar-demo`.
    pub mcp_config_name: String,
    /// Lifetime of a minted session token, 60 s to 24 h. Defaults to 1 h.
    #[serde(serialize_with = "ser::duration")]
    pub token_expiry: Duration,
    /// A token this close to expiry is replaced mid-session. Defaults to 5 minutes.
    #[serde(serialize_with = "ser::duration")]
    pub token_refresh_margin: Duration,
    /// Connection name → tools. Defaults to the guide's gmail and googlecalendar mappings.
    pub connections: Vec<Connection>,
}

/// One connection of the MCP config and the tools it exposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connection {
    /// Connection name, such as `gmail`.
    pub name: String,
    /// Tool names, such as `gmail_fetch_mails`.
    pub tools: Vec<String>,
}

/// `[anthropic]`: the Managed Agents API and the agent definition.
#[derive(Debug, Clone, Serialize)]
pub struct AnthropicConfig {
    /// API base URL (`ANTHROPIC_BASE_URL`). Defaults to `https://api.anthropic.com`.
    #[serde(serialize_with = "ser::url")]
    pub base_url: Url,
    /// Environment id (`ANTHROPIC_ENVIRONMENT_ID`); `setup` creates one when unset.
    pub environment_id: Option<String>,
    /// Name of the environment `setup` creates. Defaults to `agentcron`.
    pub environment_name: String,
    /// How `session.requires_action` is answered. Defaults to `auto_confirm`.
    pub requires_action: ActionPolicy,
    /// Archive each session when its run ends. Defaults to false.
    pub archive_sessions: bool,
    /// The agent `setup` finds by name or creates.
    pub agent: AgentConfig,
}

/// The agent definition from the guide.
#[derive(Debug, Clone, Serialize)]
pub struct AgentConfig {
    /// Agent name, the lookup key for `setup`.
    pub name: String,
    /// Model id.
    pub model: String,
    /// System prompt.
    pub system: String,
    /// Name under which the Virtual MCP server is attached.
    pub mcp_server_name: String,
    /// Built-in toolsets enabled beside the MCP toolset, such as `agent_toolset_20260401`.
    pub toolsets: Vec<String>,
    /// Permission policy of the MCP toolset.
    pub permission_policy: PermissionPolicy,
}

/// Permission policy of the MCP toolset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PermissionPolicy {
    /// Tools run without asking (the guide's choice).
    AlwaysAllow,
    /// Each tool use waits for `session.requires_action` to be answered.
    AlwaysAsk,
}

/// Answer to `session.requires_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionPolicy {
    /// Confirm every request, as the vendor's demo does.
    AutoConfirm,
    /// Deny every request.
    Deny,
}

/// `[http]`: timeouts for both remote APIs.
#[derive(Debug, Clone, Serialize)]
pub struct HttpConfig {
    /// TCP/TLS connect timeout. Defaults to 10 s.
    #[serde(serialize_with = "ser::duration")]
    pub connect_timeout: Duration,
    /// Whole-request timeout for non-streaming calls. Defaults to 60 s.
    #[serde(serialize_with = "ser::duration")]
    pub request_timeout: Duration,
    /// A stream with no event or keep-alive this long, or no response head this long after
    /// connecting, is reconnected. Defaults to 90 s.
    #[serde(serialize_with = "ser::duration")]
    pub stream_idle_timeout: Duration,
    /// An event-stream event with more data than this is recorded by its size only, and the
    /// run goes on. Defaults to 4 MiB.
    pub max_event_bytes: usize,
}

/// `[retry]`: backoff for transient remote failures.
#[derive(Debug, Clone, Serialize)]
pub struct RetryConfig {
    /// First delay. Defaults to 500 ms.
    #[serde(serialize_with = "ser::duration")]
    pub initial: Duration,
    /// Largest delay. Defaults to 30 s.
    #[serde(serialize_with = "ser::duration")]
    pub max_interval: Duration,
    /// Give up after this long. Defaults to 5 minutes.
    #[serde(serialize_with = "ser::duration")]
    pub max_elapsed: Duration,
    /// Growth factor per attempt. Defaults to 2.
    pub multiplier: f64,
    /// Full jitter (a uniform delay in `0..=delay`). Defaults to true.
    pub jitter: bool,
    /// Attempts per call, the first included. Defaults to 8.
    pub max_attempts: u32,
}

/// Credentials, from the environment only. `Debug` and `Serialize` never show them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Secrets {
    /// `SCALEKIT_CLIENT_ID` (an identifier, shown).
    pub scalekit_client_id: Option<String>,
    /// `SCALEKIT_CLIENT_SECRET`.
    #[serde(serialize_with = "ser::secret_status")]
    pub scalekit_client_secret: Option<SecretString>,
    /// `ANTHROPIC_API_KEY`.
    #[serde(serialize_with = "ser::secret_status")]
    pub anthropic_api_key: Option<SecretString>,
}

impl Config {
    /// Checks that the credentials the remote APIs need are present.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming each missing variable.
    pub fn require_secrets(&self) -> Result<()> {
        let missing = [
            (SCALEKIT_CLIENT_ID, self.secrets.scalekit_client_id.is_none()),
            (SCALEKIT_CLIENT_SECRET, self.secrets.scalekit_client_secret.is_none()),
            (ANTHROPIC_API_KEY, self.secrets.anthropic_api_key.is_none()),
        ];
        let problems: Vec<Problem> = missing
            .iter()
            .filter(|(_, is_missing)| *is_missing)
            .map(|(var, _)| Problem {
                origin: Origin::Env((*var).to_owned()),
                key: (*var).to_owned(),
                message: "missing: set it in the environment or in a .env file".to_owned(),
            })
            .collect();
        if problems.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(problems)) }
    }

    /// The secret values this configuration holds, for the redaction facility.
    pub fn secret_values(&self) -> Vec<String> {
        use secrecy::ExposeSecret;
        let sentinel = self.redis.sentinel.as_ref();
        [
            self.secrets.scalekit_client_secret.as_ref(),
            self.secrets.anthropic_api_key.as_ref(),
            self.notices.webhook_secret.as_ref(),
            self.webhook.secret.as_ref(),
            self.ops.token.as_ref(),
            self.redis.password.as_ref(),
            sentinel.and_then(|sentinel| sentinel.password.as_ref()),
        ]
        .into_iter()
        .flatten()
        .map(|secret| secret.expose_secret().to_owned())
        .chain(self.redis.url.password().map(str::to_owned))
        .collect()
    }
}
