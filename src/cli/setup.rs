//! `agentcron setup`: the guide's build phase; and what the commands that talk to both APIs
//! share (`setup`, `authorize`): the configuration, Redis, and clients with a time budget.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use serde_json::json;

use super::{BudgetArgs, SetupArgs, exit};
use crate::backoff::RetryPolicy;
use crate::config::{Config, Env, Needs};
use crate::keys::Keys;
use crate::setup;
use crate::telemetry::Redactor;

/// Loads the configuration a command `needs` (see [`Needs`]: a command that only reaches Redis
/// runs without the default `./jobs.toml`), and teaches the redactor its secrets.
pub(super) fn load_config(
    flag: Option<&Path>,
    redactor: &Redactor,
    needs: Needs,
) -> anyhow::Result<Arc<Config>> {
    let env = Env::from_process();
    let path = crate::config::resolve_path(flag, &env);
    let config = crate::config::load_for(flag, &env, needs).with_context(|| loading(&path))?;
    for secret in config.secret_values() {
        redactor.add(secret);
    }
    Ok(Arc::new(config))
}

/// The context of a failed load: the file, and how to write one when it does not exist.
pub(super) fn loading(path: &Path) -> String {
    if path.exists() {
        format!("loading {}", path.display())
    } else {
        format!("loading {} (`agentcron config init` writes a starting one)", path.display())
    }
}

/// A reconnecting Redis connection for `config`, or within `redis.connect_timeout` (3 s) an
/// error naming the URL (without its password) and why, once.
pub(super) async fn redis(config: &Config) -> anyhow::Result<crate::config::RedisConn> {
    let timeout = config.redis.connect_timeout;
    let manager_config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(std::time::Duration::from_millis(200));
    match tokio::time::timeout(timeout, config.redis.connect(manager_config)).await {
        Ok(connected) => connected.map_err(anyhow::Error::msg),
        Err(_) => Err(anyhow::anyhow!(
            "cannot connect to Redis at {}: no answer within {} (redis.connect_timeout)",
            config.redis.shown_url(),
            humantime::format_duration(timeout)
        )),
    }
}

/// A queue handle on `config`'s Redis, connected as [`redis`] connects.
pub(super) async fn queue(config: &Config) -> anyhow::Result<crate::queue::Queue> {
    Ok(crate::queue::Queue::on(redis(config).await?, config.redis.keys()))
}

/// What the commands that talk to both APIs need.
pub(super) struct Remote {
    pub(super) config: Arc<Config>,
    pub(super) scalekit: crate::api::scalekit::Client,
    pub(super) anthropic: crate::api::anthropic::Client,
    pub(super) conn: crate::config::RedisConn,
    pub(super) keys: Keys,
}

/// Loads the configuration (credentials required) and connects to Redis and both APIs, whose
/// every call is given `budget`: an interactive command fails fast, naming the service, where
/// a worker would wait out the outage.
pub(super) async fn remote(
    flag: Option<&Path>,
    budget: &BudgetArgs,
    redactor: &Redactor,
) -> anyhow::Result<Remote> {
    let config = load_config(flag, redactor, Needs::All)?;
    config.require_secrets()?;
    let (scalekit, anthropic, _) = crate::run::clients(&config)?;
    let policy =
        RetryPolicy { budget: Some(budget.connect_budget), ..RetryPolicy::from(&config.retry) };
    let (scalekit, anthropic) = (scalekit.with_policy(policy), anthropic.with_policy(policy));
    let conn = redis(&config).await?;
    let keys = config.redis.keys();
    // Setup's calls take from the same fleet-wide buckets as the workers' runs.
    let limiter = crate::ratelimit::RateLimiter::new(conn.clone(), keys.clone());
    let anthropic = crate::run::paced(anthropic, &config.limits, &limiter);
    Ok(Remote { config, scalekit, anthropic, conn, keys })
}

/// `agentcron setup`, and `setup --check`.
pub(super) async fn run(
    flag: Option<&Path>,
    args: &SetupArgs,
    redactor: &Redactor,
) -> anyhow::Result<ExitCode> {
    let Remote { config, scalekit, anthropic, mut conn, keys } =
        remote(flag, &args.budget, redactor).await?;
    if args.check {
        let changes = setup::check(&config, &scalekit, &anthropic).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&json!({"changes": changes}))?);
        } else if changes.is_empty() {
            println!("setup matches the configuration");
        } else {
            println!("setup differs from the configuration (run `agentcron setup` to apply):");
            changes.iter().for_each(|change| println!("  {change}"));
        }
        return Ok(ExitCode::from(if changes.is_empty() { exit::OK } else { exit::DRIFT }));
    }
    let (ids, created) = setup::ensure(&config, &scalekit, &anthropic, &mut conn, &keys).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({"setup": ids, "created": created}))?);
        return Ok(ExitCode::from(exit::OK));
    }
    let verb = |created: bool| if created { "created" } else { "found" };
    let agent = if created.changes.is_empty() { verb(created.agent) } else { "updated" };
    println!("MCP config   {}  ({})", ids.mcp_config_id, verb(created.mcp_config));
    println!("MCP server   {}", ids.mcp_server_url);
    println!("agent        {}  ({agent})", ids.agent_id);
    created.changes.iter().for_each(|change| println!("  {change}"));
    println!("environment  {}  ({})", ids.environment_id, verb(created.environment));
    println!("stored in    {}", keys.setup());
    Ok(ExitCode::from(exit::OK))
}
