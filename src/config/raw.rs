//! The configuration exactly as written in `jobs.toml` and the environment, before validation.
//!
//! Every field is optional or defaulted here and every value keeps its textual form (durations,
//! URLs, cron expressions are strings), so that validation in `validate.rs` can report *all*
//! problems at once with the key that holds each one. Each section is read key by key through
//! `read.rs`, and the keys read here are the only valid ones (`unknown.rs` reports the rest).
//! This module must not interpret values: that belongs to `validate.rs`.

use super::read::Reader;

/// The whole file. Sections may be omitted; each has compiled defaults.
#[derive(Debug, Default)]
pub(crate) struct RawConfig {
    pub(crate) redis: RawRedis,
    pub(crate) worker: RawWorker,
    pub(crate) scalekit: RawScalekit,
    pub(crate) anthropic: RawAnthropic,
    pub(crate) http: RawHttp,
    pub(crate) retry: RawRetry,
    pub(crate) limits: RawLimits,
    pub(crate) transcripts: RawTranscripts,
    pub(crate) notices: RawNotices,
    pub(crate) webhook: RawWebhook,
    pub(crate) ops: RawOps,
    pub(crate) setup: RawSetup,
    pub(crate) retention: RawRetention,
    pub(crate) budget: RawBudget,
    pub(crate) price: Vec<RawPrice>,
    pub(crate) schedule: Vec<RawSchedule>,
}

#[derive(Debug, Default)]
pub(crate) struct RawBudget {
    pub(crate) daily_tokens: Option<i64>,
    pub(crate) monthly_tokens: Option<i64>,
}

/// One `[[price]]`.
#[derive(Debug, Default)]
pub(crate) struct RawPrice {
    pub(crate) model: Option<String>,
    pub(crate) input: Option<f64>,
    pub(crate) output: Option<f64>,
    pub(crate) cache_write: Option<f64>,
    pub(crate) cache_read: Option<f64>,
}

