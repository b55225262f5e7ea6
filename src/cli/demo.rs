//! `agentcron demo`: the end-to-end demo against the in-process simulator (the logic is in
//! `crate::demo`). Prints the transcripts, the notice and the status screen; exit 0 when alice
//! and bob succeeded and carol ended `needs_auth` with an open notice, else 1.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::{DemoArgs, exit};
use crate::config::{Env, REDIS_URL};
use crate::demo::{Demo, DemoOptions};
use crate::telemetry::Redactor;

/// Runs the demo; with `--follow`, keeps the demo schedule running until SIGINT or SIGTERM.
pub(super) async fn run(
    flag: Option<&Path>,
    args: &DemoArgs,
    redactor: &Redactor,
) -> anyhow::Result<ExitCode> {
    let shutdown = crate::shutdown::on_signals().context("installing signal handlers")?;
    let opts = DemoOptions {
        config: flag.map(Path::to_path_buf),
        redis_url: Env::from_process()
            .get(REDIS_URL)
            .filter(|url| !url.is_empty())
            .map(str::to_owned),
        follow: args.follow,
        redactor: redactor.clone(),
        ..DemoOptions::default()
    };
    // Stdout, not a lock on it: the demo's futures hold the writer across awaits.
    let mut out = std::io::stdout();
    let mut demo = Demo::start(opts, &mut out).await.context("starting the demo")?;
    let res = show(&mut demo, args, &mut out, &shutdown).await;
    demo.stop().await;
    shutdown.cancel();
    res
}

/// The three runs, the status screen, the verdict, then `--follow`.
async fn show(
    demo: &mut Demo,
    args: &DemoArgs,
    out: &mut std::io::Stdout,
    shutdown: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    let report = demo.run_once(out, shutdown).await.context("running the demo")?;
    writeln!(out, "\nStatus (agentcron status)")?;
    let status = demo.status().await.context("reading status")?;
    super::report::render_status(&status, out)?;
    if !report.passed() {
        writeln!(out, "\nDemo FAILED: expected alice and bob `succeeded`, carol `needs_auth`.")?;
        return Ok(ExitCode::from(exit::FAILURE));
    }
    writeln!(out, "\nDemo OK: alice and bob succeeded; carol needs to re-authorise her calendar.")?;
    if args.follow {
        demo.follow(out, shutdown).await.context("following the demo schedule")?;
    }
    Ok(ExitCode::from(exit::OK))
}
