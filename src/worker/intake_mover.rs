//! The intake mover: takes payloads operators pushed with `redis-cli LPUSH <p>:intake …`,
//! turns each into a run or a rejection (see `queue::intake`), and keeps going whatever the
//! payloads contain. Stops at shutdown; a payload it holds then is released with the runs.
//!
//! This module must not validate payloads (that is `queue::intake`).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use crate::queue::{Backoff, Lease, Owner, Queue, QueueError};

/// Payloads handled per round trip.
const BATCH: usize = 100;

/// Runs until `stop` is cancelled.
pub(super) async fn run(queue: Queue, lease: Arc<Lease>, block: Duration, stop: CancellationToken) {
    let mut blocking: Option<MultiplexedConnection> = None;
    let mut backoff = Backoff::default();
    let mut leftovers = false;
    loop {
        let owner = lease.current();
        // Cancel safety: each step's Redis changes are single scripts; a payload moved but not
        // yet handled stays in this worker's intake processing list, which release hands back.
        let res = tokio::select! {
            () = stop.cancelled() => return,
            res = step(&queue, &mut blocking, &owner, block, leftovers) => res,
        };
        match res {
            Ok(report) => {
                queue.health().ok();
                backoff.reset();
                leftovers = false;
                if report.rejected + report.created + report.duplicates > 0 {
                    tracing::debug!(
                        message = "Intake handled.",
                        created = report.created,
                        duplicates = report.duplicates,
                        rejected = report.rejected
                    );
                }
            }
            Err(error) => {
                queue.health().failed("intake", &error);
                blocking = None;
                leftovers = true;
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}

/// One round: leftovers of a failed round first, else a batch, else wait for one payload.
async fn step(
    queue: &Queue,
    blocking: &mut Option<MultiplexedConnection>,
    owner: &Owner,
    block: Duration,
    leftovers: bool,
) -> Result<crate::queue::intake::IntakeReport, QueueError> {
    let mut payloads =
        if leftovers { queue.intake_pending(&owner.id, BATCH).await? } else { Vec::new() };
    if payloads.is_empty() {
        payloads = queue.intake_take(&owner.id, BATCH).await?;
    }
    if payloads.is_empty() {
        if blocking.is_none() {
            *blocking = Some(queue.blocking_connection(block).await?);
        }
        if let Some(conn) = blocking.as_mut() {
            payloads.extend(queue.intake_wait(conn, &owner.id, block).await?);
        }
    }
    if payloads.is_empty() {
        return Ok(crate::queue::intake::IntakeReport::default());
    }
    queue.intake_handle(&owner.id, &payloads).await
}
