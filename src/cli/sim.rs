//! `agentcron sim`: serve the local simulator of the Scalekit and Anthropic APIs until Ctrl-C or
//! SIGTERM, after printing the base URL and the credentials it accepts.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::exit;
use crate::sim::{self, SimConfig};

/// Arguments of `sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Port (0 picks a free one).
    #[arg(long, default_value_t = 8787)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Seed for the deterministic mailboxes, ids and fault rates.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Scalekit client id the simulator accepts.
    #[arg(long, default_value = "sim-client-id")]
    pub scalekit_client_id: String,
    /// Scalekit client secret the simulator accepts.
    #[arg(long, default_value = "sim-client-secret")]
    pub scalekit_client_secret: String,
    /// Anthropic API key the simulator accepts.
    #[arg(long, default_value = "sim-anthropic-key")]
    pub anthropic_api_key: String,
    /// Status of both connections of users seen for the first time: ACTIVE, EXPIRED,
    /// PENDING_AUTH, PENDING_VERIFICATION, DISCONNECTED, or none (no account).
    #[arg(long, default_value = "ACTIVE")]
    pub default_connection_status: String,
    /// Emit empty Scalekit fields instead of omitting them as proto3 JSON does.
    #[arg(long)]
    pub emit_unpopulated: bool,
}

/// Runs the simulator in the foreground.
pub(super) async fn run(args: &SimArgs) -> anyhow::Result<ExitCode> {
    let status = args.default_connection_status.trim();
    let default_connection_status = match status {
        "none" | "NONE" => None,
        other => Some(other.to_uppercase()),
    };
    let config = SimConfig {
        bind: args.host,
        port: args.port,
        seed: args.seed,
        scalekit_client_id: args.scalekit_client_id.clone(),
        scalekit_client_secret: args.scalekit_client_secret.clone(),
        anthropic_api_key: args.anthropic_api_key.clone(),
        default_connection_status,
        emit_unpopulated: args.emit_unpopulated,
        ..SimConfig::default()
    };
    let handle = sim::serve(config).await.context("starting the simulator")?;
    let base = handle.base_url();
    let config = handle.config();
    println!("agentcron simulator listening on {base}");
    println!();
    println!("SCALEKIT_ENV_URL={base}");
    println!("SCALEKIT_CLIENT_ID={}", config.scalekit_client_id);
    println!("SCALEKIT_CLIENT_SECRET={}", config.scalekit_client_secret);
    println!("ANTHROPIC_BASE_URL={base}");
    println!("ANTHROPIC_API_KEY={}", config.anthropic_api_key);
    println!();
    println!("Control API: {base}/_sim/ (audit: {base}/_sim/audit). Ctrl-C stops.");
    wait_for_signal().await.context("waiting for a shutdown signal")?;
    handle.shutdown().await;
    Ok(ExitCode::from(exit::OK))
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            res = tokio::signal::ctrl_c() => res,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
