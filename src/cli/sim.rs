//! `agentcron sim`: serve the local simulator of the Scalekit and Anthropic APIs until Ctrl-C or
//! SIGTERM, after printing the base URL and the credentials it accepts.

use std::process::ExitCode;

use anyhow::Context as _;

use super::{SimArgs, exit};
use crate::sim::{self, SimConfig};

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
