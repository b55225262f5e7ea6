//! The run webhook (`[webhook]`): once the worker has recorded an attempt's end whose state is
//! one of `webhook.events`, a small task POSTs the run's public summary to `webhook.url`,
//! signed per the Standard Webhooks spec (`records::webhook`), retried with backoff up to
//! `webhook.max_attempts`, then recorded as failed. Its state is on the run record
//! (`webhook_<state>`: `pending`, `delivered` or `failed`, and `webhook_<state>_attempts`) and in
//! `agentcron_webhook_deliveries_total{kind="run",outcome}`.
//!
//! At most [`MAX_DELIVERIES`] messages are under way per worker, so a webhook that is down
//! cannot grow the worker's memory: past that, a message is recorded `failed` at once, with 0
//! attempts. The `pending` mark is written before the first attempt. A worker that stops
//! gracefully waits for its deliveries (within `worker.shutdown_grace`). Each message is in the
//! queue's outbox from the moment its state is recorded (`queue::outbox`) until it is delivered
//! or given up, so one whose worker was killed mid-delivery (or before it began) is taken over
//! by a worker's sweep once its claim ([`Webhooks::claim`]) runs out, and sent again with the
//! same `webhook-id` (stored on the record as `webhook_<state>_id`): at least once.
//! This module must not decide outcomes.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use super::WorkerError;
use crate::backoff::RetryPolicy;
use crate::config::{Config, RedisConn};
use crate::ids::RunId;
use crate::keys::Keys;
use crate::outcome::RunState;
use crate::queue::{Outbox, Queue};
use crate::records::{self, webhook};
use crate::telemetry::metrics;

/// Messages one worker delivers at once; more are recorded as failed without an attempt.
pub(super) const MAX_DELIVERIES: usize = 1_000;
/// Added to the longest a delivery can take to make its claim on the outbox's message.
const CLAIM_MARGIN: Duration = Duration::from_secs(5);
/// Messages one sweep of the outbox takes over at most.
const SWEEP_BATCH: usize = 100;

/// Fields of the run record the summary carries: ids, state, attempts, times and the error's
/// class. Never the prompt, the error text, ids at the vendors, or anything of the transcript.
const SUMMARY_FIELDS: [&str; 12] = [
    "user",
    "schedule",
    "state",
    "attempts",
    "phase",
    "error_class",
    "skip_reason",
    "created_at_ms",
    "started_at_ms",
    "ended_at_ms",
    "next_attempt_at_ms",
    "local_time",
];

/// The worker's run webhook: where to post, and the deliveries under way.
#[derive(Debug)]
pub(super) struct Webhooks {
    http: reqwest::Client,
    url: Url,
    secret: Option<SecretString>,
    events: Vec<String>,
    policy: RetryPolicy,
    /// How long a delivery may take at most: the outbox's claim.
    claim: Duration,
    conn: RedisConn,
    keys: Keys,
    /// Every delivery task; the worker waits for them at shutdown, so none is detached.
    tasks: TaskTracker,
    /// One permit per message under way, [`MAX_DELIVERIES`] in all.
    slots: Arc<Semaphore>,
}

impl Webhooks {
    /// The run webhook of `config`, or `None` when `webhook.url` is not set.
    pub(super) fn new(
        config: &Config,
        http: reqwest::Client,
        conn: RedisConn,
        keys: Keys,
    ) -> Option<Arc<Self>> {
        let hook = &config.webhook;
        let url = hook.url.clone()?;
        let policy =
            RetryPolicy { max_attempts: hook.max_attempts, ..RetryPolicy::from(&config.retry) };
        // Every attempt's request, every pause between them, and a margin.
        let claim =
            config.http.request_timeout * hook.max_attempts + policy.max_elapsed + CLAIM_MARGIN;
        Some(Arc::new(Self {
            http,
            url,
            secret: hook.secret.clone(),
            events: hook.events.clone(),
            policy,
            claim,
            conn,
            keys,
            tasks: TaskTracker::new(),
            slots: Arc::new(Semaphore::new(MAX_DELIVERIES)),
        }))
    }

    /// The run webhook of `config` for the worker of `queue`, with the shared HTTP client of
    /// `[http]`; `None` when `webhook.url` is not set.
    ///
    /// # Errors
    /// [`WorkerError::Webhook`] when the HTTP client cannot be built.
    pub(super) fn from_config(
        config: &Config,
        queue: &Queue,
    ) -> Result<Option<Arc<Self>>, WorkerError> {
        if config.webhook.url.is_none() {
            return Ok(None);
        }
        let http =
            crate::run::http_client(config).map_err(|e| WorkerError::Webhook(e.to_string()))?;
        Ok(Self::new(config, http, queue.connection(), queue.keys().clone()))
    }

    /// What the finish script needs to put this webhook's messages in the outbox.
    pub(super) fn outbox(&self) -> Outbox {
        Outbox::new(&self.events, self.claim)
    }

    /// Starts the delivery for `run_id` that has just been recorded in `state`, when the
    /// configuration asks for it.
    pub(super) fn after(self: &Arc<Self>, run_id: &RunId, state: RunState) {
        if !self.events.iter().any(|event| event == state.as_str()) {
            return;
        }
        self.start(run_id.clone(), state.as_str().to_owned());
    }

