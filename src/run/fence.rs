//! The attempt's fence: the worker's start script increments the run record's `fence` at
//! every start and hands the attempt its value. Right before each call that changes the world
//! (creating a vault, credential or session, sending the message, archiving) the attempt
//! checks that the record still carries its fence (for creates and sends as the very last step
//! before the request leaves, after its rate-limit turn: [`Guard`]); phase markers are written
//! only if it does (`records::set_run`). A worker frozen past its lease (a VM pause, SIGSTOP) whose run was
//! taken over therefore stops at its next side effect without acting.
//!
//! A fence cannot stop a request that had passed its check when its worker froze: it leaves
//! when the worker thaws, whatever happened meanwhile, and Anthropic takes no idempotency key.
//! So an attempt that takes over from one that never reported waits [`IN_FLIGHT_LEASES`]
//! leases before it acts ([`outwait_stalled`]): a request still pending from the frozen
//! worker lands meanwhile, and the searches for a lost create (the vault by its `user`
//! metadata, the session by its `run_id`) and the history read before the send find it. A
//! worker frozen longer than that between its check and its request can still act twice; the
//! README says so.
//!
//! This module must not decide what the attempt does when fenced off: it returns
//! [`RunError::Fenced`], which the worker treats as a run it no longer holds.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::RedisConn;

use super::{Context, Run, RunError};
use crate::api::pace::{Pacer, RateClass, Turn};

/// How many leases a takeover waits, beyond the lease that had to lapse before it: a worker
/// frozen for less than about this many leases in all has sent its pending request by then.
pub(super) const IN_FLIGHT_LEASES: u32 = 2;

/// Before a taken-over attempt acts, gives a request the stalled attempt may still have
/// pending time to land (see the module doc). Nothing is waited for once the message was
/// sent: from there on an attempt only reads and archives.
///
/// # Errors
/// [`RunError::Cancelled`] when the run is cancelled meanwhile.
pub(super) async fn outwait_stalled(
    ctx: &Context,
    run: &Run,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    if !run.taken_over || run.message_sent {
        return Ok(());
    }
    let wait: Duration = ctx.config.worker.lease * IN_FLIGHT_LEASES;
    tracing::info!(
        message = "Taken over from a worker that stopped answering: waiting for any request it had in flight to land before acting.",
        run_id = %run.id,
        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)
    );
    tokio::select! {
        () = cancel.cancelled() => Err(RunError::Cancelled),
        () = tokio::time::sleep(wait) => Ok(()),
    }
}

/// Fails with [`RunError::Fenced`] when another attempt of `run` started since this one.
/// Attempts executed outside a worker (no fence) always pass.
///
/// # Errors
/// [`RunError::Fenced`], or [`RunError::Records`] when Redis fails.
pub(super) async fn check(ctx: &Context, run: &Run) -> Result<(), RunError> {
    let Some(fence) = run.fence else { return Ok(()) };
    let current = current(&ctx.redis, &ctx.keys.run(&run.id)).await?;
    if current == Some(fence) { Ok(()) } else { Err(fenced(run, current)) }
}

/// The fence the run record `key` carries now.
async fn current(redis: &RedisConn, key: &str) -> redis::RedisResult<Option<u64>> {
    redis::cmd("HGET").arg(key).arg("fence").query_async(&mut redis.clone()).await
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

/// The last step before a create or a send leaves: the rate limiter's turn (when there is one),
/// then the fence. Checked any earlier, a worker frozen between the check and the request (or
/// waiting for its turn while Redis was paused) would act after another attempt took the run
/// over: a second session, a second credential. A request it stops is not sent; the caller's
/// next [`check`] turns that into [`RunError::Fenced`].
#[derive(Debug)]
pub(super) struct Guard {
    pub(super) inner: Option<Arc<dyn Pacer>>,
    pub(super) redis: RedisConn,
    /// The run record.
    pub(super) key: String,
    pub(super) fence: u64,
}

impl Pacer for Guard {
    fn refused(&self, class: RateClass, pause: std::time::Duration) -> Turn<'_> {
        match &self.inner {
            Some(inner) => inner.refused(class, pause),
            None => Box::pin(std::future::ready(Ok(()))),
        }
    }

    fn turn(&self, class: RateClass) -> Turn<'_> {
        Box::pin(async move {
            if let Some(inner) = &self.inner {
                inner.turn(class).await?;
            }
            let current =
                current(&self.redis, &self.key).await.map_err(|error| error.to_string())?;
            if current == Some(self.fence) {
                Ok(())
            } else {
                Err(format!(
                    "fenced off: the run's fence is {current:?}, this attempt's {}",
                    self.fence
                ))
            }
        })
    }
}
