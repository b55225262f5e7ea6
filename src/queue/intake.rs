//! The redis-cli intake: operators `LPUSH <p>:intake '{"user":"alice@example.com"}'` and a
//! worker turns each payload into a run, or files it under `<p>:rejected` with the reason.
//!
//! Bounded before reading: the take script (`intake_take.lua`) measures each payload inside
//! Redis and never returns one over [`MAX_PAYLOAD_BYTES`]; it files it as `too_large` with its
//! size and first bytes, so a producer pushing 20 MB payloads costs the worker nothing. A batch
//! also stops at [`MAX_BATCH_BYTES`], so what a worker holds of the intake at once is bounded
//! in bytes, not only in count.
//!
//! Reliable: a payload is moved atomically to the worker's `<p>:intake:processing:<worker>` list
//! first, and leaves it only inside the same script that creates the run (or files the
//! rejection). A worker killed at any point leaves the payload in its processing list, and the
//! reaper hands it back to the intake; the run id dedupes a payload that names one, and one
//! without a run id cannot be enqueued twice because enqueue and removal are one script.
//!
//! On a sharded queue the run's shard is another slot than the intake's, so those are three
//! idempotent steps instead: the payload is first stamped in place with the run id it was
//! given (`intake_stamp.lua`), then the run is created in its shard, then the payload is
//! removed. A kill between any two leaves a stamped payload, which names its run id: handled
//! again, it finds the run created, and creates nothing.
//!
//! Owns the payload format (`payload.rs`) and its validation. It must not start runs.

mod payload;

use serde_json::json;

use self::payload::stamped;
pub use self::payload::{IntakeItem, Rejection};
pub(crate) use self::payload::{MAX_NOT_BEFORE_AHEAD_MS, parse};
use super::{LIST_CAP, NewRun, Queue, Result, script};
use crate::telemetry::metrics;

/// Largest accepted payload, checked in Redis before the payload is read.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Most payload bytes one batch holds: a take stops before the payload that would pass it.
/// At least [`MAX_PAYLOAD_BYTES`], so that any accepted payload fits a batch of its own.
pub(crate) const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Bytes of a rejected payload kept in its `<p>:rejected` entry.
const KEPT_PAYLOAD_BYTES: usize = 1024;
/// Items handed back to the intake per call of the return script.
const RETURN_CHUNK: usize = 1000;

/// What one take moved into the worker's processing list, and what it refused.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    /// The payloads to handle, each at most [`MAX_PAYLOAD_BYTES`], together at most
    /// [`MAX_BATCH_BYTES`].
    pub(crate) payloads: Vec<Vec<u8>>,
    /// How many payloads were over the limit: filed as `too_large`, never read out of Redis.
    pub(crate) too_large: usize,
    /// Payloads still waiting in the intake after this take.
    pub(crate) left: u64,
}

/// What one intake batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct IntakeReport {
    pub(crate) created: usize,
    pub(crate) duplicates: usize,
    pub(crate) rejected: usize,
}

impl Queue {
    /// Moves up to `n` payloads from the intake into `worker`'s intake processing list, at most
    /// [`MAX_BATCH_BYTES`] of them; payloads over [`MAX_PAYLOAD_BYTES`] are filed under
    /// `<p>:rejected` as `too_large` inside the same script, and only counted here.
    pub(crate) async fn intake_take(&self, worker: &str, n: usize) -> Result<Taken> {
        let keys = &self.keys;
        let mut invocation = script::INTAKE_TAKE.prepare_invoke();
        invocation
            .key(keys.intake())
            .key(keys.intake_processing(worker))
            .key(keys.rejected())
            .arg(n)
            .arg(MAX_PAYLOAD_BYTES)
            .arg(MAX_BATCH_BYTES)
            .arg(KEPT_PAYLOAD_BYTES)
            .arg(LIST_CAP);
        let (sizes, left, payloads): (Vec<u64>, u64, Vec<Vec<u8>>) =
            invocation.invoke_async(&mut self.connection()).await?;
        for size in &sizes {
            metrics::intake_rejected("too_large");
            tracing::warn!(
                message = "Intake payload rejected.",
                reason = "too_large",
                detail = %format!("{size} bytes, limit {MAX_PAYLOAD_BYTES}")
            );
        }
        Ok(Taken { payloads, too_large: sizes.len(), left })
    }

    /// Hands everything in `worker`'s intake processing list (left by a failed round) back to
    /// the intake, where the next take reads it first, bounded like any payload.
    pub(crate) async fn intake_return(&self, worker: &str) -> Result<usize> {
        let mut n_returned = 0;
        loop {
            let mut invocation = script::INTAKE_RETURN.prepare_invoke();
            invocation.key(self.keys.intake_processing(worker)).key(self.keys.intake());
            let n: usize =
                invocation.arg(RETURN_CHUNK).invoke_async(&mut self.connection()).await?;
            n_returned += n;
            if n < RETURN_CHUNK {
                return Ok(n_returned);
            }
        }
    }

