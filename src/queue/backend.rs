//! Our apalis [`Backend`](apalis_core::backend::Backend) over the Redis queue: it yields one
//! apalis task per run this worker takes, fetching in batches sized to the free concurrency
//! slots, and it never fails: Redis errors are retried here with backoff, so an outage pauses
//! the worker instead of ending it (apalis ends a worker on the first backend error).
//!
//! The apalis worker polls this backend only when its concurrency layer has a free slot, so a
//! batch is never larger than the runs it can start at once; a taken run waits in `buffer` for
//! at most one poll. This module must not execute runs or record outcomes.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::backend::BackendConfig;
use apalis_core::backend::finalize::Ephemeral;
use apalis_core::layers::Identity;
use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::TaskId;
use apalis_core::worker::context::WorkerContext;

use super::health::Backoff;
use super::jobs::Fetched;
use super::{Job, Lease, Queue, QueueError};
use crate::config::RedisConn;
use crate::ids::RunId;

/// Most runs taken per fetch script call.
const FETCH_BATCH: usize = 100;
/// How long a busy worker waits for [`worthwhile`] free slots before it fetches for fewer.
const FETCH_LINGER: Duration = Duration::from_millis(2);
/// How often a fetch paused for an unrenewed lease looks again.
const LEASE_WAIT: Duration = Duration::from_millis(100);

/// What the fetch loop needs from `[worker]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FetchConfig {
    /// In-flight runs per process.
    pub(crate) concurrency: usize,
    /// Attempts before a run is dead (enforced at fetch for attempts that never reported).
    pub(crate) max_attempts: u32,
    /// How long one `BLMOVE` waits when the ready list is empty.
    pub(crate) block: Duration,
    /// The worker's lease: no run is taken while it has gone unrenewed for half of it.
    pub(crate) lease: Duration,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The worker's concurrency slots in use: taken when a fetch hands runs over, freed when a
/// run's end is recorded, which wakes a fetch waiting for room. With them, the runs taken and
/// not yet handed to their handler: the reconciler counts them as this worker's, or it would
/// hand back a run waiting its turn and the copy, executed later, would be a stale one.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    taken: AtomicUsize,
    freed: tokio::sync::Notify,
    waiting: Mutex<HashSet<RunId>>,
}

impl Slots {
    /// Slots in use now.
    pub(crate) fn taken(&self) -> usize {
        self.taken.load(Ordering::Acquire)
    }

    /// Counts `jobs` taken, each waiting for its handler until [`Self::started`]: by a fetch,
    /// or by a batch of ends before it hands them over (so that no fetch counts their slots as
    /// free meanwhile).
    pub(crate) fn take(&self, jobs: &[Job]) {
        self.waiting().extend(jobs.iter().map(|job| job.run_id.clone()));
        self.taken.fetch_add(jobs.len(), Ordering::AcqRel);
    }

    /// `run_id` is with its handler now (the worker tracks it as in flight from here).
    pub(crate) fn started(&self, run_id: &RunId) {
        self.waiting().remove(run_id);
    }

