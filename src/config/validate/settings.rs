//! The plain settings' checks and defaults: transcripts, retention, notices, the run webhook.
//! Split from `validate.rs` only to keep each file readable; the same rules apply (every
//! problem collected, each with its key).

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::checker::Checker;
use super::{DAY, MINUTE, SECOND};
use crate::config::raw::RawConfig;
use crate::config::{
    BudgetConfig, ModelPrice, NoticesConfig, RetentionConfig, TranscriptsConfig, WebhookConfig,
};

pub(super) fn transcripts(check: &mut Checker<'_>, raw: &RawConfig) -> TranscriptsConfig {
    let t = &raw.transcripts;
    let dir = t.dir.clone().unwrap_or_else(|| "./transcripts".to_owned());
    if dir.trim().is_empty() {
        check.problem("transcripts.dir", "must not be empty");
    }
    TranscriptsConfig {
        dir: PathBuf::from(dir),
        redis_maxlen: check.int("transcripts.redis_maxlen", t.redis_maxlen, 10_000, 1..=10_000_000),
        ttl: check.duration("transcripts.ttl", t.ttl.as_deref(), 7 * DAY, MINUTE..=365 * DAY),
        max_run_mb: check.int("transcripts.max_run_mb", t.max_run_mb, 64, 1..=4096),
        result_max_kb: check.int("transcripts.result_max_kb", t.result_max_kb, 16, 1..=1024),
    }
}

pub(super) fn retention(check: &mut Checker<'_>, raw: &RawConfig) -> RetentionConfig {
    let r = &raw.retention;
    RetentionConfig {
        runs: check.duration("retention.runs", r.runs.as_deref(), 30 * DAY, SECOND..=3650 * DAY),
        transcripts: check.duration(
            "retention.transcripts",
            r.transcripts.as_deref(),
            30 * DAY,
            DAY..=3650 * DAY,
        ),
        transcripts_max_mb: check.int(
            "retention.transcripts_max_mb",
            r.transcripts_max_mb,
            10_240,
            1..=100_000_000,
        ),
        every: check.duration(
            "retention.every",
            r.every.as_deref(),
            MINUTE,
            Duration::from_millis(100)..=DAY,
        ),
        usage: check.duration("retention.usage", r.usage.as_deref(), 90 * DAY, DAY..=3650 * DAY),
    }
}

pub(super) fn notices(check: &mut Checker<'_>, raw: &RawConfig) -> NoticesConfig {
    let n = &raw.notices;
    let webhook_url = n.webhook_url.as_deref().filter(|url| !url.is_empty());
    NoticesConfig {
        webhook_url: webhook_url
            .map(|url| check.url("notices.webhook_url", Some(url), &["https", "http"], "")),
        webhook_secret: n.webhook_secret.clone().filter(|s| !s.is_empty()).map(SecretString::from),
    }
}

/// The states a run webhook may be sent for: those a recorded attempt's end can reach.
const WEBHOOK_EVENTS: [&str; 6] =
    ["succeeded", "failed", "needs_auth", "dead", "cancelled", "skipped"];

pub(super) fn webhook(check: &mut Checker<'_>, raw: &RawConfig) -> WebhookConfig {
    let w = &raw.webhook;
    let url = w.url.as_deref().filter(|url| !url.is_empty());
    let events = w.events.clone().unwrap_or_else(|| {
        ["succeeded", "needs_auth", "dead", "cancelled", "skipped"].map(str::to_owned).to_vec()
    });
    for event in &events {
        if !WEBHOOK_EVENTS.contains(&event.as_str()) {
            let known = WEBHOOK_EVENTS.join(", ");
            check.problem("webhook.events", format!("`{event}` is not one of {known}"));
        }
    }
    WebhookConfig {
        url: url.map(|url| check.url("webhook.url", Some(url), &["https", "http"], "")),
        secret: w.secret.clone().filter(|s| !s.is_empty()).map(SecretString::from),
        events,
        max_attempts: check.int("webhook.max_attempts", w.max_attempts, 8, 1..=100),
    }
}

/// A token budget at `key`: `None` when unset or 0 (no budget).
pub(super) fn tokens(check: &mut Checker<'_>, key: &str, value: Option<i64>) -> Option<u64> {
    let tokens: u64 = check.int(key, value, 0, 0..=i64::MAX);
    (tokens > 0).then_some(tokens)
}

pub(super) fn budget(check: &mut Checker<'_>, raw: &RawConfig) -> BudgetConfig {
    let b = &raw.budget;
    BudgetConfig {
        daily_tokens: tokens(check, "budget.daily_tokens", b.daily_tokens),
        monthly_tokens: tokens(check, "budget.monthly_tokens", b.monthly_tokens),
    }
}

/// USD per million tokens: no price is above this (the dearest model lists 75).
const MAX_PRICE: f64 = 10_000.0;

pub(super) fn prices(check: &mut Checker<'_>, raw: &RawConfig) -> Vec<ModelPrice> {
    let mut prices = Vec::new();
    for (i, p) in raw.price.iter().enumerate() {
        let key = |field: &str| format!("price[{i}].{field}");
        let mut number = |field: &str, value: Option<f64>| {
            let number = check.float(&key(field), value, 0.0..=MAX_PRICE);
            if value.is_none() && matches!(field, "input" | "output") {
                check.problem(&key(field), "missing: every [[price]] needs input and output");
            }
            number
        };
        let input = number("input", p.input);
        let output = number("output", p.output);
        let cache_write = number("cache_write", p.cache_write);
        let cache_read = number("cache_read", p.cache_read);
        let model = p.model.clone().unwrap_or_default();
        if model.trim().is_empty() {
            check.problem(
                &key("model"),
                "missing: every [[price]] needs a model (or a prefix of its id)",
            );
        }
        if let (Some(input), Some(output)) = (input, output) {
            prices.push(ModelPrice {
                model,
                input,
                output,
                cache_write: cache_write.unwrap_or(input * 1.25),
                cache_read: cache_read.unwrap_or(input / 10.0),
            });
        }
    }
    prices
}
