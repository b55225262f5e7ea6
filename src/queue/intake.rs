//! The redis-cli intake: operators `LPUSH <p>:intake '{"user":"alice@example.com"}'` and a
//! worker turns each payload into a run, or files it under `<p>:rejected` with the reason.
//!
//! Reliable: a payload is moved atomically to the worker's `<p>:intake:processing:<worker>` list
//! first, and leaves it only inside the same script that creates the run (or files the
//! rejection). A worker killed at any point leaves the payload in its processing list, and the
//! reaper hands it back to the intake; the run id dedupes a payload that names one, and one
//! without a run id cannot be enqueued twice because enqueue and removal are one script.
//!
//! Owns the payload format and its validation. It must not start runs.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use serde_json::{Map, Value, json};

use super::{LIST_CAP, NewRun, Queue, Result, script};
use crate::ids::{RunId, UserId};
use crate::telemetry::metrics;

/// Largest accepted payload.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Bytes of a rejected payload kept in its `<p>:rejected` entry.
const KEPT_PAYLOAD_BYTES: usize = 1024;
const FIELDS: [&str; 5] = ["user", "prompt", "schedule", "run_id", "not_before"];

/// An intake payload that was accepted, as the run it becomes.
pub type IntakeItem = NewRun;

/// Why a payload was rejected: a stable `reason` (also the metric label) and a detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// One of `too_large`, `not_utf8`, `not_json`, `not_object`, `unknown_field`,
    /// `missing_user`, `empty_user`, `invalid_user` (characters or spaces a user id must not
    /// have), `user_too_long` (longer than a vendor takes), `wrong_type`, `invalid_run_id`,
    /// `bad_not_before`.
    pub reason: &'static str,
    /// What exactly is wrong, for the operator.
    pub detail: String,
}

fn reject(reason: &'static str, detail: impl Into<String>) -> Rejection {
    Rejection { reason, detail: detail.into() }
}

/// Parses one intake payload. Pure, so that every rejection reason is unit-tested.
///
/// # Errors
/// The [`Rejection`] naming the first problem found.
pub(crate) fn parse(payload: &[u8]) -> std::result::Result<IntakeItem, Rejection> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        let detail = format!("{} bytes, limit {MAX_PAYLOAD_BYTES}", payload.len());
        return Err(reject("too_large", detail));
    }
    let text = std::str::from_utf8(payload).map_err(|e| reject("not_utf8", e.to_string()))?;
    let value: Value = serde_json::from_str(text).map_err(|e| reject("not_json", e.to_string()))?;
    let Value::Object(object) = value else {
        return Err(reject("not_object", format!("expected a JSON object, got {}", kind(&value))));
    };
    if let Some(field) = object.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        let detail = format!("unknown field `{field}`; expected one of {}", FIELDS.join(", "));
        return Err(reject("unknown_field", detail));
    }
    let user = match object.get("user") {
        None => return Err(reject("missing_user", "`user` is required")),
        Some(Value::String(user)) => user.clone(),
        Some(other) => return Err(wrong_type("user", "a string", other)),
    };
    if user.trim().is_empty() {
        return Err(reject("empty_user", "`user` is empty"));
    }
    let user = UserId::try_from(user).map_err(|error| {
        let reason = if error.is_too_long() { "user_too_long" } else { "invalid_user" };
        reject(reason, error.to_string())
    })?;
    let run_id = match optional_string(&object, "run_id")? {
        Some(run_id) => {
            RunId::try_from(run_id).map_err(|e| reject("invalid_run_id", e.to_string()))?
        }
        None => RunId::generate(),
    };
    Ok(NewRun {
        run_id,
        user,
        schedule: optional_string(&object, "schedule")?,
        prompt: optional_string(&object, "prompt")?,
        not_before_ms: not_before(object.get("not_before"))?,
    })
}

fn optional_string(
    object: &Map<String, Value>,
    field: &'static str,
) -> std::result::Result<Option<String>, Rejection> {
    match object.get(field) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(wrong_type(field, "a string", other)),
    }
}

/// `not_before`: an RFC 3339 time, or unix seconds as an integer.
fn not_before(value: Option<&Value>) -> std::result::Result<Option<i64>, Rejection> {
    // Years 1970..=9999 in unix seconds: anything else is a unit mistake (such as milliseconds).
    const MAX_SECONDS: i64 = 253_402_300_799;
    let bad = |detail: String| reject("bad_not_before", detail);
    match value {
        None => Ok(None),
        Some(Value::String(text)) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|time| Some(time.timestamp_millis()))
            .map_err(|e| bad(format!("`{text}` is not an RFC 3339 time: {e}"))),
        Some(Value::Number(number)) => match number.as_i64() {
            Some(seconds) if (0..=MAX_SECONDS).contains(&seconds) => Ok(Some(seconds * 1000)),
            _ => Err(bad(format!("{number} is not a unix time in whole seconds"))),
        },
        Some(other) => {
            Err(bad(format!("expected an RFC 3339 string or unix seconds, got {}", kind(other))))
        }
    }
}

