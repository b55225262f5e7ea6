//! The job lifecycle on Redis, one script call per step: take (fetch), promote due retries,
//! heartbeat, reap the runs of dead workers, and release everything at shutdown; recording
//! ends is `finish.rs`.
//!
//! Owns the meaning of each step for the run record's `state`. It must not decide outcomes:
//! the worker passes a [`Disposition`] the outcome table (`crate::outcome`) already decided.

use std::time::Duration;

use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use super::{LIST_CAP, Owner, PROMOTE_BATCH, Queue, QueueError, Result, script};
use crate::config::RedisConn;
use crate::ids::RunId;
use crate::outcome::RunState;

/// Runs handed back per list and per reaper call; a processing list is bounded by the worker's
/// concurrency plus one fetch batch, so this empties it in one call in practice.
const REAP_ITEMS: usize = 2_000;
/// Entries of the `running` index one sweep call looks at: two reads each, bounded.
const SWEEP_BATCH: usize = 1_000;
/// Dead workers handled per reaper call.
const REAP_WORKERS: usize = 16;
/// Cancel requests one heartbeat takes at most; more wait for the next one.
const CANCELS_PER_BEAT: usize = 10_000;

/// One run taken by this worker: what the worker needs to execute and finish it.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// The run id.
    pub(crate) run_id: RunId,
    /// This attempt, 1-based: attempts started so far, this one included.
    pub(crate) attempt: u32,
    /// The record's `fence` as this attempt's start set it: higher for every later start.
    pub(crate) fence: u64,
    /// The state before this attempt; `Running` means the run was taken over from a worker
    /// that died, and resumes from its persisted phase.
    pub(crate) previous: Option<RunState>,
    /// The owner whose processing list holds the run.
    pub(crate) owner: Owner,
    /// Cancels this run only: a child of the owner's token.
    pub(crate) cancel: CancellationToken,
    /// The run record as the start read it (before it set `state` and the attempt's fields),
    /// handed to the handler, which then need not read it again. Taken by the first layer
    /// that needs it, so that copies of the job kept for its end do not hold it.
    pub(crate) record: Option<std::collections::HashMap<String, String>>,
    /// What the finish needs of the record as the start read it, so that it need not read it
    /// again.
    pub(crate) start: StartRead,
}

/// The fields of the run record the end of an attempt writes with its event and index move.
#[derive(Debug, Clone, Default)]
pub(crate) struct StartRead {
    /// `created_at_ms` (the state indexes' score).
    pub(crate) created_at_ms: String,
    /// The run's user and schedule (empty for none), for the lifecycle event.
    pub(crate) user: String,
    pub(crate) schedule: String,
    /// The record carries an earlier attempt's error, which a success clears.
    pub(crate) had_error: bool,
}

impl StartRead {
    fn of(record: &std::collections::HashMap<String, String>) -> Self {
        let field = |name: &str| record.get(name).cloned().unwrap_or_default();
        Self {
            created_at_ms: field("created_at_ms"),
            user: field("user"),
            schedule: field("schedule"),
            had_error: ["last_error", "error_class", "next_attempt_at_ms"]
                .iter()
                .any(|name| record.contains_key(*name)),
        }
    }
}

/// What a fetch got.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// Runs started by this worker (possibly none).
    Jobs(Vec<Job>),
    /// This owner's lease was reaped: rotate before fetching again.
    Lost,
}

impl Queue {
    /// Takes up to `n` ready runs of shard `shard` into `owner`'s processing list there and
    /// starts them (`attempts + 1`, `state = running`), in one script call.
    pub(crate) async fn fetch(
        &self,
        owner: &Owner,
        n: usize,
        max_attempts: u32,
        shard: usize,
    ) -> Result<Fetched> {
        let mut invocation = script::FETCH.prepare_invoke();
        Self::start_args(&mut invocation, &self.keys.shard(shard), owner, n, max_attempts);
        let value: redis::Value = invocation.invoke_async(&mut self.connection()).await?;
        parse_started(value, owner)
    }

