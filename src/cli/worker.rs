//! `agentcron worker`: the daemon. Executes queued runs with the run pipeline until SIGINT or
//! SIGTERM, then drains; serves the ops HTTP endpoints (`ops::http`) meanwhile and closes them
//! last, after the drain (unless `ops.bind = "off"`).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::setup::load_config;
use super::{WorkerArgs, exit};
use crate::ops::http::{self, OpsState};
use crate::run::Context;
use crate::telemetry::Redactor;

/// Runs the worker until a signal; exit 0 after a clean drain.
pub(super) async fn run(
    flag: Option<&Path>,
    args: &WorkerArgs,
    redactor: &Redactor,
) -> anyhow::Result<ExitCode> {
    let config = load_config(flag, redactor, crate::config::Needs::All)?;
    config.require_secrets()?;
    // Bound first, so a bad or taken address fails before anything else starts.
    let listener = http::bind(&config.ops).await?;
    let shutdown = crate::shutdown::on_signals().context("installing signal handlers")?;
    let ctx = Context::connect(config.clone(), redactor.clone())
        .await
        .context("preparing the run pipeline")?;
    // Its own token, not a child of `shutdown`: /metrics and /readyz stay up during the drain
    // and close last, so the drain can be watched to its end.
    let stop_ops = CancellationToken::new();
    let health = Arc::new(crate::queue::Health::default());
    let server = match listener {
        Some(listener) => {
            let ops = OpsState::new(config.clone(), redactor.clone())
                .context("preparing ops HTTP")?
                .beside_worker(Arc::clone(&health));
            let addr = listener.local_addr().context("reading the ops address")?;
            tracing::info!(message = "Ops HTTP listening.", url = %format!("http://{addr}/"));
            Some(tokio::spawn(http::serve(ops, listener, stop_ops.clone())))
        }
        None => {
            tracing::info!(
                message = "Ops HTTP is off (ops.bind = \"off\"): no /healthz, /readyz, /metrics or dashboard."
            );
            None
        }
    };
    // With --schedule the scheduler ticks in this process too; it stops first on shutdown
    // (it watches the same token), so no new runs are enqueued while the worker drains.
    let scheduler = if args.schedule {
        let env = crate::config::Env::from_process();
        let path = crate::config::resolve_path(flag, &env);
        let queue =
            crate::queue::Queue::connect(&config.redis).await.context("connecting to Redis")?;
        Some(tokio::spawn(crate::schedule::run(path, env, queue, shutdown.clone())))
    } else {
        None
    };
    let res = crate::worker::run_watched(&config, ctx, shutdown, health).await.context("worker");
    if let Some(scheduler) = scheduler {
        scheduler.await.context("scheduler task")?.context("scheduler")?;
    }
    stop_ops.cancel();
    if let Some(server) = server {
        server.await.context("ops HTTP task")?.context("ops HTTP")?;
    }
    res?;
    Ok(ExitCode::from(exit::OK))
}
