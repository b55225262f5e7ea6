//! Operator actions on single runs: `requeue` (a dead, failed, cancelled or skipped run goes
//! back to the ready list with a fresh attempt budget, keeping its phase and session so it
//! resumes) and `cancel` (a waiting run is cancelled at once; a running one is asked to stop: its worker
//! learns it at its next heartbeat and the run stops at its next safe point) and `retry` (retry
//! now: a failed run waiting in the delayed set for its next attempt is made due at once). Each
//! is one Lua script, so it is atomic with respect to workers.

use super::{Queue, Result, script};
use crate::ids::RunId;

/// How long a worker's set of cancel requests outlives the last request: a live worker takes
/// it within a heartbeat; the set of a worker that died must not stay forever.
const CANCELS_TTL_SECS: u64 = 24 * 60 * 60;

/// What an operator action found and did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Action {
    /// The run.
    pub run_id: RunId,
    /// The state the run was in (`missing` when there is no such run).
    pub found: String,
    /// Whether the action took effect (for a running run's cancel: the request was recorded).
    pub applied: bool,
}

impl Queue {
    /// Requeues a dead, failed, cancelled or skipped run.
    ///
    /// # Errors
    /// [`super::QueueError`] when Redis fails.
    pub async fn requeue(&self, run_id: &RunId) -> Result<Action> {
        let found = self.admin(&script::REQUEUE, run_id).await?;
        let applied = matches!(found.as_str(), "dead" | "failed" | "cancelled" | "skipped");
        if applied {
            self.ring([self.keys.shard_of(run_id)]).await?;
        }
        Ok(Action { run_id: run_id.clone(), found, applied })
    }

    /// Cancels a queued or failed run now, or asks a running run to stop.
    ///
    /// # Errors
    /// [`super::QueueError`] when Redis fails.
    pub async fn cancel(&self, run_id: &RunId) -> Result<Action> {
        let found = self.admin(&script::CANCEL, run_id).await?;
        let applied = matches!(found.as_str(), "queued" | "failed" | "running");
        Ok(Action { run_id: run_id.clone(), found, applied })
    }

    /// Retries a failed run now: one waiting for its next attempt is moved to the ready list
    /// (its attempts are kept, so the retry counts against the same budget). `found` is `due`
    /// for a failed run whose retry is already due or taken.
    ///
    /// # Errors
    /// [`super::QueueError`] when Redis fails.
    pub async fn retry(&self, run_id: &RunId) -> Result<Action> {
        let found = self.admin(&script::RETRY, run_id).await?;
        let applied = found == "failed";
        if applied {
            self.ring([self.keys.shard_of(run_id)]).await?;
        }
        Ok(Action { run_id: run_id.clone(), found, applied })
    }

    async fn admin(&self, script: &redis::Script, run_id: &RunId) -> Result<String> {
        let keys = self.keys.for_run(run_id);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(keys.run(run_id))
            .key(keys.ready())
            .key(keys.delayed())
            .key(keys.events())
            .arg(run_id)
            .arg(keys.runs_by_state_prefix())
            .arg(keys.cancels_prefix())
            .arg(CANCELS_TTL_SECS)
            .arg(keys.events_cap());
        Ok(invocation.invoke_async(&mut self.connection()).await?)
    }
}
