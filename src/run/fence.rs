//! The attempt's fence: the worker's start script increments the run record's `fence` at
//! every start and hands the attempt its value. Right before each call that changes the world
//! (creating a vault, credential or session, sending the message, archiving) the attempt
//! checks that the record still carries its fence (for creates and sends as the very last step
//! before the request leaves, after its rate-limit turn: [`Guard`]); phase markers are written
//! only if it does (`records::set_run`). A worker frozen past its lease (a VM pause, SIGSTOP) whose run was
//! taken over therefore stops at its next side effect without acting.
//!
//! This module must not decide what the attempt does when fenced off: it returns
//! [`RunError::Fenced`], which the worker treats as a run it no longer holds.

use std::sync::Arc;

use crate::config::RedisConn;

use super::{Context, Run, RunError};
use crate::api::pace::{Pacer, RateClass, Turn};

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
