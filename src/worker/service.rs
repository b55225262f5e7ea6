//! The tower services apalis runs for each run: [`HandlerService`] calls the [`Handler`] with a
//! soft timeout (cancel the run's token, let it stop at a safe point), and [`FinishLayer`]
//! records how the attempt ended, whatever the layers beneath it did (a panic caught by
//! `catch_panic`, the hard timeout of `timeout`). Layer order, outermost first:
//! concurrency → finish → tracing → timeout (run timeout + slack) → catch-panic → handler.
//!
//! This module must not decide outcomes (that is the outcome table, `crate::outcome`) or touch queue keys.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::error::{AbortError, BoxDynError};
use apalis_core::layers::{Layer, Service};
use apalis_core::task::Task;

use super::acks::Acks;
use super::cancels::InFlight;
use super::webhooks::Webhooks;
use super::{Handler, JobContext};
use crate::backoff::RetryPolicy;
use crate::config::Config;
use crate::ids::UserId;
use crate::outcome::{Attempt, Disposition, ErrorClass, Outcome, RunState, decide};
use crate::queue::{Finished, Job};
use crate::telemetry::metrics;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Calls the handler for one run, cancelling its token at the run timeout.
#[derive(Debug, Clone)]
pub(super) struct HandlerService<H> {
    handler: H,
    run_timeout: Duration,
    max_attempts: u32,
}

impl<H> HandlerService<H> {
    pub(super) fn new(handler: H, run_timeout: Duration, max_attempts: u32) -> Self {
        Self { handler, run_timeout, max_attempts }
    }
}

impl<H: Handler> Service<Task<Job>> for HandlerService<H> {
    type Response = Outcome;
    type Error = Infallible;
    type Future = BoxFuture<Result<Outcome, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task<Job>) -> Self::Future {
        let mut job = task.args;
        let context = JobContext {
            run_id: job.run_id.clone(),
            attempt: job.attempt,
            fence: job.fence,
            max_attempts: self.max_attempts,
            worker_id: job.owner.id.to_string(),
            resumed: job.previous == Some(RunState::Running),
            cancel: job.cancel.clone(),
            record: job.record.take(),
        };
        let handler = self.handler.clone();
        let run_timeout = self.run_timeout;
        // Only the token is needed from here on, not the whole job for the whole run.
        let cancel = job.cancel;
        Box::pin(async move {
            let handling = handler.handle(context);
            tokio::pin!(handling);
            // Cancel safety: `handling` is pinned outside the select and awaited again after
            // the timeout arm, so the timeout only cancels the token, never the future.
            let outcome = tokio::select! {
                outcome = &mut handling => return Ok(outcome),
                () = tokio::time::sleep(run_timeout) => {
                    cancel.cancel();
                    handling.await
                }
            };
            Ok(timed_out(outcome, run_timeout))
        })
    }
}

/// A run stopped by its timeout is a transient failure, unless it finished anyway.
fn timed_out(outcome: Outcome, run_timeout: Duration) -> Outcome {
    match outcome {
        Outcome::Failed { class, .. } if !class.is_retryable() => outcome,
        Outcome::Cancelled | Outcome::Failed { .. } => {
            let error = format!("run timed out after {}", humantime::format_duration(run_timeout));
            Outcome::failed(error, ErrorClass::Timeout)
        }
        other => other,
    }
}

/// Records attempts' ends (through the group commit, `acks.rs`); shared by every in-flight run
/// of one worker. Each run is in `runs` from the moment apalis hands it over until its end is
/// recorded: an operator's cancel request reaches its token there, and the reconciler does not
/// mistake a run whose end is still being written for one nobody executes.
#[derive(Debug)]
pub(super) struct Finisher {
    acks: Acks,
    max_attempts: u32,
    policy: RetryPolicy,
    in_flight: Arc<crate::queue::Slots>,
    runs: InFlight,
    /// The run webhook, when configured: told of each recorded end.
    webhooks: Option<Arc<Webhooks>>,
}

impl Finisher {
    pub(super) fn new(
        acks: Acks,
        config: &Config,
        (in_flight, runs): (Arc<crate::queue::Slots>, InFlight),
        webhooks: Option<Arc<Webhooks>>,
    ) -> Self {
        let policy = RetryPolicy::from(&config.retry);
        let max_attempts = config.worker.max_attempts;
        Self { acks, max_attempts, policy, in_flight, runs, webhooks }
    }