fn wrong_type(field: &str, expected: &str, got: &Value) -> Rejection {
    reject("wrong_type", format!("`{field}` must be {expected}, got {}", kind(got)))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What one intake batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct IntakeReport {
    pub(crate) created: usize,
    pub(crate) duplicates: usize,
    pub(crate) rejected: usize,
}

impl Queue {
    /// Moves up to `n` payloads from the intake into `worker`'s intake processing list.
    pub(crate) async fn intake_take(&self, worker: &str, n: usize) -> Result<Vec<Vec<u8>>> {
        let keys = &self.keys;
        let mut invocation = script::INTAKE_TAKE.prepare_invoke();
        invocation.key(keys.intake()).key(keys.intake_processing(worker)).arg(n);
        Ok(invocation.invoke_async(&mut self.connection()).await?)
    }

    /// Up to `n` payloads already in `worker`'s intake processing list (left by a failed round).
    pub(crate) async fn intake_pending(&self, worker: &str, n: usize) -> Result<Vec<Vec<u8>>> {
        let last = isize::try_from(n).unwrap_or(isize::MAX) - 1;
        Ok(self.connection().lrange(self.keys.intake_processing(worker), 0, last).await?)
    }

    /// Waits up to `block` for one payload and moves it (`BLMOVE`) on the blocking connection.
    pub(crate) async fn intake_wait(
        &self,
        conn: &mut MultiplexedConnection,
        worker: &str,
        block: Duration,
    ) -> Result<Option<Vec<u8>>> {
        let keys = &self.keys;
        let (from, to) = (keys.intake(), keys.intake_processing(worker));
        let (right, left) = (redis::Direction::Right, redis::Direction::Left);
        Ok(conn.blmove(from, to, right, left, block.as_secs_f64()).await?)
    }

    /// Turns each taken payload into a run or a rejection, in one pipelined round trip.
    pub(crate) async fn intake_handle(
        &self,
        worker: &str,
        payloads: &[Vec<u8>],
    ) -> Result<IntakeReport> {
        let processing = self.keys.intake_processing(worker);
        let mut pipe = redis::pipe();
        pipe.load_script(&script::ENQUEUE).ignore().load_script(&script::INTAKE_REJECT).ignore();
        let mut accepted = Vec::with_capacity(payloads.len());
        for payload in payloads {
            match parse(payload) {
                Ok(run) => {
                    accepted.push(true);
                    pipe.invoke_script(&self.intake_accept(&run, &processing, payload));
                }
                Err(rejection) => {
                    accepted.push(false);
                    metrics::intake_rejected(rejection.reason);
                    tracing::warn!(
                        message = "Intake payload rejected.",
                        reason = rejection.reason,
                        detail = %rejection.detail
                    );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(payload: &str, expect: std::result::Result<(), &str>) {
        let res = parse(payload.as_bytes()).map(|_| ()).map_err(|rejection| rejection.reason);
        assert_eq!(res, expect, "{payload}");
    }

    #[test]
    fn every_rejection_reason() {
        check(r#"{"user":"alice@example.com"}"#, Ok(()));
        check(
            r#"{"user":"a","prompt":"p","schedule":"s","run_id":"r-1","not_before":"2030-01-01T00:00:00Z"}"#,
            Ok(()),
        );
        check(r#"{"user":"a","not_before":1900000000}"#, Ok(()));
        check("hello", Err("not_json"));
        check(r#"{"user":"a""#, Err("not_json"));
        check(r#"["alice"]"#, Err("not_object"));
        check(r#""alice""#, Err("not_object"));
        check(r#"{}"#, Err("missing_user"));
        check(r#"{"user":""}"#, Err("empty_user"));
        check(r#"{"user":"   "}"#, Err("empty_user"));
        check(r#"{"user":" a"}"#, Err("invalid_user"));
        check(r#"{"user":"a\u0007"}"#, Err("invalid_user"));
        check(r#"{"user":42}"#, Err("wrong_type"));
        check(&format!(r#"{{"user":"{}"}}"#, "u".repeat(100)), Ok(()));
        check(&format!(r#"{{"user":"{}"}}"#, "u".repeat(101)), Err("user_too_long"));
        check(r#"{"user":"a","prompt":7}"#, Err("wrong_type"));
        check(r#"{"user":"a","schedule":null}"#, Err("wrong_type"));
        check(r#"{"user":"a","run_id":["x"]}"#, Err("wrong_type"));
        check(r#"{"user":"a","colour":"red"}"#, Err("unknown_field"));
        check(r#"{"user":"a","run_id":""}"#, Err("invalid_run_id"));
        check(r#"{"user":"a","run_id":"has space"}"#, Err("invalid_run_id"));
        check(r#"{"user":"a","not_before":"tomorrow"}"#, Err("bad_not_before"));
        check(r#"{"user":"a","not_before":1900000000000}"#, Err("bad_not_before"));
        check(r#"{"user":"a","not_before":-5}"#, Err("bad_not_before"));
        check(r#"{"user":"a","not_before":1.5}"#, Err("bad_not_before"));
        check(r#"{"user":"a","not_before":true}"#, Err("bad_not_before"));
        let big = format!(r#"{{"user":"a","prompt":"{}"}}"#, "x".repeat(MAX_PAYLOAD_BYTES));
        check(&big, Err("too_large"));
        assert_eq!(parse(b"\xff\xfe").map_err(|r| r.reason), Err("not_utf8"));
    }

    #[test]
    fn accepted_payload_becomes_a_run() {
        let run =
            parse(br#"{"user":"a","run_id":"r-1","not_before":"1970-01-01T00:00:01Z"}"#).unwrap();
        assert_eq!(run.run_id, "r-1");
        assert_eq!(run.not_before_ms, Some(1000));
        let generated = parse(br#"{"user":"a"}"#).unwrap();
        assert!(uuid::Uuid::parse_str(generated.run_id.as_str()).is_ok());
    }
}
