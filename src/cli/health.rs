//! `agentcron health`, for container healthchecks: exit 0 when Redis answers a `PING`; with
//! `--worker`, also when the worker on this host renews its lease (its ops server's `/readyz`
//! says `lease: ok`; a worker whose heartbeat cannot reach Redis may have its runs taken); with
//! `--scheduler`, when the scheduler on this host answers `/healthz` on `ops.scheduler_bind`.
//! Else exit 1, with one line naming each check that failed. Every check has `--timeout`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use super::exit;
use super::setup::load_config;
use crate::config::{Config, Needs};
use crate::telemetry::Redactor;

pub(super) const AFTER_HELP: &str = "\
Examples:
  agentcron health                 Redis answers
  agentcron health --worker        and the worker on this host renews its lease
  HEALTHCHECK CMD [\"agentcron\", \"health\", \"--scheduler\"]

Exit codes: 0 healthy, 1 not (the failing check is named on stderr).";

/// Arguments of `health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Also check the worker on this host, through its ops server (`ops.bind`).
    #[arg(long, conflicts_with = "scheduler")]
    pub worker: bool,
    /// Also check the scheduler on this host, through its ops server (`ops.scheduler_bind`).
    #[arg(long)]
    pub scheduler: bool,
    /// How long each check may take.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the checks and reports them.
pub(super) async fn run(
    flag: Option<&Path>,
    args: &HealthArgs,
    redactor: &Redactor,
) -> anyhow::Result<ExitCode> {
    let config = load_config(flag, redactor, Needs::Redis)?;
    let mut checks = vec![("redis", redis(&config, args.timeout).await)];
    if args.worker {
        checks.push(("worker", worker(&config, args.timeout).await));
    }
    if args.scheduler {
        checks.push(("scheduler", scheduler(&config, args.timeout).await));
    }
    let healthy = checks.iter().all(|(_, check)| check.is_ok());
    if args.json {
        let shown: serde_json::Map<String, Value> = checks
            .iter()
            .map(|(name, check)| {
                let text = check
                    .as_ref()
                    .map_or_else(|e| redactor.redact(e).into_owned(), |()| "ok".to_owned());
                ((*name).to_owned(), Value::from(text))
            })
            .collect();
        println!("{}", json!({"healthy": healthy, "checks": shown}));
    } else {
        for (name, check) in &checks {
            match check {
                Ok(()) => println!("{name}: ok"),
                Err(error) => eprintln!("{name}: {}", redactor.redact(error)),
            }
        }
    }
    Ok(ExitCode::from(if healthy { exit::OK } else { exit::FAILURE }))
}

/// Connects as every report does ([`super::setup::redis`], with `--timeout` as the connect
/// timeout) and asks for a `PING` within it.
async fn redis(config: &Config, timeout: Duration) -> Result<(), String> {
    let mut config = config.clone();
    config.redis.connect_timeout = timeout;
    let mut conn = super::setup::redis(&config).await.map_err(|e| e.to_string())?;
    let ping = redis::cmd("PING");
    match tokio::time::timeout(timeout, ping.query_async::<String>(&mut conn)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {}", humantime::format_duration(timeout))),
    }
}

async fn worker(config: &Config, timeout: Duration) -> Result<(), String> {
    let addr = config.ops.bind.ok_or("ops.bind is \"off\": the worker has no ops server to ask")?;
    let body = get(addr, "/readyz", timeout).await?;
    match body["checks"]["lease"].as_str() {
        Some("ok") => Ok(()),
        Some(lease) => Err(format!("its lease is {lease}")),
        None => Err(format!("{} did not say how its lease is", url(addr, "/readyz"))),
    }
}

async fn scheduler(config: &Config, timeout: Duration) -> Result<(), String> {
    let addr = config
        .ops
        .scheduler_bind
        .ok_or("ops.scheduler_bind is \"off\": the scheduler has no ops server to ask")?;
    get(addr, "/healthz", timeout).await.map(|_| ())
}

/// The JSON body of `path` on the ops server bound at `addr`, asked on this host.
async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Value, String> {
    let url = url(addr, path);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let response =
        client.get(&url).send().await.map_err(|e| format!("{url}: {}", e.without_url()))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    // `/readyz` answers 503 with its checks when not ready; they say why.
    if status.is_success() || status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        Ok(body)
    } else {
        Err(format!("{url} answered {status}"))
    }
}

/// `http://<addr><path>`, with an unspecified address (`0.0.0.0`) asked on loopback.
fn url(addr: SocketAddr, path: &str) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}{path}", SocketAddr::new(ip, addr.port()))
}
