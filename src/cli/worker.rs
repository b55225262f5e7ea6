//! `agentcron worker`: the daemon. Executes queued runs with the run pipeline until SIGINT or
//! SIGTERM, then drains.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use super::setup::load_config;
use super::{WorkerArgs, exit};
use crate::run::Context;
use crate::telemetry::Redactor;

/// Runs the worker until a signal; exit 0 after a clean drain.
pub(super) async fn run(
    flag: Option<&Path>,
    args: &WorkerArgs,
    redactor: &Redactor,
) -> anyhow::Result<ExitCode> {
    let config = load_config(flag, redactor)?;
    config.require_secrets()?;
    let shutdown = crate::shutdown::on_signals().context("installing signal handlers")?;
    let ctx = Context::connect(config.clone(), redactor.clone())
        .await
        .context("preparing the run pipeline")?;
    if args.schedule {
        anyhow::bail!(
            "`worker --schedule` needs the scheduler, which is not yet available; run `agentcron scheduler` beside the worker"
        );
    }
    crate::worker::run(&config, ctx, shutdown).await.context("worker")?;
    Ok(ExitCode::from(exit::OK))
}