    /// Decides and records the end of `job`'s attempt. Redis is retried until it takes it: an
    /// attempt's end must not be lost to an outage (the run keeps its concurrency slot
    /// meanwhile, which is the backpressure we want).
    async fn finish(&self, job: Job, res: Result<Outcome, BoxDynError>) {
        let outcome = outcome_of(res);
        let stopped = job.owner.token.is_cancelled();
        let attempt = Attempt { number: job.attempt, max: self.max_attempts, stopped };
        let disposition = decide(outcome, attempt, &self.policy);
        let finished = self.acks.record(&job, &disposition).await;
        let n_in_flight = self.in_flight.free_one();
        metrics::jobs_in_flight(n_in_flight);
        let label = if finished == Finished::TakenOver { "lost" } else { disposition.as_str() };
        metrics::job_finished(label);
        // Only an end this worker recorded is a transition; a deferral or release is not one.
        let recorded = matches!(finished, Finished::Recorded | Finished::RecordedWithoutEntry);
        if let Some(webhooks) = self.webhooks.as_ref().filter(|_| recorded)
            && disposition.is_outcome()
        {
            webhooks.after(&job.run_id, disposition.run_state());
        }
        log(&job, &disposition, finished);
    }
}

/// The catch-panic layer's conversion: a panic becomes an [`AbortError`] with its message.
pub(super) fn on_panic(panic: &Box<dyn std::any::Any + Send>) -> AbortError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_owned());
    AbortError::new(PanicError(message))
}

/// The message of a handler's panic.
#[derive(Debug, thiserror::Error)]
#[error("handler panicked: {0}")]
pub(super) struct PanicError(String);

fn outcome_of(res: Result<Outcome, BoxDynError>) -> Outcome {
    match res {
        Ok(outcome) => outcome,
        // A panic is retried: bounded by max_attempts, and it may depend on remote state.
        Err(error) if error.downcast_ref::<AbortError>().is_some() => {
            Outcome::failed(error.to_string(), ErrorClass::Panic)
        }
        // Only the hard timeout layer fails otherwise: the handler ignored its cancellation.
        Err(error) => Outcome::failed(
            format!("run did not stop after cancellation: {error}"),
            ErrorClass::Timeout,
        ),
    }
}

fn log(job: &Job, disposition: &Disposition, finished: Finished) {
    let (run_id, attempt) = (job.run_id.as_str(), job.attempt);
    match (finished, disposition) {
        (Finished::TakenOver, _) => tracing::warn!(
            message = "Run was taken over by another worker after this one lost its lease; result dropped.",
            run_id,
            attempt
        ),
        (Finished::AlreadyRecorded, _) => tracing::info!(
            message = "Run's end was already recorded by an earlier try whose reply was lost.",
            run_id,
            attempt
        ),
        (Finished::RecordedWithoutEntry, _) => tracing::warn!(
            message = "Run's queue entry was missing (deleted or evicted); its end is recorded anyway, since no other worker had it.",
            run_id,
            attempt,
            outcome = disposition.as_str()
        ),
        (_, Disposition::Retry { error, class, after }) => tracing::warn!(
            message = "Run failed; will retry.", run_id, attempt, error_class = %class, error = %error,
            retry_in_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX)
        ),
        (_, Disposition::Dead { error, class }) => tracing::error!(
            message = "Run is dead.", run_id, attempt, error_class = %class, error = %error
        ),
        (_, other) => {
            tracing::info!(message = "Run finished.", run_id, attempt, outcome = other.as_str())
        }
    }
}

/// Wraps the lower layers; see [`Finisher`].
#[derive(Debug, Clone)]
pub(super) struct FinishLayer {
    finisher: Arc<Finisher>,
}

impl FinishLayer {
    pub(super) fn new(finisher: Finisher) -> Self {
        Self { finisher: Arc::new(finisher) }
    }
}

impl<S> Layer<S> for FinishLayer {
    type Service = FinishService<S>;

    fn layer(&self, inner: S) -> FinishService<S> {
        FinishService { inner, finisher: Arc::clone(&self.finisher) }
    }
}

/// See [`FinishLayer`].
#[derive(Debug, Clone)]
pub(super) struct FinishService<S> {
    inner: S,
    finisher: Arc<Finisher>,
}

impl<S> Service<Task<Job>> for FinishService<S>
where
    S: Service<Task<Job>, Response = Outcome>,
    S::Error: Into<BoxDynError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxDynError;
    type Future = BoxFuture<Result<(), BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxDynError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut task: Task<Job>) -> Self::Future {
        // The copy kept for the attempt's end goes without the record, which only the handler
        // reads: no second copy lives as long as the run.
        let record = task.args.record.take();
        let job = task.args.clone();
        task.args.record = record;
        // The start script read the record; its `user` was validated at enqueue.
        let user = task.args.record.as_ref().and_then(|record| record.get("user"));
        let user = user.map(|user| UserId::trusted(user.as_str()));
        let registered = self.finisher.runs.enter(&job.run_id, user, job.cancel.clone());
        // Only now: in between, the reconciler sees it in one of the two sets.
        self.finisher.in_flight.started(&job.run_id);
        let running = self.inner.call(task);
        let finisher = Arc::clone(&self.finisher);
        Box::pin(async move {
            let _registered = registered;
            let res = running.await.map_err(Into::into);
            // Boxed: inline, its state would be part of every in-flight run's for the run's
            // whole life, though it exists only at the end.
            Box::pin(finisher.finish(job, res)).await;
            Ok(())
        })
    }
}
