//! The intake mover: takes payloads operators pushed with `redis-cli LPUSH <p>:intake …`,
//! turns each into a run or a rejection (see `queue::intake`), and keeps going whatever the
//! payloads contain. Stops at shutdown; a payload it holds then is released with the runs.
//!
//! Every payload reaches the worker through the take script, which measures it in Redis
//! first, so the mover holds at most one bounded batch whatever producers push. That is why it
//! polls an idle intake rather than waiting in `BLMOVE`: a blocking pop would hand over the
//! payload whatever its size.
//!
//! This module must not validate payloads (that is `queue::intake`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::queue::intake::IntakeReport;
use crate::queue::{Backoff, Lease, Owner, Queue, QueueError};

/// Payloads handled per round trip (and at most `queue::intake::MAX_BATCH_BYTES` of them).
const BATCH: usize = 100;
/// How long an idle mover waits before it looks at the intake again: a payload pushed to an
/// empty intake is picked up within this, at one cheap script call per worker and period.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// Runs until `stop` is cancelled.
pub(super) async fn run(queue: Queue, lease: Arc<Lease>, stop: CancellationToken) {
    let mut backoff = Backoff::default();
    let mut leftovers = false;
    loop {
        let owner = lease.current();
        // Cancel safety: each step's Redis changes are single scripts; a payload moved but not
        // yet handled stays in this worker's intake processing list, which release hands back.
        let res = tokio::select! {
            () = stop.cancelled() => return,
            res = step(&queue, &owner, leftovers) => res,
        };
        let pause = match res {
            Ok((report, idle)) => {
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
                if idle { IDLE_POLL } else { continue }
            }
            Err(error) => {
                queue.health().failed("intake", &error);
                leftovers = true;
                backoff.next_delay()
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// One round: the leftovers of a failed round back to the intake first, then one bounded
/// batch. Returns what it did and whether the intake was empty.
async fn step(
    queue: &Queue,
    owner: &Owner,
    leftovers: bool,
) -> Result<(IntakeReport, bool), QueueError> {
    if leftovers {
        queue.intake_return(&owner.id).await?;
    }
    let taken = queue.intake_take(&owner.id, BATCH).await?;
    let idle = taken.payloads.is_empty() && taken.too_large == 0 && taken.left == 0;
    let mut report = IntakeReport { rejected: taken.too_large, ..IntakeReport::default() };
    if !taken.payloads.is_empty() {
        let handled = queue.intake_handle(&owner.id, &taken.payloads).await?;
        report = IntakeReport { rejected: report.rejected + handled.rejected, ..handled };
    }
    Ok((report, idle))
}
