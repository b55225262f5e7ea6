//! Self-reconciliation: every pass compares this worker's processing list with the runs it is
//! executing, and hands back to the ready list (attempt refunded) the runs that sit in the
//! list but that it is not executing. They come from a fetch whose reply was lost: Redis ran
//! the script (after a failover, or writes paused past the reply timeout) and moved the runs,
//! but the worker never learnt of them, and its live heartbeat keeps the reaper away.
//!
//! A run counts as not executed only when two passes in a row saw it so, which leaves a fetch
//! whose reply is on its way time to register its runs. This module must not execute runs.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::cancels::InFlight;
use super::maintenance::sleep_or_stop;
use crate::ids::RunId;
use crate::queue::{Lease, Owner, Queue, QueueError, Slots};
use crate::telemetry::metrics;

/// Entries read per pass; a processing list holds at most the concurrency plus one fetch.
const LIST_LIMIT: usize = 20_000;

/// Compares the processing list with the runs in flight every `every`.
#[derive(Debug)]
pub(super) struct Reconciler {
    queue: Queue,
    lease: Arc<Lease>,
    runs: InFlight,
    /// The slots, with the runs taken and waiting for their handler: not lost either.
    slots: Arc<Slots>,
    every: Duration,
}

impl Reconciler {
    pub(super) fn new(
        queue: Queue,
        lease: Arc<Lease>,
        (runs, slots): (InFlight, Arc<Slots>),
        every: Duration,
    ) -> Self {
        Self { queue, lease, runs, slots, every }
    }

    /// Runs passes until `stop`. Redis failures are counted in the queue's health and retried
    /// at the next pass.
    pub(super) async fn run(self, stop: CancellationToken) {
        let mut owner = self.lease.current();
        let mut suspects = HashSet::new();
        while sleep_or_stop(self.every, &stop).await {
            let current = self.lease.current();
            if current.id != owner.id {
                // A new id has a new list: what the old one held went to the reaper.
                suspects.clear();
                owner = current;
            }
            match self.pass(&owner, &mut suspects).await {
                Ok(_) => self.queue.health().ok(),
                Err(error) => self.queue.health().failed("reconcile", &error),
            }
        }
    }

    /// One pass: returns how many runs it handed back.
    async fn pass(
        &self,
        owner: &Owner,
        suspects: &mut HashSet<RunId>,
    ) -> Result<usize, QueueError> {
        let listed = self.queue.processing_ids(owner, LIST_LIMIT).await?;
        let idle: HashSet<RunId> = listed
            .into_iter()
            .filter(|run_id| !self.runs.contains(run_id) && !self.slots.is_waiting(run_id))
            .collect();
        let confirmed: Vec<RunId> = idle.intersection(suspects).cloned().collect();
        *suspects = idle;
        if confirmed.is_empty() {
            return Ok(0);
        }
        for run_id in &confirmed {
            suspects.remove(run_id);
        }
        let n_runs = self.queue.release_runs(owner, &confirmed).await?;
        if n_runs > 0 {
            metrics::runs_reconciled(n_runs);
            tracing::warn!(
                message = "Handed back runs this worker held but was not executing (a fetch whose reply was lost).",
                worker_id = %owner.id,
                n_runs,
                run_ids = ?confirmed
            );
        }
        Ok(n_runs)
    }
}
