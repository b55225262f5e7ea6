//! The attempt's fence: the worker's start script increments the run record's `fence` at
//! every start and hands the attempt its value. Right before each call that changes the world
//! (creating a vault, credential or session, sending the message, archiving) the attempt
//! checks that the record still carries its fence; phase markers are written only if it does
//! (`records::set_run`). A worker frozen past its lease (a VM pause, SIGSTOP) whose run was
//! taken over therefore stops at its next side effect without acting.
//!
//! This module must not decide what the attempt does when fenced off: it returns
//! [`RunError::Fenced`], which the worker treats as a run it no longer holds.

use super::{Context, Run, RunError};

/// Fails with [`RunError::Fenced`] when another attempt of `run` started since this one.
/// Attempts executed outside a worker (no fence) always pass.
///
/// # Errors
/// [`RunError::Fenced`], or [`RunError::Records`] when Redis fails.
pub(super) async fn check(ctx: &Context, run: &Run) -> Result<(), RunError> {
    let Some(fence) = run.fence else { return Ok(()) };
    let current: Option<u64> = redis::cmd("HGET")
        .arg(ctx.keys.run(&run.id))
        .arg("fence")
        .query_async(&mut ctx.redis.clone())
        .await?;
    if current == Some(fence) { Ok(()) } else { Err(fenced(run, current)) }
}

/// The error of an attempt fenced off, logged once here.
pub(super) fn fenced(run: &Run, current: Option<u64>) -> RunError {
    tracing::warn!(
        message = "Fenced off: another attempt of this run started while this one was stalled; stopping without acting.",
        run_id = %run.id,
        fence = run.fence,
        current_fence = current
    );
    RunError::Fenced { run_id: run.id.clone() }
}
