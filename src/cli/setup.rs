//! `agentcron setup` and `agentcron authorize`: the guide's build and authorize phases.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::{AuthorizeArgs, SetupArgs, exit};
use crate::config::{Config, Env, Needs};
use crate::ids::{RunId, UserId};
use crate::keys::Keys;
use crate::records::notice;
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

/// A reconnecting Redis connection for `config`.
pub(super) async fn redis(config: &Config) -> anyhow::Result<crate::config::RedisConn> {
    let manager_config = redis::aio::ConnectionManagerConfig::new();
    config.redis.connect(manager_config).await.map_err(|e| anyhow::anyhow!(e))
}

/// What the commands that talk to both APIs need.
struct Remote {
    config: Arc<Config>,
    scalekit: crate::api::scalekit::Client,
    anthropic: crate::api::anthropic::Client,
    conn: crate::config::RedisConn,
    keys: Keys,
}

/// Loads the configuration (credentials required) and connects to Redis and both APIs.
async fn remote(flag: Option<&Path>, redactor: &Redactor) -> anyhow::Result<Remote> {
    let config = load_config(flag, redactor, Needs::All)?;
    config.require_secrets()?;
    let (scalekit, anthropic, _) = crate::run::clients(&config)?;
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
    let Remote { config, scalekit, anthropic, mut conn, keys } = remote(flag, redactor).await?;
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

/// `agentcron authorize`: prints each connection and a link for each inactive one, opening
/// a notice for it; `--wait` polls until all are active (exit 1 on timeout).
pub(super) async fn authorize(
    flag: Option<&Path>,
    args: &AuthorizeArgs,
    redactor: &Redactor,
) -> anyhow::Result<ExitCode> {
    let Remote { config, scalekit, mut conn, keys, .. } = remote(flag, redactor).await?;
    let ids = setup::load(&mut conn, &keys).await?;
    let deadline = Instant::now() + args.timeout;
    let mut report = Vec::new();
    for user in &args.users {
        loop {
            let states =
                scalekit.list_connected_accounts(&ids.mcp_config_id, user.as_str(), false).await?;
            let mut pending = Vec::new();
            for connection in &config.scalekit.connections {
                let state = states
                    .iter()
                    .find(|s| s.connection_name.eq_ignore_ascii_case(&connection.name));
                let status = state
                    .and_then(|s| s.connected_account_status.clone())
                    .unwrap_or_else(|| "none".to_owned());
                if state.is_some_and(|s| s.is_active()) {
                    pending.push((connection.name.clone(), status, None));
                    continue;
                }
                let link = scalekit.magic_link(user.as_str(), &connection.name).await?.link;
                notice::open(
                    &mut conn,
                    &keys,
                    (user, &connection.name, &status, &link),
                    &RunId::trusted("authorize"),
                )
                .await?;
                pending.push((connection.name.clone(), status, Some(link)));
            }
            let all_active = pending.iter().all(|(_, _, link)| link.is_none());
            if !args.wait || all_active || Instant::now() >= deadline {
                report.push((user.clone(), pending, all_active));
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    print_authorize(&report, args.json)?;
    let waited_in_vain = args.wait && report.iter().any(|(_, _, all_active)| !all_active);
    Ok(ExitCode::from(if waited_in_vain { exit::FAILURE } else { exit::OK }))
}

type Report = Vec<(UserId, Vec<(String, String, Option<String>)>, bool)>;

fn print_authorize(report: &Report, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        let users: Vec<_> = report
            .iter()
            .map(|(user, connections, all_active)| {
                let connections: Vec<_> = connections
                    .iter()
                    .map(|(name, status, link)| json!({"connection": name, "status": status, "auth_link": link}))
                    .collect();
                json!({"user": user, "all_active": all_active, "connections": connections})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json!({"users": users}))?);
        return Ok(());
    }
    for (user, connections, _) in report {
        println!("{user}");
        for (name, status, link) in connections {
            match link {
                None => println!("  ✓ {name} — {status}"),
                Some(link) => println!("  ✗ {name} — {status}; needs auth: {link}"),
            }
        }
    }
    Ok(())
}