#[derive(Debug, Default)]
pub(crate) struct RawRedis {
    pub(crate) url: Option<String>,
    pub(crate) prefix: Option<String>,
    pub(crate) allow_eviction: Option<bool>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) tls_ca_file: Option<String>,
    pub(crate) tls_cert_file: Option<String>,
    pub(crate) tls_key_file: Option<String>,
    pub(crate) sentinel_master: Option<String>,
    pub(crate) sentinel_nodes: Option<Vec<String>>,
    pub(crate) sentinel_username: Option<String>,
    pub(crate) sentinel_password: Option<String>,
    pub(crate) cluster: Option<bool>,
    pub(crate) cluster_nodes: Option<Vec<String>>,
    pub(crate) shards: Option<i64>,
    pub(crate) events_max_len: Option<i64>,
    pub(crate) connect_timeout: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct RawWorker {
    pub(crate) concurrency: Option<i64>,
    pub(crate) run_timeout: Option<String>,
    pub(crate) max_attempts: Option<i64>,
    pub(crate) shutdown_grace: Option<String>,
    pub(crate) heartbeat: Option<String>,
    pub(crate) lease: Option<String>,
    pub(crate) finish_linger: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct RawScalekit {
    pub(crate) env_url: Option<String>,
    pub(crate) mcp_config_name: Option<String>,
    pub(crate) token_expiry: Option<String>,
    pub(crate) token_refresh_margin: Option<String>,
    pub(crate) connections: Option<Vec<RawConnection>>,
}

#[derive(Debug)]
pub(crate) struct RawConnection {
    pub(crate) name: Option<String>,
    pub(crate) tools: Option<Vec<String>>,
}

#[derive(Debug, Default)]
pub(crate) struct RawAnthropic {
    pub(crate) base_url: Option<String>,
    pub(crate) environment_id: Option<String>,
    pub(crate) environment_name: Option<String>,
    pub(crate) requires_action: Option<String>,
    pub(crate) archive_sessions: Option<bool>,
    pub(crate) agent: RawAgent,
}

#[derive(Debug, Default)]
pub(crate) struct RawAgent {
    pub(crate) name: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) system: Option<String>,
    pub(crate) mcp_server_name: Option<String>,
    pub(crate) toolsets: Option<Vec<String>>,
    pub(crate) permission_policy: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct RawHttp {
    pub(crate) connect_timeout: Option<String>,
    pub(crate) request_timeout: Option<String>,
    pub(crate) stream_idle_timeout: Option<String>,
    pub(crate) max_event_bytes: Option<i64>,
}

#[derive(Debug, Default)]
pub(crate) struct RawRetry {
    pub(crate) initial: Option<String>,
    pub(crate) max_interval: Option<String>,
    pub(crate) max_elapsed: Option<String>,
    pub(crate) multiplier: Option<f64>,
    pub(crate) jitter: Option<bool>,
    pub(crate) max_attempts: Option<i64>,
}

#[derive(Debug, Default)]
pub(crate) struct RawLimits {
    pub(crate) creates_per_minute: Option<f64>,
    pub(crate) requests_per_minute: Option<f64>,
    pub(crate) environments_per_minute: Option<f64>,
    pub(crate) sessions_per_second: Option<f64>,
    pub(crate) tokens_per_second: Option<f64>,
}

#[derive(Debug, Default)]
pub(crate) struct RawTranscripts {
    pub(crate) dir: Option<String>,
    pub(crate) redis_maxlen: Option<i64>,
    pub(crate) ttl: Option<String>,
    pub(crate) max_run_mb: Option<i64>,
    pub(crate) result_max_kb: Option<i64>,
}

#[derive(Debug, Default)]
pub(crate) struct RawNotices {
    pub(crate) webhook_url: Option<String>,
    pub(crate) webhook_secret: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct RawWebhook {
    pub(crate) url: Option<String>,
    pub(crate) secret: Option<String>,
    pub(crate) events: Option<Vec<String>>,
    pub(crate) max_attempts: Option<i64>,
}

#[derive(Debug, Default)]
pub(crate) struct RawRetention {
    pub(crate) runs: Option<String>,
    pub(crate) transcripts: Option<String>,
    pub(crate) transcripts_max_mb: Option<i64>,
    pub(crate) every: Option<String>,
    pub(crate) usage: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct RawSetup {
    pub(crate) auto: Option<bool>,
}

#[derive(Debug, Default)]
pub(crate) struct RawOps {
    pub(crate) bind: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) scheduler_bind: Option<String>,
    pub(crate) hosts: Option<Vec<String>>,
    pub(crate) open_metrics: Option<bool>,
    pub(crate) max_connections: Option<i64>,
}

#[derive(Debug)]
pub(crate) struct RawSchedule {
    pub(crate) name: Option<String>,
    pub(crate) cron: Option<String>,
    pub(crate) timezone: Option<String>,
    pub(crate) default_timezone: Option<String>,
    pub(crate) skip_dates: Option<Vec<String>>,
    pub(crate) users: Vec<String>,
    pub(crate) prompt: Option<String>,
    pub(crate) overlap: Option<String>,
    pub(crate) spread: Option<String>,
    pub(crate) catch_up: Option<String>,
    pub(crate) enabled: Option<bool>,
    pub(crate) budget_daily_tokens: Option<i64>,
    pub(crate) budget_monthly_tokens: Option<i64>,
}

impl RawConfig {
    /// Reads every key of every section; the order is the file's, for the order of problems.
    pub(super) fn read(r: &mut Reader<'_>) -> Self {
        Self {
            redis: RawRedis {
                url: r.string("redis.url"),
                prefix: r.string("redis.prefix"),
                allow_eviction: r.bool("redis.allow_eviction"),
                username: r.string("redis.username"),
                password: r.string("redis.password"),
                tls_ca_file: r.string("redis.tls.ca_file"),
                tls_cert_file: r.string("redis.tls.cert_file"),
                tls_key_file: r.string("redis.tls.key_file"),
                sentinel_master: r.string("redis.sentinel.master"),
                sentinel_nodes: r.strings("redis.sentinel.nodes"),
                sentinel_username: r.string("redis.sentinel.username"),
                sentinel_password: r.string("redis.sentinel.password"),
                cluster: r.bool("redis.cluster"),
                cluster_nodes: r.strings("redis.cluster_nodes"),
                shards: r.int("redis.shards"),
                events_max_len: r.int("redis.events_max_len"),
                connect_timeout: r.string("redis.connect_timeout"),
            },
            worker: RawWorker {
                concurrency: r.int("worker.concurrency"),
                run_timeout: r.string("worker.run_timeout"),
                max_attempts: r.int("worker.max_attempts"),
                shutdown_grace: r.string("worker.shutdown_grace"),
                heartbeat: r.string("worker.heartbeat"),
                lease: r.string("worker.lease"),
                finish_linger: r.string("worker.finish_linger"),
            },
            scalekit: RawScalekit::read(r),
            anthropic: RawAnthropic::read(r),
            http: RawHttp {
                connect_timeout: r.string("http.connect_timeout"),
                request_timeout: r.string("http.request_timeout"),
                stream_idle_timeout: r.string("http.stream_idle_timeout"),
                max_event_bytes: r.int("http.max_event_bytes"),
            },
            retry: RawRetry {
                initial: r.string("retry.initial"),
                max_interval: r.string("retry.max_interval"),
                max_elapsed: r.string("retry.max_elapsed"),
                multiplier: r.float("retry.multiplier"),
                jitter: r.bool("retry.jitter"),
                max_attempts: r.int("retry.max_attempts"),
            },
            limits: RawLimits {
                creates_per_minute: r.float("limits.creates_per_minute"),
                requests_per_minute: r.float("limits.requests_per_minute"),
                environments_per_minute: r.float("limits.environments_per_minute"),
                sessions_per_second: r.float("limits.sessions_per_second"),
                tokens_per_second: r.float("limits.tokens_per_second"),
            },
            transcripts: RawTranscripts {
                dir: r.string("transcripts.dir"),
                redis_maxlen: r.int("transcripts.redis_maxlen"),
                ttl: r.string("transcripts.ttl"),
                max_run_mb: r.int("transcripts.max_run_mb"),
                result_max_kb: r.int("transcripts.result_max_kb"),
            },
            notices: RawNotices {
                webhook_url: r.string("notices.webhook_url"),
                webhook_secret: r.string("notices.webhook_secret"),
            },
            webhook: RawWebhook {
                url: r.string("webhook.url"),
                secret: r.string("webhook.secret"),
                events: r.strings("webhook.events"),
                max_attempts: r.int("webhook.max_attempts"),
            },
            ops: RawOps {
                bind: r.string("ops.bind"),
                token: r.string("ops.token"),
                scheduler_bind: r.string("ops.scheduler_bind"),
                hosts: r.strings("ops.hosts"),
                open_metrics: r.bool("ops.open_metrics"),
                max_connections: r.int("ops.max_connections"),
            },
            setup: RawSetup { auto: r.bool("setup.auto") },
            retention: RawRetention {
                runs: r.string("retention.runs"),
                transcripts: r.string("retention.transcripts"),
                transcripts_max_mb: r.int("retention.transcripts_max_mb"),
                every: r.string("retention.every"),
                usage: r.string("retention.usage"),
            },
            budget: RawBudget {
                daily_tokens: r.int("budget.daily_tokens"),
                monthly_tokens: r.int("budget.monthly_tokens"),
            },
            price: (0..r.tables("price").unwrap_or(0))
                .map(|i| RawPrice::read(r, &format!("price[{i}]")))
                .collect(),
            schedule: (0..r.tables("schedule").unwrap_or(0))
                .map(|i| RawSchedule::read(r, &format!("schedule[{i}]")))
                .collect(),
        }
    }
}

impl RawScalekit {
    fn read(r: &mut Reader<'_>) -> Self {
        Self {
            env_url: r.string("scalekit.env_url"),
            mcp_config_name: r.string("scalekit.mcp_config_name"),
            token_expiry: r.string("scalekit.token_expiry"),
            token_refresh_margin: r.string("scalekit.token_refresh_margin"),
            connections: r.tables("scalekit.connections").map(|n_connections| {
                (0..n_connections)
                    .map(|i| {
                        let key = format!("scalekit.connections[{i}]");
                        let name = r.string(&format!("{key}.name"));
                        let tools = r.strings(&format!("{key}.tools"));
                        RawConnection { name, tools }
                    })
                    .collect()
            }),
        }
    }
}

impl RawAnthropic {
    fn read(r: &mut Reader<'_>) -> Self {
        Self {
            base_url: r.string("anthropic.base_url"),
            environment_id: r.string("anthropic.environment_id"),
            environment_name: r.string("anthropic.environment_name"),
            requires_action: r.string("anthropic.requires_action"),
            archive_sessions: r.bool("anthropic.archive_sessions"),
            agent: RawAgent {
                name: r.string("anthropic.agent.name"),
                model: r.string("anthropic.agent.model"),
                system: r.string("anthropic.agent.system"),
                mcp_server_name: r.string("anthropic.agent.mcp_server_name"),
                toolsets: r.strings("anthropic.agent.toolsets"),
                permission_policy: r.string("anthropic.agent.permission_policy"),
            },
        }
    }
}

impl RawSchedule {
    /// One `[[schedule]]`, at `key` (`schedule[0]`).
    fn read(r: &mut Reader<'_>, key: &str) -> Self {
        let name = r.string(&format!("{key}.name"));
        let cron = r.string(&format!("{key}.cron"));
        Self {
            name,
            cron,
            timezone: r.string(&format!("{key}.timezone")),
            default_timezone: r.string(&format!("{key}.default_timezone")),
            skip_dates: r.strings(&format!("{key}.skip_dates")),
            users: r.strings(&format!("{key}.users")).unwrap_or_default(),
            prompt: r.string(&format!("{key}.prompt")),
            overlap: r.string(&format!("{key}.overlap")),
            spread: r.string(&format!("{key}.spread")),
            catch_up: r.string(&format!("{key}.catch_up")),
            enabled: r.bool(&format!("{key}.enabled")),
            budget_daily_tokens: r.int(&format!("{key}.budget_daily_tokens")),
            budget_monthly_tokens: r.int(&format!("{key}.budget_monthly_tokens")),
        }
    }
}

impl RawPrice {
    /// One `[[price]]`, at `key` (`price[0]`).
    fn read(r: &mut Reader<'_>, key: &str) -> Self {
        Self {
            model: r.string(&format!("{key}.model")),
            input: r.float(&format!("{key}.input")),
            output: r.float(&format!("{key}.output")),
            cache_write: r.float(&format!("{key}.cache_write")),
            cache_read: r.float(&format!("{key}.cache_read")),
        }
    }
}
