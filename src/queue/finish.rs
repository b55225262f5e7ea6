//! Recording how attempts ended: many ends in one script call (group commit, `finish_many.lua`),
//! one call per shard and owner among them, which can also take the next runs into the slots
//! the ends free. Each end is written, or found already written, or found taken over, exactly
//! as if it had been recorded alone: the script handles its ends one by one and only gathers
//! their index moves. It must not decide outcomes: the worker passes a
//! [`Disposition`] the outcome table (`crate::outcome`) already decided.

use std::collections::BTreeMap;

use super::{LIST_CAP, Outbox, Queue, QueueError, Result, script};
use crate::outcome::Disposition;

use super::Owner;
use super::jobs::{Fetched, Job, parse_started};

/// Fields per end in the script's ARGV (`end_args`; `ITEM` in `finish_many.lua`).
#[cfg(test)]
const ITEM_FIELDS: usize = 11;

/// What the finish script found for one end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finished {
    /// Recorded.
    Recorded,
    /// Recorded, though the run's entry in the processing list was gone (an operator's `DEL`,
    /// eviction, a restore): the record still named this worker, so nobody else had started
    /// the run.
    RecordedWithoutEntry,
    /// An earlier try of this finish had recorded it; its reply was lost.
    AlreadyRecorded,
    /// Another worker took the run over (this one lost its lease); nothing was written.
    TakenOver,
}

impl Finished {
    fn from_code(code: i64) -> Self {
        match code {
            1 => Self::Recorded,
            2 => Self::RecordedWithoutEntry,
            3 => Self::AlreadyRecorded,
            _ => Self::TakenOver,
        }
    }
}

/// Runs to take with a batch of ends, into the slots they free (see [`Queue::finish_many`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refill<'a> {
    /// The worker's current owner: only ends of this owner free slots for it.
    pub(crate) owner: &'a Owner,
    /// `[worker] max_attempts`, as a fetch passes it.
    pub(crate) max_attempts: u32,
}

/// What a batch of ends found, and the runs it took.
#[derive(Debug, Default)]
pub(crate) struct Ended {
    /// Per end, in the order given.
    pub(crate) found: Vec<Finished>,
    /// Runs started in the slots the ends freed.
    pub(crate) started: Vec<Job>,
}

impl Queue {
    /// Records the ends of `ends`, in one script call per shard and owner among them (run
    /// concurrently), and returns what was found for each, in the order given. With `refill`,
    /// each call for its owner also takes as many ready runs of its shard as it records ends
    /// (the slots they free), started as a fetch starts them. Safe to call again with the same
    /// ends after an error: an end already recorded is found so (a refill's runs are then in
    /// the owner's processing list, where the reconciler or the reaper finds them).
    pub(crate) async fn finish_many(
        &self,
        ends: &[(&Job, &Disposition)],
        outbox: &Outbox,
        refill: Option<Refill<'_>>,
    ) -> Result<Ended> {
        let mut groups: BTreeMap<(usize, &str), Vec<usize>> = BTreeMap::new();
        for (i, (job, _)) in ends.iter().enumerate() {
            let shard = self.keys.shard_of(&job.run_id);
            groups.entry((shard, &*job.owner.id)).or_default().push(i);
        }
        let calls = groups.into_iter().map(|((shard, owner), positions)| {
            let take = refill.filter(|refill| *refill.owner.id == *owner);
            let mut invocation = script::FINISH_MANY.prepare_invoke();
            let keys = self.keys.shard(shard);
            invocation
                .key(keys.ready())
                .key(keys.processing(owner))
                .key(keys.leases())
                .key(keys.dead())
                .key(keys.events())
                .key(keys.delayed())
                .key(keys.webhook_outbox())
                .arg(owner)
                .arg(if take.is_some() { positions.len() } else { 0 })
                .arg(keys.run_prefix())
                .arg(keys.runs_by_state_prefix())
                .arg(take.map_or(1, |take| take.max_attempts))
                .arg(LIST_CAP)
                .arg(keys.events_cap())
                .arg(&outbox.states)
                .arg(outbox.claim_ms);
            for &i in &positions {
                let (job, disposition) = ends[i];
                end_args(&mut invocation, job, disposition);
            }
            let mut conn = self.connection();
            async move {
                let (codes, started): (Vec<i64>, redis::Value) =
                    invocation.invoke_async(&mut conn).await?;
                if codes.len() != positions.len() {
                    let message =
                        format!("{} finish replies for {} ends", codes.len(), positions.len());
                    return Err(QueueError::Protocol(message));
                }
                let started = match take {
                    Some(take) => match parse_started(started, take.owner)? {
                        Fetched::Jobs(jobs) => jobs,
                        // The fetch loop finds the lost lease too, and rotates it.
                        Fetched::Lost => Vec::new(),
                    },
                    None => Vec::new(),
                };
                Ok::<_, QueueError>((positions, codes, started))
            }
        });
        let mut ended = Ended { found: vec![Finished::TakenOver; ends.len()], started: Vec::new() };
        for (positions, codes, started) in futures::future::try_join_all(calls).await? {
            for (i, code) in positions.into_iter().zip(codes) {
                ended.found[i] = Finished::from_code(code);
            }
            ended.started.extend(started);
        }
        Ok(ended)
    }
}

/// One end's arguments (`ITEM` of them in `finish_many.lua`).
fn end_args(invocation: &mut redis::ScriptInvocation<'_>, job: &Job, disposition: &Disposition) {
    let (error, class, delay_ms) = finish_args(disposition);
    let start = &job.start;
    invocation
        .arg(&job.run_id)
        .arg(disposition.as_str())
        .arg(error)
        .arg(class)
        .arg(delay_ms.to_string())
        .arg(&start.created_at_ms)
        .arg(&start.user)
        .arg(&start.schedule)
        .arg(job.attempt)
        .arg(if start.had_error { "1" } else { "0" })
        .arg(job.fence);
}

/// The finish script's error, class and delay arguments for `disposition`.
fn finish_args(disposition: &Disposition) -> (&str, &'static str, u128) {
    match disposition {
        Disposition::Retry { error, class, after } => (error, class.as_str(), after.as_millis()),
        Disposition::Dead { error, class } => (error, class.as_str(), 0),
        Disposition::Defer { after } => ("", "", after.as_millis()),
        // The class argument carries the reason, the error argument its detail.
        Disposition::Skipped { reason, detail } => (detail, reason, 0),
        _ => ("", "", 0),
    }
}

#[cfg(test)]
mod tests;
