//! Enqueueing runs: create the run record and queue its id, atomically, unless a record with
//! that run id exists. This is the dedupe point for scheduler replicas, repeated CLI calls and
//! intake items. It must not start runs.

use serde::Serialize;

use super::{Queue, Result, script};
use crate::ids::{RunId, UserId};
use crate::outcome::RunState;
use crate::telemetry::metrics;

/// Runs per script call (and round trip) when enqueueing many.
const ENQUEUE_CHUNK: usize = 500;

/// A run to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// Unique id; a second enqueue with the same id is a no-op.
    pub run_id: RunId,
    /// The user the run is for.
    pub user: UserId,
    /// The schedule that fired it, if any.
    pub schedule: Option<String>,
    /// Prompt override, if any.
    pub prompt: Option<String>,
    /// Not before this time (unix ms); the run waits in the delayed set until then.
    pub not_before_ms: Option<i64>,
    /// What a scheduled run was given at its tick; `None` for runs enqueued by hand.
    pub instructions: Option<Instructions>,
}

/// What the scheduler gave a run at its tick, so that the worker uses only what the run
/// record says: the zone the run's local time is in, that local time, and whether `prompt`
/// is final (rendered) or still a template (a value was missing at the tick).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instructions {
    /// IANA zone of the run's local time (the user's, or the schedule's).
    pub timezone: String,
    /// The fire time in that zone, RFC 3339 with its offset.
    pub local_time: String,
    /// Whether the prompt was rendered at the tick.
    pub rendered: bool,
}

impl NewRun {
    /// A run for `user` with a fresh UUIDv7 id and nothing else set.
    pub fn now(user: UserId) -> Self {
        Self {
            run_id: RunId::generate(),
            user,
            schedule: None,
            prompt: None,
            not_before_ms: None,
            instructions: None,
        }
    }
}

/// What enqueue did with one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    /// The run id.
    pub run_id: RunId,
    /// The user.
    pub user: UserId,
    /// True when this call created the run; false when it already existed.
    pub created: bool,
}

impl Queue {
    /// Creates and queues each run whose id is new; `source` (such as `cli`, `intake`,
    /// `schedule`) is stored in the record. One script call (and round trip) per 500 runs.
    ///
    /// The ids were validated when the runs were built ([`RunId`], [`UserId`]).
    ///
    /// # Errors
    /// [`super::QueueError::Redis`] when Redis fails part-way, in which case some runs may exist:
    /// calling again with the same ids is safe.
    pub async fn enqueue(&self, runs: &[NewRun], source: &str) -> Result<Vec<Enqueued>> {
        let by_shard = self.by_shard(runs.iter().map(|run| &run.run_id));
        // The shards at once: on a cluster they are on different masters.
        let shards = by_shard.into_iter().map(|(shard, positions)| async move {
            let keys = self.keys.shard(shard);
            let mut conn = self.connection();
            let mut created = Vec::with_capacity(positions.len());
            for chunk in positions.chunks(ENQUEUE_CHUNK) {
                let chunk_runs: Vec<&NewRun> = chunk.iter().map(|&i| &runs[i]).collect();
                let replies: Vec<i64> = enqueue_many_invocation(&keys, &chunk_runs, source)
                    .invoke_async(&mut conn)
                    .await?;
                created.extend(chunk.iter().zip(replies).map(|(&i, reply)| (i, reply == 1)));
            }
            if created.iter().any(|(_, created)| *created) {
                self.ring([shard]).await?;
            }
            Ok::<_, super::QueueError>(created)
        });
        let mut created = vec![false; runs.len()];
        for shard in futures::future::try_join_all(shards).await? {
            for (i, was_created) in shard {
                created[i] = was_created;
            }
        }
        let out: Vec<Enqueued> = runs
            .iter()
            .zip(created)
            .map(|(run, created)| Enqueued {
                run_id: run.run_id.clone(),
                user: run.user.clone(),
                created,
            })
            .collect();
        let n_created = out.iter().filter(|enqueued| enqueued.created).count();
        metrics::runs_enqueued(source_label(source), n_created);
        Ok(out)
    }

    /// The script call that enqueues `run` and, in the same atomic step, removes the intake
    /// payload `raw` it came from from the list `processing`: one shard only, where the run and
    /// the intake share the control slot.
    pub(crate) fn enqueue_acked_invocation(
        &self,
        run: &NewRun,
        source: &str,
        processing: &str,
        raw: &[u8],
    ) -> redis::ScriptInvocation<'static> {
        let keys = &self.keys;
        let mut invocation = script::ENQUEUE.prepare_invoke();
        invocation
            .key(keys.run(&run.run_id))
            .key(keys.runs())
            .key(keys.runs_by_user(&run.user))
            .key(keys.runs_by_state(RunState::Queued.as_str()))
            .key(keys.ready())
            .key(keys.delayed())
            .key(processing)
            .key(keys.events());
        run_args(&mut invocation, run);
        invocation.arg(source).arg(raw).arg(keys.events_cap());
        invocation
    }
}

/// One script call that enqueues all of `runs`, which are all of the shard of `keys`.
fn enqueue_many_invocation(
    keys: &crate::keys::Keys,
    runs: &[&NewRun],
    source: &str,
) -> redis::ScriptInvocation<'static> {
    let mut invocation = script::ENQUEUE_MANY.prepare_invoke();
    invocation
        .key(keys.runs())
        .key(keys.runs_by_state(RunState::Queued.as_str()))
        .key(keys.ready())
        .key(keys.delayed())
        .key(keys.events())
        .arg(keys.run_prefix())
        .arg(keys.runs_by_user_prefix())
        .arg(source)
        .arg(keys.events_cap());
    for run in runs {
        run_args(&mut invocation, run);
    }
    invocation
}

/// The six script arguments that describe a run, in the order `create.lua` takes them:
/// run_id, user, schedule or '', prompt or '', not_before_ms or '', instructions or ''.
fn run_args(invocation: &mut redis::ScriptInvocation<'static>, run: &NewRun) {
    invocation
        .arg(&run.run_id)
        .arg(&run.user)
        .arg(run.schedule.as_deref().unwrap_or(""))
        .arg(run.prompt.as_deref().unwrap_or(""))
        .arg(run.not_before_ms.map(|ms| ms.to_string()).unwrap_or_default())
        .arg(run.instructions.as_ref().map(Instructions::encode).unwrap_or_default());
}

impl Instructions {
    /// `<timezone> <local_time> <0|1>`: neither a zone name nor an RFC 3339 time holds a
    /// space, so the script splits it without a JSON decoder.
    fn encode(&self) -> String {
        format!("{} {} {}", self.timezone, self.local_time, u8::from(self.rendered))
    }
}

/// Metric labels must be static: known sources keep their name, anything else is `other`.
fn source_label(source: &str) -> &'static str {
    match source {
        "cli" => "cli",
        "intake" => "intake",
        "schedule" => "schedule",
        "test" => "test",
        _ => "other",
    }
}
