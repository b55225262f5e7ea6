//! The run pipeline as the worker's [`Handler`]: each attempt is one [`run::execute`], and
//! its result becomes the [`Outcome`] the outcome table turns into a queue action. Error text
//! is redacted before it reaches the run record. Every attempt ends here, so this is where the
//! run and phase metrics are recorded.
//!
//! This module must not decide retries (that is `crate::outcome`) or run a phase itself.

use std::time::{Duration, Instant};

use super::{Handler, JobContext};
use crate::ids::RunId;
use crate::outcome::Outcome;
use crate::queue::Queue;
use crate::records::Fields;
use crate::run::{self, Context, Finish, RunError, Timeline};
use crate::telemetry::metrics::{self, ScheduleLabel};

/// A deferred attempt waits at least this long, so a busy user is not polled in a tight loop.
const MIN_DEFER: Duration = Duration::from_millis(500);
/// A run interrupted by Redis trouble resumes after this.
const REDIS_PAUSE: Duration = Duration::from_secs(1);

impl Handler for Context {
    async fn handle(&self, mut job: JobContext) -> Outcome {
        let start = Instant::now();
        let mut timeline = Timeline::default();
        let record = job.record.take().map(Fields);
        let (res, waited) = run::execute_measured(
            self,
            &job.run_id,
            record,
            Some(run::Attempt { fence: job.fence, taken_over: job.resumed }),
            &job.cancel,
            &mut timeline,
        )
        .await;
        metrics::run_overhead(start.elapsed().saturating_sub(waited));
        wake(self, &timeline.woken).await;
        let outcome = outcome_of(self, &job, res);
        let schedules = self.config.schedules.iter().map(|schedule| schedule.name.as_str());
        attempt_ended(&outcome, start, &timeline, schedules);
        outcome
    }
}

/// Wakes the runs that waited for the user's lease this attempt released: moving a run to the
/// ready list is the queue's, on the run's shard. A failure costs them only the old wait (the
/// promoter moves them at their due time), so it is logged, not returned.
async fn wake(ctx: &Context, woken: &[RunId]) {
    if woken.is_empty() {
        return;
    }
    let queue = Queue::on(ctx.redis.clone(), ctx.keys.clone());
    if let Err(error) = queue.wake(woken).await {
        tracing::warn!(message = "Could not wake the runs waiting for the user; they start at their due time.", %error);
    }
}

/// What the handler reports for one attempt's result: the left-hand side of the table.
fn outcome_of(ctx: &Context, job: &JobContext, res: Result<Finish, RunError>) -> Outcome {
    match res {
        Ok(Finish::Succeeded { .. }) => Outcome::Succeeded,
        Ok(Finish::NeedsAuth { .. }) => Outcome::NeedsAuth,
        Ok(Finish::Skipped { reason, detail }) => Outcome::Skipped { reason, detail },
        Err(RunError::Cancelled) => Outcome::Cancelled,
        Err(RunError::Fenced { .. }) => Outcome::Superseded,
        Err(RunError::Busy { retry_after, .. } | RunError::SetupMissing { retry_after, .. }) => {
            Outcome::Defer { after: retry_after.max(MIN_DEFER) }
        }
        // Not the run's fault: the attempt is refunded, and the worker's health logs the
        // outage once rather than a line per run.
        Err(error) if error.is_redis_trouble() => {
            tracing::debug!(message = "Run attempt interrupted by Redis; resuming later.", run_id = %job.run_id, %error);
            Outcome::Defer { after: REDIS_PAUSE }
        }
        Err(error) => {
            let text = ctx.redactor.redact(&error.to_string()).into_owned();
            let class = error.class();
            tracing::warn!(message = "Run attempt failed.", run_id = %job.run_id, attempt = job.attempt, class = %class, error = %text);
            Outcome::Failed { error: text, class, after: error.retry_after() }
        }
    }
}

/// Records an ended attempt: `agentcron_runs_total` labelled with the run's schedule when it is
/// one of the `configured` ones (else `adhoc`: a run from the intake may name any schedule),
/// and the duration of each phase the attempt entered (the last one lasts until now). Deferred
/// attempts never started a run and are not counted.
fn attempt_ended<'c>(
    outcome: &Outcome,
    start: Instant,
    timeline: &Timeline,
    configured: impl IntoIterator<Item = &'c str>,
) {
    let Some(label) = outcome.label() else { return };
    let schedule = ScheduleLabel::of(timeline.schedule.as_deref(), configured);
    metrics::run_finished(schedule, label, start.elapsed());
    let now = Instant::now();
    let entered = &timeline.entered;
    for (i, (phase, at)) in entered.iter().enumerate() {
        let end = entered.get(i + 1).map_or(now, |(_, next)| *next);
        metrics::phase_finished(phase.as_str(), end.saturating_duration_since(*at));
    }
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    /// The `/metrics` text after one succeeded attempt of a run naming `schedule`, with
    /// `morning-triage` the only configured schedule.
    fn rendered(schedule: Option<&str>) -> String {
        let recorder = PrometheusBuilder::new().build_recorder();
        let timeline = Timeline { schedule: schedule.map(str::to_owned), ..Timeline::default() };
        ::metrics::with_local_recorder(&recorder, || {
            attempt_ended(&Outcome::Succeeded, Instant::now(), &timeline, ["morning-triage"]);
        });
        recorder.handle().render()
    }

    /// A run from the intake names any schedule it likes; a label per distinct string would
    /// grow the series without bound. See: issue 22.
    #[test]
    fn a_run_naming_an_unconfigured_schedule_is_labelled_adhoc() {
        let runs_total = |text: &str| {
            text.lines()
                .filter(|line| line.starts_with("agentcron_runs_total{"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        for schedule in [Some("free text from a payload 7f3a"), Some(""), None] {
            let text = rendered(schedule);
            assert_eq!(
                runs_total(&text),
                r#"agentcron_runs_total{schedule="adhoc",outcome="succeeded"} 1"#,
                "{schedule:?}"
            );
        }
        let text = rendered(Some("morning-triage"));
        assert_eq!(
            runs_total(&text),
            r#"agentcron_runs_total{schedule="morning-triage",outcome="succeeded"} 1"#
        );
    }
}