    /// Waits up to `block` for one ready run (`BLMOVE`, on the blocking connection), then
    /// starts it. Used when the ready list of a queue of one shard is empty, so that pickup is
    /// immediate without polling.
    pub(crate) async fn fetch_wait(
        &self,
        blocking: &mut RedisConn,
        owner: &Owner,
        block: Duration,
        max_attempts: u32,
    ) -> Result<Fetched> {
        let (ready, processing) = (self.keys.ready(), self.keys.processing(&owner.id));
        let (right, left) = (redis::Direction::Right, redis::Direction::Left);
        let moved: Option<String> =
            blocking.blmove(ready, processing, right, left, block.as_secs_f64()).await?;
        let Some(run_id) = moved else { return Ok(Fetched::Jobs(Vec::new())) };
        let mut invocation = script::START_ONE.prepare_invoke();
        Self::start_args(&mut invocation, &self.keys, owner, 1, max_attempts);
        invocation.arg(run_id);
        let value: redis::Value = invocation.invoke_async(&mut self.connection()).await?;
        parse_started(value, owner)
    }

    fn start_args(
        invocation: &mut redis::ScriptInvocation<'_>,
        keys: &crate::keys::Keys,
        owner: &Owner,
        n: usize,
        max: u32,
    ) {
        invocation
            .key(keys.ready())
            .key(keys.processing(&owner.id))
            .key(keys.leases())
            .key(keys.dead())
            .key(keys.events())
            .arg(&*owner.id)
            .arg(n)
            .arg(keys.run_prefix())
            .arg(keys.runs_by_state_prefix())
            .arg(max)
            .arg(LIST_CAP)
            .arg(keys.events_cap());
    }

    /// Moves due runs from each shard's delayed set to its ready list, [`PROMOTE_BATCH`] per
    /// call, until none are due. Returns how many moved.
    pub(crate) async fn promote_due(&self) -> Result<usize> {
        let mut n_moved = 0;
        for (shard, keys) in self.keys.each_shard().enumerate() {
            let mut n_shard = 0;
            loop {
                let mut invocation = script::PROMOTE.prepare_invoke();
                invocation.key(keys.delayed()).key(keys.ready()).arg(PROMOTE_BATCH);
                let moved: usize = invocation.invoke_async(&mut self.connection()).await?;
                n_shard += moved;
                if moved < PROMOTE_BATCH {
                    break;
                }
            }
            if n_shard > 0 {
                self.ring([shard]).await?;
            }
            n_moved += n_shard;
        }
        Ok(n_moved)
    }

    /// Renews `owner`'s lease in every shard to `lease` from now and stores `info` in
    /// `<p>:workers`; `register` creates the leases. Returns `None` when a lease was lost
    /// (reaped), else the runs an operator asked this worker to cancel since the last heartbeat.
    pub(crate) async fn heartbeat(
        &self,
        owner: &Owner,
        lease: Duration,
        info: &str,
        register: bool,
    ) -> Result<Option<Vec<String>>> {
        let beats = self.keys.each_shard().enumerate().map(|(shard, keys)| {
            let mut invocation = script::HEARTBEAT.prepare_invoke();
            invocation.key(keys.leases()).key(keys.cancels(&owner.id)).key(keys.clock());
            if shard == 0 {
                invocation.key(keys.workers());
            }
            invocation
                .arg(&*owner.id)
                .arg(lease.as_millis().to_string())
                .arg(info)
                .arg(if register { "1" } else { "0" })
                .arg(CANCELS_PER_BEAT)
                .arg(stall_ms(lease));
            let mut conn = self.connection();
            async move { invocation.invoke_async::<redis::Value>(&mut conn).await }
        });
        let mut cancels = Vec::new();
        for reply in futures::future::try_join_all(beats).await? {
            if matches!(reply, redis::Value::Int(0)) {
                return Ok(None);
            }
            let (_, shard_cancels): (i64, Vec<String>) =
                redis::from_redis_value(reply).map_err(|e| QueueError::Protocol(e.to_string()))?;
            cancels.extend(shard_cancels);
        }
        Ok(Some(cancels))
    }

