//! Group commit of attempts' ends: every run that ends hands its end to one task, which records
//! all the ends it has in one Redis call per shard (`Queue::finish_many`) and answers each run
//! once its end is recorded. A run keeps its concurrency slot until then, as before.
//!
//! The task takes whatever ends are waiting when it is free (at most [`MAX_BATCH`]), plus those
//! that come within `worker.finish_linger` when that is set: a busy worker writes hundreds of
//! ends per call, an idle one writes each at once. A failed call is retried with backoff until
//! Redis takes it: the script finds an end already recorded by a try whose reply was lost.
//! A worker killed with ends in the task's hands loses nothing: their runs are still
//! `running` in its processing list, the reaper gives them to another worker, and the run's
//! phase record makes the redo skip what was done (`worker_process::` test of it).
//!
//! A batch also takes the next runs into the slots its ends free, in the same call (as
//! BullMQ's `moveToFinished` returns the next job), and hands them to the fetch loop: a busy
//! worker then needs no fetch call of its own. Two batches may be under way at once, so that
//! Redis has the next while the reply to the last is on its way.
//!
//! This module must not decide outcomes or touch queue keys.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::outcome::Disposition;
use crate::queue::{Backoff, Finished, Job, Lease, Outbox, Owner, Queue, Refill, Slots};

/// Most ends in one call.
pub(super) const MAX_BATCH: usize = 256;
/// Most calls under way at once.
const MAX_FLUSHES: usize = 2;

/// An end on its way, with where its answer goes.
struct End {
    job: Job,
    disposition: Disposition,
    reply: oneshot::Sender<Finished>,
}

impl std::fmt::Debug for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("End").field("run_id", &self.job.run_id).finish_non_exhaustive()
    }
}

/// The handle runs record their ends through.
#[derive(Debug, Clone)]
pub(super) struct Acks {
    sender: mpsc::Sender<End>,
    /// For an end the task could not take or answer (it is gone): recorded alone.
    queue: Queue,
    outbox: Outbox,
}

impl Acks {
    /// Starts the task; it ends once every handle is dropped and the last ends are recorded.
    /// `capacity`: the runs that can end at once (the worker's concurrency). With `refiller`,
    /// each batch also takes as many ready runs as it records ends and hands them over.
    pub(super) fn spawn(
        queue: Queue,
        outbox: Outbox,
        (linger, capacity): (Duration, usize),
        refiller: Option<Refiller>,
    ) -> (Self, JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let task = tokio::spawn(run(queue.clone(), outbox.clone(), linger, receiver, refiller));
        (Self { sender, queue, outbox }, task)
    }

    /// Records the end of `job`'s attempt; returns what the script found once it is recorded.
    pub(super) async fn record(&self, job: &Job, disposition: &Disposition) -> Finished {
        let (reply, answer) = oneshot::channel();
        let end = End { job: job.clone(), disposition: disposition.clone(), reply };
        if self.sender.send(end).await.is_ok()
            && let Ok(finished) = answer.await
        {
            return finished;
        }
        // The task is gone (it panicked), perhaps after recording this end: the script then
        // finds it recorded. `finish_many` answers once per end given.
        let ends = [(job, disposition)];
        let ended = record_until_taken(&self.queue, &self.outbox, &ends, None).await;
        ended.found.into_iter().next().unwrap_or(Finished::TakenOver)
    }
}

/// What lets a batch of ends take the next runs, for the fetch loop (`queue::Backend`).
#[derive(Debug)]
pub(super) struct Refiller {
    /// The worker's lease: runs are taken for its current owner.
    pub(super) lease: Arc<Lease>,
    /// `[worker] max_attempts` and `[worker] lease`, as the fetch loop has them.
    pub(super) max_attempts: u32,
    pub(super) lease_every: Duration,
    /// Shutdown: no runs are taken once it is cancelled.
    pub(super) stop: CancellationToken,
    /// The fetch loop's end of the hand-off.
    pub(super) handoff: mpsc::UnboundedSender<Vec<Job>>,
    /// The worker's slots: the runs handed over are counted taken (and waiting for their
    /// handler) before the ends that free their slots are answered, so that the fetch loop
    /// never takes runs for the same slots too, and the reconciler knows them as this worker's.
    pub(super) slots: Arc<Slots>,
}

