//! One attempt's way through the phases: each phase marker (`phase`, `<phase>_at_ms`) is
//! written with the facts the phase before established, at a safe point where cancellation
//! and test fail points can stop the run. This module must not call the remote APIs itself;
//! it awaits the phase's work beside its write. With traces on, each phase is a span
//! ([`span`]) below the attempt's.

use tokio_util::sync::CancellationToken;

use super::{Context, Facts, FailPoint, Run, RunError, Timeline, fence, hook};
use crate::records::{self, Phase, now_ms};

/// One attempt's way through the phases: where it persists them and what it notes.
pub(super) struct Progress<'a> {
    pub(super) ctx: &'a Context,
    pub(super) run: &'a Run,
    pub(super) cancel: &'a CancellationToken,
    pub(super) timeline: &'a mut Timeline,
    /// This attempt's trace id, until the first marker writes it on the record.
    pub(super) trace_id: Option<String>,
}

/// The span of `phase`, named after it; a disabled span when traces are off.
pub(super) fn span(phase: Phase) -> tracing::Span {
    if !crate::telemetry::trace::enabled() {
        return tracing::Span::none();
    }
    tracing::info_span!("phase", otel.name = phase.as_str(), agentcron.phase = phase.as_str())
}

impl Progress<'_> {
    /// A safe point: persists `facts` (what the phase before established), then, unless
    /// cancellation or a fail point stops the run here, enters `phase`, in the same write.
    pub(super) async fn enter(&mut self, phase: Phase, facts: Facts) -> Result<(), RunError> {
        self.enter_with(phase, facts, std::future::ready(Ok(()))).await
    }

    /// [`Progress::enter`], with the phase's `work` started beside the write rather than after
    /// it: the write's round trip hides behind the phase's first remote call instead of adding
    /// to the run's time. Both are awaited before the next phase. For phases whose start needs
    /// nothing durable first: a crash between the two loses at most a marker, or a session id
    /// that the request mark lets a later attempt find again. The write goes on its own handle
    /// of the worker's connection, since `work` may hold the pipeline's.
    pub(super) async fn enter_with<T>(
        &mut self,
        phase: Phase,
        mut facts: Facts,
        work: impl Future<Output = Result<T, RunError>>,
    ) -> Result<T, RunError> {
        let mut writer = self.ctx.redis.clone();
        let (keys, run_id) = (&self.ctx.keys, &self.run.id);
        let stop = if self.cancel.is_cancelled() {
            Some(RunError::Cancelled)
        } else {
            hook(self.ctx, FailPoint::Before(phase)).err()
        };
        if let Some(stop) = stop {
            if !facts.is_empty()
                && !records::set_run(&mut writer, keys, run_id, self.run.fence, &facts).await?
            {
                return Err(fence::fenced(self.run, None));
            }
            return Err(stop);
        }
        facts.push(("phase", phase.as_str().to_owned()));
        facts.push((phase.at_field(), now_ms().to_string()));
        self.timeline.entered.push((phase, std::time::Instant::now()));
        tracing::debug!(message = "Phase entered.", stage = phase.as_str());
        let fence = self.run.fence;
        let entered =
            records::lifecycle::enter_phase(&mut writer, keys, run_id, fence, phase, &facts);
        let (written, done) = tokio::join!(entered, work);
        if !written? {
            return Err(fence::fenced(self.run, None));
        }
        done
    }
}
