//! The run pipeline as the worker's [`Handler`]: each attempt is one [`run::execute`], and
//! its result becomes the [`Outcome`] the outcome table turns into a queue action. Error text
//! is redacted before it reaches the run record. Every attempt ends here, so this is where the
//! run and phase metrics are recorded.
//!
//! This module must not decide retries (that is `crate::outcome`) or run a phase itself.

use std::time::{Duration, Instant};

use super::{Handler, JobContext};
use crate::outcome::Outcome;
use crate::records::Fields;
use crate::run::{self, Context, Finish, RunError, Timeline};
use crate::telemetry::metrics;

/// A deferred attempt waits at least this long, so a busy user is not polled in a tight loop.
const MIN_DEFER: Duration = Duration::from_millis(500);

impl Handler for Context {
    async fn handle(&self, mut job: JobContext) -> Outcome {
        let start = Instant::now();
        let mut timeline = Timeline::default();
        let record = job.record.take().map(Fields);
        let (res, waited) = run::execute_measured(
            self,
            &job.run_id,
            record,
            Some(job.fence),
            &job.cancel,
            &mut timeline,
        )
        .await;
        metrics::run_overhead(start.elapsed().saturating_sub(waited));
        let outcome = outcome_of(self, &job, res);
        attempt_ended(&outcome, start, &timeline);
        outcome
    }
}

/// What the handler reports for one attempt's result: the left-hand side of the table.
fn outcome_of(ctx: &Context, job: &JobContext, res: Result<Finish, RunError>) -> Outcome {
    match res {
        Ok(Finish::Succeeded { .. }) => Outcome::Succeeded,
        Ok(Finish::NeedsAuth { .. }) => Outcome::NeedsAuth,
        Err(RunError::Cancelled) => Outcome::Cancelled,
        Err(RunError::Fenced { .. }) => Outcome::Superseded,
        Err(RunError::Busy { retry_after, .. } | RunError::SetupMissing { retry_after, .. }) => {
            Outcome::Defer { after: retry_after.max(MIN_DEFER) }
        }
        Err(error) => {
            let text = ctx.redactor.redact(&error.to_string()).into_owned();
            let class = error.class();
            tracing::warn!(message = "Run attempt failed.", run_id = %job.run_id, attempt = job.attempt, class = %class, error = %text);
            Outcome::Failed { error: text, class, after: error.retry_after() }
        }
    }
}

/// Records an ended attempt: `agentcron_runs_total` labelled with the run's schedule, and the
/// duration of each phase the attempt entered (the last one lasts until now). Deferred
/// attempts never started a run and are not counted.
fn attempt_ended(outcome: &Outcome, start: Instant, timeline: &Timeline) {
    let Some(label) = outcome.label() else { return };
    metrics::run_finished(timeline.schedule.as_deref().unwrap_or(""), label, start.elapsed());
    let now = Instant::now();
    let entered = &timeline.entered;
    for (i, (phase, at)) in entered.iter().enumerate() {
        let end = entered.get(i + 1).map_or(now, |(_, next)| *next);
        metrics::phase_finished(phase.as_str(), end.saturating_duration_since(*at));
    }
}
