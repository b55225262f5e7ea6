//! The intake's payload format: `parse` turns one payload into the run it asks for, or the
//! [`Rejection`] that says why not. Pure, so that every reason is unit-tested; the queue side
//! (`queue::intake`) takes the payloads and files the rejections.
//!
//! It must not talk to Redis.

use serde_json::{Map, Value};

use super::MAX_PAYLOAD_BYTES;
use crate::ids::{RunId, UserId};
use crate::queue::NewRun;

const FIELDS: [&str; 5] = ["user", "prompt", "schedule", "run_id", "not_before"];
/// Furthest ahead a `not_before` may be: 365 days. Later is almost always a unit or date
/// mistake, and such a run would wait in the delayed set, out of sight, for years.
pub(crate) const MAX_NOT_BEFORE_AHEAD_MS: i64 = 365 * 24 * 3600 * 1000;

/// An intake payload that was accepted, as the run it becomes.
pub type IntakeItem = NewRun;

/// Why a payload was rejected: a stable `reason` (also the metric label) and a detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// One of `too_large`, `not_utf8`, `not_json`, `not_object`, `unknown_field`,
    /// `missing_user`, `empty_user`, `invalid_user` (characters or spaces a user id must not
    /// have), `user_too_long` (longer than a vendor takes), `wrong_type`, `invalid_run_id`,
    /// `bad_not_before`, `not_before_too_far` (more than 365 days ahead).
    pub reason: &'static str,
    /// What exactly is wrong, for the operator.
    pub detail: String,
}

fn reject(reason: &'static str, detail: impl Into<String>) -> Rejection {
    Rejection { reason, detail: detail.into() }
}

/// `payload` (accepted by [`parse`]) with `run_id` added, when it named none; `None` when it
/// did, or is not the object `parse` accepted.
pub(crate) fn stamped(payload: &[u8], run_id: &RunId) -> Option<Vec<u8>> {
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(payload) else {
        return None;
    };
    if object.contains_key("run_id") {
        return None;
    }
    object.insert("run_id".to_owned(), Value::String(run_id.as_str().to_owned()));
    serde_json::to_vec(&object).ok()
}

/// Parses one intake payload received at `now_ms` (unix ms). Pure, so that every rejection
/// reason is unit-tested.
///
/// # Errors
/// The [`Rejection`] naming the first problem found.
pub(crate) fn parse(payload: &[u8], now_ms: i64) -> std::result::Result<IntakeItem, Rejection> {
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
        not_before_ms: not_before(object.get("not_before"), now_ms)?,
        instructions: None,
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

/// `not_before`: an RFC 3339 time, or unix seconds as an integer; at most
/// [`MAX_NOT_BEFORE_AHEAD_MS`] after `now_ms`.
fn not_before(value: Option<&Value>, now_ms: i64) -> std::result::Result<Option<i64>, Rejection> {
    // Years 1970..=9999 in unix seconds: anything else is a unit mistake (such as milliseconds).
    const MAX_SECONDS: i64 = 253_402_300_799;
    let bad = |detail: String| reject("bad_not_before", detail);
    let at_ms = match value {
        None => return Ok(None),
        Some(Value::String(text)) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|time| time.timestamp_millis())
            .map_err(|e| bad(format!("`{text}` is not an RFC 3339 time: {e}")))?,
        Some(Value::Number(number)) => match number.as_i64() {
            Some(seconds) if (0..=MAX_SECONDS).contains(&seconds) => seconds * 1000,
            _ => return Err(bad(format!("{number} is not a unix time in whole seconds"))),
        },
        Some(other) => {
            let detail =
                format!("expected an RFC 3339 string or unix seconds, got {}", kind(other));
            return Err(bad(detail));
        }
    };
    let limit_ms = now_ms.saturating_add(MAX_NOT_BEFORE_AHEAD_MS);
    if at_ms > limit_ms {
        let detail = format!(
            "{} is more than 365 days ahead (latest {})",
            rfc3339(at_ms),
            rfc3339(limit_ms)
        );
        return Err(reject("not_before_too_far", detail));
    }
    Ok(Some(at_ms))
}

/// `at_ms` as an RFC 3339 UTC time, to the second.
fn rfc3339(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms).map_or_else(
        || format!("{at_ms} ms"),
        |time| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    /// When the tests' payloads arrive: 2029-06-01T00:00:00Z.
    const NOW_MS: i64 = 1_874_966_400_000;

    fn check(payload: &str, expect: std::result::Result<(), &str>) {
        let res =
            parse(payload.as_bytes(), NOW_MS).map(|_| ()).map_err(|rejection| rejection.reason);
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
        // At most 365 days ahead: 2030-06-01T00:00:00Z is the last time accepted.
        check(r#"{"user":"a","not_before":"2030-06-01T00:00:00Z"}"#, Ok(()));
        check(r#"{"user":"a","not_before":"2030-06-01T02:00:00+02:00"}"#, Ok(()));
        check(r#"{"user":"a","not_before":1906502400}"#, Ok(()));
        check(r#"{"user":"a","not_before":"2030-06-01T00:00:01Z"}"#, Err("not_before_too_far"));
        check(r#"{"user":"a","not_before":1906502401}"#, Err("not_before_too_far"));
        check(r#"{"user":"a","not_before":"9999-12-31T23:59:59Z"}"#, Err("not_before_too_far"));
        check(r#"{"user":"a","not_before":253402300799}"#, Err("not_before_too_far"));
        let big = format!(r#"{{"user":"a","prompt":"{}"}}"#, "x".repeat(MAX_PAYLOAD_BYTES));
        check(&big, Err("too_large"));
        assert_eq!(parse(b"\xff\xfe", NOW_MS).map_err(|r| r.reason), Err("not_utf8"));
    }

    #[test]
    fn accepted_payload_becomes_a_run() {
        let run =
            parse(br#"{"user":"a","run_id":"r-1","not_before":"1970-01-01T00:00:01Z"}"#, NOW_MS)
                .unwrap();
        assert_eq!(run.run_id, "r-1");
        assert_eq!(run.not_before_ms, Some(1000));
        let generated = parse(br#"{"user":"a"}"#, NOW_MS).unwrap();
        assert!(uuid::Uuid::parse_str(generated.run_id.as_str()).is_ok());
    }

    #[test]
    fn a_not_before_too_far_ahead_says_when_the_limit_is() {
        let payload = br#"{"user":"a","not_before":"2031-01-01T00:00:00Z"}"#;
        let rejection = parse(payload, NOW_MS).unwrap_err();
        assert_eq!(rejection.reason, "not_before_too_far");
        assert_eq!(
            rejection.detail,
            "2031-01-01T00:00:00Z is more than 365 days ahead (latest 2030-06-01T00:00:00Z)"
        );
    }
}