    /// Whether `run_id` was taken and waits for its handler.
    pub(crate) fn is_waiting(&self, run_id: &RunId) -> bool {
        self.waiting().contains(run_id)
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashSet<RunId>> {
        // Each use is one call on the set: a panic cannot leave it half-changed.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Frees one slot; returns the slots still in use.
    pub(crate) fn free_one(&self) -> usize {
        let left = self.taken.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        self.freed.notify_one();
        left
    }

    /// Waits until `wanted` slots of `concurrency` are free, or at least one is and `linger`
    /// has passed; returns the free slots. A worker that is busy thus takes runs in batches
    /// worth a script call, and an idle one at once. It never takes a run for a slot that is
    /// not free: such a run would wait in the buffer, its user's lease unrenewed, for as long
    /// as the runs before it take.
    async fn room(&self, concurrency: usize, wanted: usize, linger: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + linger;
        loop {
            let free = concurrency.saturating_sub(self.taken());
            if free >= wanted.max(1) || (free > 0 && tokio::time::Instant::now() >= deadline) {
                return free;
            }
            let freed = self.freed.notified();
            if free == 0 {
                freed.await;
            } else {
                tokio::time::timeout_at(deadline, freed).await.ok();
            }
        }
    }
}

/// The free slots a busy worker waits for before it fetches: a quarter of a full batch (or
/// of the concurrency, when smaller). Each script call costs Redis about as much as a few
/// runs' own commands, so batches of one or two would cost more than the runs.
fn worthwhile(concurrency: usize) -> usize {
    (concurrency.min(FETCH_BATCH) / 4).max(1)
}

/// The backend of one worker process. Not `Clone`: apalis owns it.
pub(crate) struct Backend {
    queue: Queue,
    lease: Arc<Lease>,
    config: FetchConfig,
    /// Runs taken and not yet finished; the worker's finish step frees them.
    slots: Arc<Slots>,
    /// Runs a batch of ends took (`worker/acks.rs`), counted in `slots` already, to run next.
    handed: tokio::sync::mpsc::UnboundedReceiver<Vec<Job>>,
    buffer: VecDeque<Job>,
    /// The fetch in progress. Dropping it mid-call is safe: whatever a script already moved
    /// sits in this worker's processing list, which shutdown releases and the reaper recovers.
    fetching: Option<BoxFuture<Vec<Job>>>,
    /// The blocking connection, reused across fetches; only one fetch runs at a time, the
    /// async Mutex only carries it into the `'static` fetch future. With it, the shard the
    /// next fetch looks at first.
    blocking: Arc<tokio::sync::Mutex<Waiting>>,
}

/// What one fetch hands the next.
#[derive(Default)]
struct Waiting {
    conn: Option<RedisConn>,
    next_shard: usize,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("queue", &self.queue)
            .field("buffered", &self.buffer.len())
            .field("in_flight", &self.slots.taken())
            .finish_non_exhaustive()
    }
}

impl Backend {
    pub(crate) fn new(
        queue: Queue,
        lease: Arc<Lease>,
        config: FetchConfig,
        (slots, handed): (Arc<Slots>, tokio::sync::mpsc::UnboundedReceiver<Vec<Job>>),
    ) -> Self {
        Self {
            queue,
            lease,
            config,
            slots,
            handed,
            buffer: VecDeque::new(),
            fetching: None,
            blocking: Arc::default(),
        }
    }

