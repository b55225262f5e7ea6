//! Recording how attempts ended: many ends in one script call (group commit, `finish_many.lua`),
//! one call per shard and owner among them. Each end is written, or found already written, or
//! found taken over, exactly as if it had been recorded alone: the script handles its ends one
//! by one and only gathers their index moves. It must not decide outcomes: the worker passes a
//! [`Disposition`] the outcome table (`crate::outcome`) already decided.

use std::collections::BTreeMap;

use super::{LIST_CAP, Outbox, Queue, QueueError, Result, script};
use crate::outcome::Disposition;

use super::jobs::Job;

/// Fields per end in the script's ARGV (`end_args`; `ITEM` in `finish_many.lua`).
#[cfg(test)]
const ITEM_FIELDS: usize = 10;

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

impl Queue {
    /// Records the ends of `ends`, in one script call per shard and owner among them (run
    /// concurrently), and returns what was found for each, in the order given. Safe to call
    /// again with the same ends after an error: an end already recorded is found so.
    pub(crate) async fn finish_many(
        &self,
        ends: &[(&Job, &Disposition)],
        outbox: &Outbox,
    ) -> Result<Vec<Finished>> {
        let mut groups: BTreeMap<(usize, &str), Vec<usize>> = BTreeMap::new();
        for (i, (job, _)) in ends.iter().enumerate() {
            let shard = self.keys.shard_of(&job.run_id);
            groups.entry((shard, &*job.owner.id)).or_default().push(i);
        }
        let calls = groups.into_iter().map(|((shard, owner), positions)| {
            let mut invocation = script::FINISH_MANY.prepare_invoke();
            let keys = self.keys.shard(shard);
            invocation
                .key(keys.processing(owner))
                .key(keys.ready())
                .key(keys.delayed())
                .key(keys.dead())
                .key(keys.leases())
                .key(keys.events())
                .key(keys.webhook_outbox())
                .arg(owner)
                .arg(keys.run_prefix())
                .arg(keys.runs_by_state_prefix())
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
                let codes: Vec<i64> = invocation.invoke_async(&mut conn).await?;
                if codes.len() != positions.len() {
                    let message =
                        format!("{} finish replies for {} ends", codes.len(), positions.len());
                    return Err(QueueError::Protocol(message));
                }
                Ok::<_, QueueError>((positions, codes))
            }
        });
        let mut found = vec![Finished::TakenOver; ends.len()];
        for (positions, codes) in futures::future::try_join_all(calls).await? {
            for (i, code) in positions.into_iter().zip(codes) {
                found[i] = Finished::from_code(code);
            }
        }
        Ok(found)
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
        .arg(if start.had_error { "1" } else { "0" });
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
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_what_was_found() {
        let found: Vec<Finished> = [1, 2, 3, 0].into_iter().map(Finished::from_code).collect();
        assert_eq!(
            found,
            [
                Finished::Recorded,
                Finished::RecordedWithoutEntry,
                Finished::AlreadyRecorded,
                Finished::TakenOver
            ]
        );
        let lua = include_str!("lua/finish_many.lua");
        assert!(lua.contains(&format!("local ITEM = {ITEM_FIELDS}\n")), "finish_many.lua's ITEM");
    }
}
