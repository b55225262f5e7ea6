//! Enqueueing runs: create the run record and queue its id, atomically, unless a record with
//! that run id exists. This is the dedupe point for scheduler replicas, repeated CLI calls and
//! intake items. It must not start runs.

use serde::Serialize;

use super::{Queue, QueueError, Result, RunState, intake, script};
use crate::ops::metrics;

/// Pipelined script calls per round trip when enqueueing many runs.
const ENQUEUE_CHUNK: usize = 500;

/// A run to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// Unique id; a second enqueue with the same id is a no-op.
    pub run_id: String,
    /// The user the run is for.
    pub user: String,
    /// The schedule that fired it, if any.
    pub schedule: Option<String>,
    /// Prompt override, if any.
    pub prompt: Option<String>,
    /// Not before this time (unix ms); the run waits in the delayed set until then.
    pub not_before_ms: Option<i64>,
}

impl NewRun {
    /// A run for `user` with a fresh UUIDv7 id and nothing else set.
    pub fn now(user: impl Into<String>) -> Self {
        Self {
            run_id: uuid::Uuid::now_v7().to_string(),
            user: user.into(),
            schedule: None,
            prompt: None,
            not_before_ms: None,
        }
    }

    fn check(&self) -> Result<()> {
        intake::check_run_id(&self.run_id).map_err(QueueError::Invalid)?;
        intake::check_user(&self.user).map_err(QueueError::Invalid)
    }
}

/// What enqueue did with one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    /// The run id.
    pub run_id: String,
    /// The user.
    pub user: String,
    /// True when this call created the run; false when it already existed.
    pub created: bool,
}

impl Queue {
    /// Creates and queues each run whose id is new; `source` (such as `cli`, `intake`,
    /// `schedule`) is stored in the record. Pipelined: one round trip per 500 runs.
    ///
    /// # Errors
    /// [`QueueError::Invalid`] when a run id or user is malformed (nothing is enqueued then);
    /// [`QueueError::Redis`] when Redis fails part-way, in which case some runs may exist:
    /// calling again with the same ids is safe.
    pub async fn enqueue(&self, runs: &[NewRun], source: &str) -> Result<Vec<Enqueued>> {
        for run in runs {
            run.check()?;
        }
        let mut out = Vec::with_capacity(runs.len());
        for chunk in runs.chunks(ENQUEUE_CHUNK) {
            let mut pipe = redis::pipe();
            pipe.load_script(&script::ENQUEUE).ignore();
            for run in chunk {
                pipe.invoke_script(&self.enqueue_invocation(run, source, None));
            }
            let created: Vec<i64> = pipe.query_async(&mut self.connection()).await?;
            out.extend(chunk.iter().zip(created).map(|(run, created)| Enqueued {
                run_id: run.run_id.clone(),
                user: run.user.clone(),
                created: created == 1,
            }));
        }
        let n_created = out.iter().filter(|enqueued| enqueued.created).count();
        metrics::runs_enqueued(source_label(source), n_created);
        Ok(out)
    }

    /// The script call that enqueues `run`; with `ack`, it also removes the intake payload
    /// `ack.1` from list `ack.0` in the same atomic step.
    pub(crate) fn enqueue_invocation(
        &self,
        run: &NewRun,
        source: &str,
        ack: Option<(&str, &str)>,
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
            .arg(&run.run_id)
            .arg(&run.user)
            .arg(run.schedule.as_deref().unwrap_or(""))
            .arg(run.prompt.as_deref().unwrap_or(""))
            .arg(run.not_before_ms.map(|ms| ms.to_string()).unwrap_or_default())
            .arg(source);
        if let Some((list, payload)) = ack {
            invocation.key(list).arg(payload);
        }
        invocation
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