    fn start_fetch(&self) -> BoxFuture<Vec<Job>> {
        let (queue, lease, config) = (self.queue.clone(), Arc::clone(&self.lease), self.config);
        let (slots, blocking) = (Arc::clone(&self.slots), Arc::clone(&self.blocking));
        Box::pin(async move {
            let wanted = worthwhile(config.concurrency);
            let free = slots.room(config.concurrency, wanted, FETCH_LINGER).await;
            next_batch(queue, lease, config, free.min(FETCH_BATCH), blocking).await
        })
    }
}

/// Fetches until at least one run is started: a batch when runs are ready, else a `BLMOVE`
/// wait. Retries Redis errors with backoff, logging the outage once, and takes nothing while
/// the heartbeat cannot renew the lease.
async fn next_batch(
    queue: Queue,
    lease: Arc<Lease>,
    config: FetchConfig,
    n: usize,
    blocking: Arc<tokio::sync::Mutex<Waiting>>,
) -> Vec<Job> {
    let mut backoff = Backoff::default();
    let mut waiting = blocking.lock().await;
    loop {
        // A run taken now could be reaped before it starts, and Redis is in trouble anyway.
        if queue.health().lease_at_risk(config.lease) {
            tokio::time::sleep(LEASE_WAIT).await;
            continue;
        }
        let owner = lease.current();
        let res = match fetch_round(&queue, &owner, n, config, &mut waiting.next_shard).await {
            Ok(Fetched::Jobs(jobs)) if jobs.is_empty() => {
                wait_one(&queue, &mut waiting, &owner, config).await
            }
            other => other,
        };
        match res {
            Ok(Fetched::Jobs(jobs)) if !jobs.is_empty() => {
                queue.health().ok();
                return jobs;
            }
            Ok(Fetched::Jobs(_)) => {
                queue.health().ok();
                backoff.reset();
            }
            // The heartbeat rotates the lease; wait for it rather than race it.
            Ok(Fetched::Lost) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(error) => {
                queue.health().failed("fetch", &error);
                // A broken blocking connection is replaced on the next wait.
                waiting.conn = None;
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// One fetch from each shard in turn, from `next_shard`, until one gives runs; `next_shard`
/// then names the one after it, so that the next fetch starts elsewhere. A full batch rings
/// the bell for that shard again: more runs may wait there for another idle worker.
async fn fetch_round(
    queue: &Queue,
    owner: &super::Owner,
    n: usize,
    config: FetchConfig,
    next_shard: &mut usize,
) -> Result<Fetched, QueueError> {
    let shards = queue.keys().shards();
    for i in 0..shards {
        let shard = (*next_shard + i) % shards;
        match queue.fetch(owner, n, config.max_attempts, shard).await? {
            Fetched::Jobs(jobs) if jobs.is_empty() => {}
            fetched => {
                *next_shard = (shard + 1) % shards;
                if matches!(&fetched, Fetched::Jobs(jobs) if jobs.len() == n) {
                    queue.ring([shard]).await?;
                }
                return Ok(fetched);
            }
        }
    }
    Ok(Fetched::Jobs(Vec::new()))
}

/// Waits for work: on one shard, a `BLMOVE` of one run; on several, the bell, after which the
/// next round starts at the shard it names.
async fn wait_one(
    queue: &Queue,
    waiting: &mut Waiting,
    owner: &super::Owner,
    config: FetchConfig,
) -> Result<Fetched, QueueError> {
    if waiting.conn.is_none() {
        waiting.conn = Some(queue.blocking_connection(config.block).await?);
    }
    let Some(conn) = waiting.conn.as_mut() else { return Ok(Fetched::Jobs(Vec::new())) };
    if queue.keys().shards() == 1 {
        return queue.fetch_wait(conn, owner, config.block, config.max_attempts).await;
    }
    if let Some(shard) = queue.wait_bell(conn, config.block).await? {
        waiting.next_shard = shard;
    }
    Ok(Fetched::Jobs(Vec::new()))
}

fn to_task(job: Job) -> Task<Job> {
    let task_id = TaskId::from_string(job.run_id.as_str().to_owned());
    TaskBuilder::new(job).task_id(task_id).build()
}

impl apalis_core::backend::Backend for Backend {
    type Task = Task<Job>;
    type Error = QueueError;

    fn poll_ready(
        &mut self,
        _: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), QueueError>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Option<Result<Task<Job>, QueueError>>> {
        loop {
            while let Poll::Ready(Some(jobs)) = self.handed.poll_recv(cx) {
                self.buffer.extend(jobs);
            }
            if let Some(job) = self.buffer.pop_front() {
                return Poll::Ready(Some(Ok(to_task(job))));
            }
            if self.fetching.is_none() {
                self.fetching = Some(self.start_fetch());
            }
            let Some(fetching) = self.fetching.as_mut() else { return Poll::Pending };
            match fetching.as_mut().poll(cx) {
                Poll::Ready(jobs) => {
                    self.fetching = None;
                    self.slots.take(&jobs);
                    self.buffer.extend(jobs);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_close(
        &mut self,
        _: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), QueueError>> {
        // Runs still buffered or half-fetched stay in the processing list: the worker's final
        // release step puts them back on the queue.
        self.fetching = None;
        self.handed.close();
        while let Ok(jobs) = self.handed.try_recv() {
            self.buffer.extend(jobs);
        }
        for job in self.buffer.drain(..) {
            self.slots.started(&job.run_id);
        }
        Poll::Ready(Ok(()))
    }
}

impl BackendConfig for Backend {
    type Args = Job;
    type Id = String;
    type Kind = Ephemeral;
    type Config = ();
    type Layer = Identity;

    fn config(&self) -> &() {
        &()
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> Identity {
        Identity::new()
    }
}