    /// Takes over, every `every` until `stop`, the outbox's messages whose worker died or
    /// stalled past their claim, and delivers them again.
    pub(super) async fn sweep(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let queue = Queue::on(self.conn.clone(), self.keys.clone());
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let room = self.slots.available_permits().min(SWEEP_BATCH);
            if room == 0 {
                continue;
            }
            match queue.outbox_take(self.claim, room).await {
                Ok(taken) => {
                    for (run_id, state) in taken {
                        tracing::info!(message = "Delivering a run webhook message whose worker did not finish it.", run_id = %run_id, state = %state);
                        self.start(run_id, state);
                    }
                }
                Err(error) => {
                    tracing::warn!(message = "Could not read the run webhook's outbox.", %error);
                }
            }
        }
    }

    fn start(self: &Arc<Self>, run_id: RunId, state: String) {
        let this = Arc::clone(self);
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            tracing::warn!(message = "Too many run webhook messages under way; this one is recorded as failed.", run_id = %run_id);
            metrics::webhook_delivered("run", "failed");
            self.tasks.spawn(async move { this.record(&run_id, &state, "failed", 0).await });
            return;
        };
        self.tasks.spawn(async move {
            this.deliver(&run_id, &state).await;
            drop(slot);
        });
    }

    /// Waits up to `grace` for the deliveries under way.
    pub(super) async fn drain(&self, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_err() {
            tracing::warn!(
                message = "Run webhook deliveries still under way at shutdown; they stay pending."
            );
        }
    }

    async fn deliver(&self, run_id: &RunId, state: &str) {
        let mut conn = self.conn.clone();
        let Some((body, id)) = self.summary(&mut conn, run_id, state).await else {
            self.done(run_id, state).await;
            return;
        };
        let field = format!("webhook_{state}");
        let id_field = format!("{field}_id");
        let pending = [(field.as_str(), "pending".to_owned()), (id_field.as_str(), id.clone())];
        self.mark(&mut conn, run_id, &pending).await;
        let delivery = webhook::deliver(
            &self.http,
            &self.url,
            self.secret.as_ref(),
            self.policy,
            (&id, &body),
        )
        .await;
        let outcome = if delivery.delivered { "delivered" } else { "failed" };
        metrics::webhook_delivered("run", outcome);
        if let Some(error) = &delivery.error {
            tracing::warn!(message = "Run webhook failed; recorded on the run.", run_id = %run_id, attempts = delivery.attempts, %error);
        }
        self.record(run_id, state, outcome, delivery.attempts).await;
    }

    /// Records how the message for `state` ended: `webhook_<state>` and its attempts; and
    /// takes it out of the outbox.
    async fn record(&self, run_id: &RunId, state: &str, outcome: &str, attempts: u32) {
        let field = format!("webhook_{state}");
        let attempts_field = format!("{field}_attempts");
        let done =
            [(field.as_str(), outcome.to_owned()), (attempts_field.as_str(), attempts.to_string())];
        self.mark(&mut self.conn.clone(), run_id, &done).await;
        self.done(run_id, state).await;
    }

    /// Takes the message out of the outbox; if that fails, a sweep sends it once more later.
    async fn done(&self, run_id: &RunId, state: &str) {
        let queue = Queue::on(self.conn.clone(), self.keys.clone());
        if let Err(error) = queue.outbox_done(run_id, state).await {
            tracing::warn!(message = "Could not take a delivered webhook message out of the outbox; it may be sent again.", run_id = %run_id, %error);
        }
    }

    /// The body: `{"type": "run.<state>", "timestamp", "data": {...}}`, as the spec suggests;
    /// and the message's id: the one an earlier delivery of it stored, else a new one.
    async fn summary(
        &self,
        conn: &mut RedisConn,
        run_id: &RunId,
        state: &str,
    ) -> Option<(Vec<u8>, String)> {
        let record = match records::load_run(conn, &self.keys, run_id).await {
            Ok(Some(record)) => record,
            Ok(None) => return None,
            Err(error) => {
                tracing::warn!(message = "Run webhook skipped: the record could not be read.", run_id = %run_id, %error);
                metrics::webhook_delivered("run", "failed");
                return None;
            }
        };
        let mut data = serde_json::Map::new();
        data.insert("run_id".to_owned(), Value::from(run_id.as_str()));
        for field in SUMMARY_FIELDS {
            if let Some(value) = record.get(field) {
                data.insert(field.to_owned(), Value::from(value));
            }
        }
        let body = json!({
            "type": format!("run.{state}"),
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": data,
        });
        let id = record.get(&format!("webhook_{state}_id")).map(str::to_owned);
        Some((serde_json::to_vec(&body).ok()?, id.unwrap_or_else(webhook::message_id)))
    }

    async fn mark(&self, conn: &mut RedisConn, run_id: &RunId, fields: &[(&str, String)]) {
        if let Err(error) = records::set_run(conn, &self.keys, run_id, None, fields).await {
            tracing::warn!(message = "Run webhook state not recorded.", run_id = %run_id, %error);
        }
    }
}