impl Refiller {
    /// Whom to take runs for now: nobody while shutting down, nor while the lease is at risk
    /// (a run taken then could be reaped before it starts).
    fn wanted(&self, queue: &Queue) -> Option<Owner> {
        let wanted = !self.stop.is_cancelled() && !queue.health().lease_at_risk(self.lease_every);
        wanted.then(|| self.lease.current())
    }

    /// Counts `started` taken and hands them to the fetch loop; a loop that is gone (shutdown)
    /// leaves them in the processing list, which the worker's final release empties.
    fn hand_over(&self, started: Vec<Job>) {
        if started.is_empty() {
            return;
        }
        self.slots.take(&started);
        if let Err(mpsc::error::SendError(jobs)) = self.handoff.send(started) {
            for job in jobs {
                self.slots.started(&job.run_id);
                self.slots.free_one();
            }
        }
    }
}

/// The task: gathers ends and records them, up to [`MAX_FLUSHES`] calls at once, until every
/// handle is gone.
async fn run(
    queue: Queue,
    outbox: Outbox,
    linger: Duration,
    mut receiver: mpsc::Receiver<End>,
    refiller: Option<Refiller>,
) {
    let refiller = refiller.map(Arc::new);
    let mut flushing = tokio::task::JoinSet::new();
    loop {
        while flushing.try_join_next().is_some() {}
        while flushing.len() >= MAX_FLUSHES {
            flushing.join_next().await;
        }
        let Some(first) = receiver.recv().await else { break };
        let mut batch = Vec::with_capacity(MAX_BATCH);
        batch.push(first);
        gather(&mut receiver, &mut batch, linger).await;
        let (queue, outbox, refiller) = (queue.clone(), outbox.clone(), refiller.clone());
        flushing.spawn(async move { flush(&queue, &outbox, batch, refiller.as_deref()).await });
    }
    while flushing.join_next().await.is_some() {}
}

/// Adds the ends already waiting, and with a linger those that come within it.
async fn gather(receiver: &mut mpsc::Receiver<End>, batch: &mut Vec<End>, linger: Duration) {
    let deadline = tokio::time::Instant::now() + linger;
    while batch.len() < MAX_BATCH {
        match receiver.try_recv() {
            Ok(end) => batch.push(end),
            Err(_) if linger.is_zero() => return,
            Err(_) => match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(end)) => batch.push(end),
                Ok(None) | Err(_) => return,
            },
        }
    }
}

/// Records `batch`, retrying Redis until it takes it, hands the runs it took over, and answers
/// each run.
async fn flush(queue: &Queue, outbox: &Outbox, batch: Vec<End>, refiller: Option<&Refiller>) {
    let ended = {
        let ends: Vec<(&Job, &Disposition)> =
            batch.iter().map(|end| (&end.job, &end.disposition)).collect();
        record_until_taken(queue, outbox, &ends, refiller).await
    };
    // Before the answers: the slots they free are the ones these runs fill.
    if let Some(refiller) = refiller {
        refiller.hand_over(ended.started);
    }
    for (end, finished) in batch.into_iter().zip(ended.found) {
        // A run dropped meanwhile (shutdown gave up on it) no longer waits for its answer.
        end.reply.send(finished).ok();
    }
}

/// Records `ends` in one `finish_many` (taking runs with `refiller`), retried with backoff
/// until Redis takes it: what was found for each, in order, and the runs taken. A try whose
/// reply was lost may have taken runs: they sit in the processing list unexecuted, where the
/// reconciler finds them and hands them back.
async fn record_until_taken(
    queue: &Queue,
    outbox: &Outbox,
    ends: &[(&Job, &Disposition)],
    refiller: Option<&Refiller>,
) -> crate::queue::Ended {
    let mut backoff = Backoff::default();
    loop {
        let owner = refiller.and_then(|refiller| refiller.wanted(queue));
        let refill = refiller
            .zip(owner.as_ref())
            .map(|(refiller, owner)| Refill { owner, max_attempts: refiller.max_attempts });
        match queue.finish_many(ends, outbox, refill).await {
            Ok(ended) => {
                queue.health().ok();
                return ended;
            }
            Err(error) => {
                queue.health().failed("finish", &error);
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}