    /// Hands the runs and intake items of workers whose lease expired back to the queue, except
    /// `me` (alive, since it is asking), and nothing while the grace after a Redis stall lasts
    /// (one `lease`); shard by shard. Returns (runs, intake items, workers) handled.
    pub(crate) async fn reap(&self, me: &Owner, lease: Duration) -> Result<(usize, usize, usize)> {
        let mut total = (0, 0, 0);
        for (shard, keys) in self.keys.each_shard().enumerate() {
            let mut invocation = script::REAP.prepare_invoke();
            invocation.key(keys.leases()).key(keys.ready()).key(keys.clock());
            if shard == 0 {
                invocation.key(keys.intake()).key(keys.workers());
            }
            invocation
                .arg(keys.processing_prefix())
                .arg(keys.intake_processing_prefix())
                .arg(REAP_WORKERS)
                .arg(REAP_ITEMS)
                .arg(&*me.id)
                .arg(stall_ms(lease))
                .arg(lease.as_millis().to_string());
            let (runs, items, workers): (usize, usize, usize) =
                invocation.invoke_async(&mut self.connection()).await?;
            if runs > 0 {
                self.ring([shard]).await?;
            }
            total = (total.0 + runs, total.1 + items, total.2.max(workers));
        }
        Ok(total)
    }

    /// Walks [`SWEEP_BATCH`] entries of each shard's `running` index from its rank in
    /// `cursors` (one per shard, grown to the shard count), returning to the queue the runs
    /// nobody holds (their worker's lease is gone and their id is in no processing list).
    /// Moves each cursor on (0 after the end) and returns how many runs went back.
    pub(crate) async fn sweep(&self, cursors: &mut Vec<usize>) -> Result<usize> {
        cursors.resize(self.keys.shards(), 0);
        let mut n_returned = 0;
        for (keys, cursor) in self.keys.each_shard().zip(cursors.iter_mut()) {
            let mut invocation = script::SWEEP.prepare_invoke();
            invocation
                .key(keys.runs_by_state(RunState::Running.as_str()))
                .key(keys.ready())
                .key(keys.leases())
                .arg(keys.run_prefix())
                .arg(keys.processing_prefix())
                .arg(*cursor)
                .arg(SWEEP_BATCH)
                .arg(keys.runs_by_state_prefix());
            let (next, returned): (usize, usize) =
                invocation.invoke_async(&mut self.connection()).await?;
            *cursor = next;
            n_returned += returned;
        }
        Ok(n_returned)
    }

    /// Graceful shutdown's last step: everything `owner` still holds goes back to the queue
    /// (started attempts refunded), and its lease and heartbeat are removed.
    /// Returns (runs, intake items) released.
    pub(crate) async fn release_all(&self, owner: &Owner) -> Result<(usize, usize)> {
        let mut total = (0, 0);
        for (shard, keys) in self.keys.each_shard().enumerate() {
            let mut invocation = script::RELEASE.prepare_invoke();
            invocation.key(keys.processing(&owner.id)).key(keys.ready()).key(keys.leases());
            if shard == 0 {
                invocation
                    .key(keys.intake_processing(&owner.id))
                    .key(keys.intake())
                    .key(keys.workers());
            }
            invocation
                .arg(&*owner.id)
                .arg(keys.run_prefix())
                .arg(keys.runs_by_state_prefix())
                .arg(REAP_ITEMS);
            let (runs, items): (usize, usize) =
                invocation.invoke_async(&mut self.connection()).await?;
            if runs > 0 {
                self.ring([shard]).await?;
            }
            total = (total.0 + runs, total.1 + items);
        }
        Ok(total)
    }
}

/// A gap this long in Redis serving heartbeats and reapers is a stall of Redis: a lease renewed
/// every third of it (the configuration enforces that) cannot expire in a shorter one.
fn stall_ms(lease: Duration) -> String {
    (lease / 2).as_millis().to_string()
}

pub(super) fn parse_started(value: redis::Value, owner: &Owner) -> Result<Fetched> {
    if matches!(value, redis::Value::Int(-1)) {
        return Ok(Fetched::Lost);
    }
    // The run ids were validated when enqueued.
    type Started = (RunId, u32, String, std::collections::HashMap<String, String>, u64);
    let started: Vec<Started> =
        redis::from_redis_value(value).map_err(|e| QueueError::Protocol(e.to_string()))?;
    let jobs = started
        .into_iter()
        .map(|(run_id, attempt, previous, record, fence)| Job {
            run_id,
            attempt,
            fence,
            previous: RunState::parse(&previous),
            owner: owner.clone(),
            cancel: owner.token.child_token(),
            start: StartRead::of(&record),
            record: Some(record),
        })
        .collect();
    Ok(Fetched::Jobs(jobs))
}