    /// Turns each taken payload into a run or a rejection, in one pipelined round trip (three on
    /// a sharded queue).
    pub(crate) async fn intake_handle(
        &self,
        worker: &str,
        payloads: &[Vec<u8>],
    ) -> Result<IntakeReport> {
        if self.keys.shards() > 1 {
            return self.intake_handle_sharded(worker, payloads).await;
        }
        let processing = self.keys.intake_processing(worker);
        let mut pipe = redis::pipe();
        pipe.load_script(&script::ENQUEUE).ignore().load_script(&script::INTAKE_REJECT).ignore();
        let mut accepted = Vec::with_capacity(payloads.len());
        let now_ms = super::unix_ms(std::time::SystemTime::now());
        for payload in payloads {
            match parse(payload, now_ms) {
                Ok(run) => {
                    accepted.push(true);
                    pipe.invoke_script(&self.intake_accept(&run, &processing, payload));
                }
                Err(rejection) => {
                    accepted.push(false);
                    log_rejection(&rejection);
                    pipe.invoke_script(&self.intake_reject(&rejection, &processing, payload));
                }
            }
        }
        let replies: Vec<i64> = pipe.query_async(&mut self.connection()).await?;
        let mut report = IntakeReport::default();
        for (is_accepted, reply) in accepted.into_iter().zip(replies) {
            match (is_accepted, reply) {
                (false, _) => report.rejected += 1,
                (true, 1) => report.created += 1,
                (true, _) => report.duplicates += 1,
            }
        }
        metrics::runs_enqueued("intake", report.created);
        Ok(report)
    }

    /// [`Queue::intake_handle`] on a sharded queue: stamp, create, acknowledge.
    async fn intake_handle_sharded(
        &self,
        worker: &str,
        payloads: &[Vec<u8>],
    ) -> Result<IntakeReport> {
        let processing = self.keys.intake_processing(worker);
        let now_ms = super::unix_ms(std::time::SystemTime::now());
        let mut report = IntakeReport::default();
        let mut pipe = redis::pipe();
        pipe.load_script(&script::INTAKE_STAMP).ignore();
        pipe.load_script(&script::INTAKE_REJECT).ignore();
        // Each accepted run, the payload that acknowledges it, and whether it was stamped.
        let mut accepted = Vec::new();
        for payload in payloads {
            match parse(payload, now_ms) {
                Ok(run) => {
                    let stamp = stamped(payload, &run.run_id);
                    if let Some(stamp) = &stamp {
                        let mut invocation = script::INTAKE_STAMP.prepare_invoke();
                        invocation.key(&processing).arg(payload.as_slice()).arg(stamp.as_slice());
                        pipe.invoke_script(&invocation);
                    }
                    let is_stamped = stamp.is_some();
                    accepted.push((run, stamp.unwrap_or_else(|| payload.clone()), is_stamped));
                }
                Err(rejection) => {
                    report.rejected += 1;
                    log_rejection(&rejection);
                    pipe.invoke_script(&self.intake_reject(&rejection, &processing, payload));
                    pipe.ignore();
                }
            }
        }
        let stamps: Vec<i64> = pipe.query_async(&mut self.connection()).await?;
        let mut stamps = stamps.into_iter();
        let mut runs = Vec::with_capacity(accepted.len());
        let mut acks = redis::pipe();
        for (run, ack, is_stamped) in accepted {
            // A payload gone from the list went back to the intake: its run is not ours to make.
            if !is_stamped || stamps.next() == Some(1) {
                runs.push(run);
                acks.lrem(&processing, 1, ack).ignore();
            }
        }
        let enqueued = self.enqueue(&runs, "intake").await?;
        acks.query_async::<()>(&mut self.connection()).await?;
        report.created = enqueued.iter().filter(|run| run.created).count();
        report.duplicates = enqueued.len() - report.created;
        Ok(report)
    }

    fn intake_accept(
        &self,
        run: &NewRun,
        processing: &str,
        raw: &[u8],
    ) -> redis::ScriptInvocation<'static> {
        self.enqueue_acked_invocation(run, "intake", processing, raw)
    }

    fn intake_reject(
        &self,
        rejection: &Rejection,
        processing: &str,
        raw: &[u8],
    ) -> redis::ScriptInvocation<'static> {
        let kept = &raw[..raw.len().min(KEPT_PAYLOAD_BYTES)];
        let entry = json!({
            "reason": rejection.reason,
            "detail": rejection.detail,
            "payload": String::from_utf8_lossy(kept),
            "payload_bytes": raw.len(),
            "at_ms": super::unix_ms(std::time::SystemTime::now()),
        });
        let mut invocation = script::INTAKE_REJECT.prepare_invoke();
        invocation
            .key(processing)
            .key(self.keys.rejected())
            .arg(raw)
            .arg(entry.to_string())
            .arg(LIST_CAP);
        invocation
    }
}

fn log_rejection(rejection: &Rejection) {
    metrics::intake_rejected(rejection.reason);
    tracing::warn!(
        message = "Intake payload rejected.",
        reason = rejection.reason,
        detail = %rejection.detail
    );
}
