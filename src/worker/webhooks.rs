//! The run webhook (`[webhook]`): once the worker has recorded an attempt's end whose state is
//! one of `webhook.events`, a small task POSTs the run's public summary to `webhook.url`,
//! signed per the Standard Webhooks spec (`records::webhook`), retried with backoff up to
//! `webhook.max_attempts`, then recorded as failed. Its state is on the run record
//! (`webhook_<state>`: `pending`, `delivered` or `failed`, and `webhook_<state>_attempts`) and in
//! `agentcron_webhook_deliveries_total{kind="run",outcome}`.
//!
//! At most [`MAX_DELIVERIES`] messages are under way per worker, so a webhook that is down
//! cannot grow the worker's memory: past that, a message is recorded `failed` at once, with 0
//! attempts. The `pending` mark is written before the first attempt. A worker that stops gracefully
//! waits for its deliveries (within `worker.shutdown_grace`); one killed mid-delivery leaves the
//! mark, and that delivery is not resumed. This module must not decide outcomes.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use url::Url;

use super::WorkerError;
use crate::backoff::RetryPolicy;
use crate::config::{Config, RedisConn};
use crate::ids::RunId;
use crate::keys::Keys;
use crate::outcome::RunState;
use crate::queue::Queue;
use crate::records::{self, webhook};
use crate::telemetry::metrics;

/// Messages one worker delivers at once; more are recorded as failed without an attempt.
pub(super) const MAX_DELIVERIES: usize = 1_000;

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
        Some(Arc::new(Self {
            http,
            url,
            secret: hook.secret.clone(),
            events: hook.events.clone(),
            policy,
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

    /// Starts the delivery for `run_id` that has just been recorded in `state`, when the
    /// configuration asks for it.
    pub(super) fn after(self: &Arc<Self>, run_id: &RunId, state: RunState) {
        if !self.events.iter().any(|event| event == state.as_str()) {
            return;
        }
        let (this, run_id) = (Arc::clone(self), run_id.clone());
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            tracing::warn!(message = "Too many run webhook messages under way; this one is recorded as failed.", run_id = %run_id);
            metrics::webhook_delivered("run", "failed");
            self.tasks.spawn(async move { this.record(&run_id, state, "failed", 0).await });
            return;
        };
        self.tasks.spawn(async move {
            this.deliver(&run_id, state).await;
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

    async fn deliver(&self, run_id: &RunId, state: RunState) {
        let mut conn = self.conn.clone();
        let Some(body) = self.summary(&mut conn, run_id, state).await else { return };
        let id = webhook::message_id();
        let field = format!("webhook_{}", state.as_str());
        let pending = [(field.as_str(), "pending".to_owned())];
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

    /// Records how the message for `state` ended: `webhook_<state>` and its attempts.
    async fn record(&self, run_id: &RunId, state: RunState, outcome: &str, attempts: u32) {
        let field = format!("webhook_{}", state.as_str());
        let attempts_field = format!("{field}_attempts");
        let done =
            [(field.as_str(), outcome.to_owned()), (attempts_field.as_str(), attempts.to_string())];
        self.mark(&mut self.conn.clone(), run_id, &done).await;
    }

    /// The body: `{"type": "run.<state>", "timestamp", "data": {...}}`, as the spec suggests.
    async fn summary(
        &self,
        conn: &mut RedisConn,
        run_id: &RunId,
        state: RunState,
    ) -> Option<Vec<u8>> {
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
            "type": format!("run.{}", state.as_str()),
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": data,
        });
        serde_json::to_vec(&body).ok()
    }

    async fn mark(&self, conn: &mut RedisConn, run_id: &RunId, fields: &[(&str, String)]) {
        if let Err(error) = records::set_run(conn, &self.keys, run_id, None, fields).await {
            tracing::warn!(message = "Run webhook state not recorded.", run_id = %run_id, %error);
        }
    }
}
