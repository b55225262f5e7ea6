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
//! This module must not decide outcomes or touch queue keys.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::outcome::Disposition;
use crate::queue::{Backoff, Finished, Job, Outbox, Queue};

/// Most ends in one call.
pub(super) const MAX_BATCH: usize = 256;

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
    /// `capacity`: the runs that can end at once (the worker's concurrency).
    pub(super) fn spawn(
        queue: Queue,
        outbox: Outbox,
        linger: Duration,
        capacity: usize,
    ) -> (Self, JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let task = tokio::spawn(run(queue.clone(), outbox.clone(), linger, receiver));
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
        let found = record_until_taken(&self.queue, &self.outbox, &[(job, disposition)]).await;
        found.into_iter().next().unwrap_or(Finished::TakenOver)
    }
}

/// The task: gathers ends and records them, until every handle is gone.
async fn run(queue: Queue, outbox: Outbox, linger: Duration, mut receiver: mpsc::Receiver<End>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = receiver.recv().await {
        batch.push(first);
        gather(&mut receiver, &mut batch, linger).await;
        flush(&queue, &outbox, &mut batch).await;
    }
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

/// Records `batch`, retrying Redis until it takes it, and answers each run.
async fn flush(queue: &Queue, outbox: &Outbox, batch: &mut Vec<End>) {
    let found = {
        let ends: Vec<(&Job, &Disposition)> =
            batch.iter().map(|end| (&end.job, &end.disposition)).collect();
        record_until_taken(queue, outbox, &ends).await
    };
    for (end, finished) in batch.drain(..).zip(found) {
        // A run dropped meanwhile (shutdown gave up on it) no longer waits for its answer.
        end.reply.send(finished).ok();
    }
}

/// Records `ends` in one `finish_many`, retried with backoff until Redis takes it; what was
/// found for each, in order.
async fn record_until_taken(
    queue: &Queue,
    outbox: &Outbox,
    ends: &[(&Job, &Disposition)],
) -> Vec<Finished> {
    let mut backoff = Backoff::default();
    loop {
        match queue.finish_many(ends, outbox).await {
            Ok(found) => {
                queue.health().ok();
                return found;
            }
            Err(error) => {
                queue.health().failed("finish", &error);
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}
