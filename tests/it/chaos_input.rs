//! Chaos, bad input: more than 30 malformed intake payloads (huge, binary, invalid UTF-8,
//! 10,000-deep nesting, wrong types for every field, control characters, injection-like text,
//! duplicate run ids, impossible times) interleaved with valid ones through the real intake
//! list and run pipeline: each bad one is filed under `<p>:rejected` with its reason, the valid
//! ones (injection-looking users included: they are legal ids and must simply run) succeed,
//! and the worker is still up for a final valid payload.
//!
//! Property tests: the intake parser through the public path (payloads pushed to a worker's
//! intake; `queue::intake::parse` is crate-private) classifies every generated payload as its
//! construction says; `config::load` never panics on TOML-ish text and every problem names a
//! key or `(file)`; `safe_name` is injective, bounded and never a path, and `file_path` stays
//! inside the transcripts directory.

use std::path::{Component, Path};
use std::time::Duration;

use agentcron::config::{self, Env};
use agentcron::records::transcript::{file_path, safe_name};
use agentcron::worker;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use redis::AsyncCommands;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::app::{TestApp, spawn_app};
use crate::common::worker::{self as test_worker, TestHandler};
use crate::common::{TestRedis, poll_until};

/// Every reason the parser documents.
const REASONS: [&str; 13] = [
    "too_large",
    "not_utf8",
    "not_json",
    "not_object",
    "unknown_field",
    "missing_user",
    "empty_user",
    "invalid_user",
    "user_too_long",
    "wrong_type",
    "invalid_run_id",
    "bad_not_before",
    "not_before_too_far",
];

fn nested(depth: usize, open: &str, close: &str) -> Vec<u8> {
    format!("{}{}", open.repeat(depth), close.repeat(depth)).into_bytes()
}

/// (payload, rejection reason), malformed ones only.
fn bad_payloads() -> Vec<(Vec<u8>, &'static str)> {
    let s = |text: &str| text.as_bytes().to_vec();
    let huge = format!(r#"{{"user":"huge@x.test","prompt":"{}"}}"#, "x".repeat(70_000));
    let padded = format!(r#"{{"user":"pad@x.test"}}{}"#, " ".repeat(64 * 1024));
    vec![
        (huge.into_bytes(), "too_large"),
        (padded.into_bytes(), "too_large"),
        (b"\x00\x01\x02\xff\xfe".to_vec(), "not_utf8"),
        (b"{\"user\":\"\xc3(\"}".to_vec(), "not_utf8"),
        (b"\xef\xbb\xbf{\"user\":\"bom@x.test\"}".to_vec(), "not_json"),
        (nested(10_000, "[", "]"), "not_json"),
        (
            [s(r#"{"user":"deep@x.test","prompt":"#), nested(9_000, r#"{"a":"#, "}")].concat(),
            "not_json",
        ),
        (s(""), "not_json"),
        (s("{'user':'single@x.test'}"), "not_json"),
        (s(r#"{"user":"trail@x.test"} trailing"#), "not_json"),
        (s(r#"{"user":"a@x.test"}{"user":"b@x.test"}"#), "not_json"),
        (s(r#"{"user":"nan@x.test","not_before":NaN}"#), "not_json"),
        (b"{\"user\":\"raw\x01ctl@x.test\"}".to_vec(), "not_json"),
        (s("[]"), "not_object"),
        (s("null"), "not_object"),
        (s("42"), "not_object"),
        (s(r#""just a string""#), "not_object"),
        (s(r#"{"user":"uf@x.test","__proto__":{}}"#), "unknown_field"),
        (s(r#"{"user":"uf@x.test","User":"other@x.test"}"#), "unknown_field"),
        (s(r#"{"user":"uf@x.test","eval":"redis.call('FLUSHALL')"}"#), "unknown_field"),
        (s(r#"{"prompt":"no user at all"}"#), "missing_user"),
        (s(r#"{"user":""}"#), "empty_user"),
        (s(r#"{"user":"\u00a0\t "}"#), "empty_user"),
        (s(r#"{"user":null}"#), "wrong_type"),
        (s(r#"{"user":true}"#), "wrong_type"),
        (s(r#"{"user":["list@x.test"]}"#), "wrong_type"),
        (s(r#"{"user":{"id":"obj@x.test"}}"#), "wrong_type"),
        (s(r#"{"user":"wt@x.test","prompt":{"text":"x"}}"#), "wrong_type"),
        (s(r#"{"user":"wt@x.test","schedule":5}"#), "wrong_type"),
        (s(r#"{"user":"wt@x.test","run_id":7}"#), "wrong_type"),
        (s(r#"{"user":"a\r\nDEL *"}"#), "invalid_user"),
        (s(r#"{"user":"nul\u0000byte@x.test"}"#), "invalid_user"),
        (s(r#"{"user":"\u001b[31mred@x.test"}"#), "invalid_user"),
        (s(r#"{"user":"tab\there@x.test"}"#), "invalid_user"),
        (s(r#"{"user":" padded@x.test "}"#), "invalid_user"),
        (format!(r#"{{"user":"{}"}}"#, "y".repeat(321)).into_bytes(), "user_too_long"),
        (s(r#"{"user":"ri@x.test","run_id":""}"#), "invalid_run_id"),
        (s(r#"{"user":"ri@x.test","run_id":"a\nb"}"#), "invalid_run_id"),
        (s(r#"{"user":"ri@x.test","run_id":"two words"}"#), "invalid_run_id"),
        (
            format!(r#"{{"user":"ri@x.test","run_id":"{}"}}"#, "r".repeat(257)).into_bytes(),
            "invalid_run_id",
        ),
        (s(r#"{"user":"nb@x.test","not_before":null}"#), "bad_not_before"),
        (s(r#"{"user":"nb@x.test","not_before":[1]}"#), "bad_not_before"),
        (s(r#"{"user":"nb@x.test","not_before":"yesterday"}"#), "bad_not_before"),
        (s(r#"{"user":"nb@x.test","not_before":"2030-13-01T00:00:00Z"}"#), "bad_not_before"),
        (s(r#"{"user":"nb@x.test","not_before":-1}"#), "bad_not_before"),
        (s(r#"{"user":"nb@x.test","not_before":99999999999999999999}"#), "bad_not_before"),
        (s(r#"{"user":"nb@x.test","not_before":1900000000000}"#), "bad_not_before"),
        (s(r#"{"user":"nb@x.test","not_before":"9999-12-31T23:59:59Z"}"#), "not_before_too_far"),
        (s(r#"{"user":"nb@x.test","not_before":253402300799}"#), "not_before_too_far"),
    ]
}

/// (payload, run id) of valid payloads: plain, injection-looking users and prompts, times in
/// the far past, and a duplicate run id (for another user) that must not create a second run.
fn valid_payloads() -> Vec<(String, &'static str)> {
    let valid = |user: &str, run_id: &'static str, extra: Value| {
        let mut payload = json!({"user": user, "run_id": run_id});
        for (key, value) in extra.as_object().unwrap() {
            payload[key] = value.clone();
        }
        (payload.to_string(), run_id)
    };
    vec![
        valid("plain@x.test", "in-plain", json!({})),
        valid("redis.call('FLUSHALL')", "in-lua", json!({})),
        valid("'; DROP TABLE runs; --", "in-sql", json!({})),
        valid("$(rm -rf /)", "in-shell", json!({})),
        valid("*", "in-star", json!({})),
        valid("{p}:run:in-plain", "in-keyish", json!({})),
        valid(
            "crlf@x.test",
            "in-crlf-prompt",
            json!({"prompt": "Hi.\r\nFLUSHALL\r\n*1\r\n$8\r\nFLUSHALL"}),
        ),
        valid("old@x.test", "in-past", json!({"not_before": "1970-01-01T00:00:01Z"})),
        valid("zero@x.test", "in-zero", json!({"not_before": 0})),
        valid("dup@x.test", "in-dup", json!({})),
        valid("intruder@x.test", "in-dup", json!({})),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_intake_is_rejected_with_reasons_while_valid_runs_succeed() {
    let app = spawn_app().await;
    let config = app.config.clone();
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn({
        let (ctx, shutdown) = (app.ctx.clone(), shutdown.clone());
        async move { worker::run(&config, ctx, shutdown).await }
    });
    let bad = bad_payloads();
    let valid = valid_payloads();
    assert!(bad.len() >= 30, "{} malformed payloads", bad.len());
    // A not_before 300 days ahead is valid (up to 365 are): the run waits in the delayed set.
    let in_300_days = chrono::Utc::now() + chrono::Duration::days(300);
    let future = json!({"user": "future@x.test", "run_id": "in-future", "not_before": in_300_days.to_rfc3339()});

    let mut conn = app.redis.conn.clone();
    let intake = app.ctx.keys.intake();
    let mut valid_iter = valid.iter();
    for (i, (payload, _)) in bad.iter().enumerate() {
        let _: i64 = conn.lpush(&intake, payload).await.unwrap();
        if i % 4 == 0
            && let Some((payload, _)) = valid_iter.next()
        {
            let _: i64 = conn.lpush(&intake, payload).await.unwrap();
        }
    }
    for (payload, _) in valid_iter {
        let _: i64 = conn.lpush(&intake, payload).await.unwrap();
    }
    let _: i64 = conn.lpush(&intake, future.to_string()).await.unwrap();

    let rejected_key = app.ctx.keys.rejected();
    poll_until("every payload handled", Duration::from_secs(60), || async {
        let mut conn = app.redis.conn.clone();
        let n: usize = conn.llen(&rejected_key).await.unwrap();
        let mut all_done = n == bad.len();
        for (_, run_id) in &valid {
            let record = record_opt(&app, run_id).await;
            all_done &= record.is_some_and(|r| r.get("state") == Some("succeeded"));
        }
        all_done
    })
    .await;

    // Each rejection carries its reason and the (truncated) payload.
    let entries: Vec<String> = conn.lrange(&rejected_key, 0, -1).await.unwrap();
    let mut got: Vec<(String, String)> = entries
        .iter()
        .map(|entry| {
            let entry: Value = serde_json::from_str(entry).unwrap();
            assert!(!entry["detail"].as_str().unwrap().is_empty(), "{entry}");
            (
                entry["payload"].as_str().unwrap().to_owned(),
                entry["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut expected: Vec<(String, String)> = bad
        .iter()
        .map(|(payload, reason)| {
            (
                String::from_utf8_lossy(&payload[..payload.len().min(1024)]).into_owned(),
                (*reason).to_owned(),
            )
        })
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);

    // The duplicate run id did not create a second run or change the first one's user.
    assert_eq!(app.record("in-dup").await.get("user"), Some("dup@x.test"));
    assert_eq!(app.sessions_of("in-dup").await.len(), 1);
    assert_eq!(app.record("in-future").await.get("state"), Some("queued"));
    // Injection-looking text ran as plain data: the test's keys are all still there.
    assert_eq!(app.record("in-plain").await.get("state"), Some("succeeded"));
    assert_eq!(app.audit().await["violations"], json!([]));

    // The worker is still up: a last valid payload after all the bad ones runs.
    assert!(!worker.is_finished());
    let last = json!({"user": "last@x.test", "run_id": "in-last"}).to_string();
    let _: i64 = conn.lpush(&intake, last).await.unwrap();
    poll_until("the last payload ran", Duration::from_secs(60), || async {
        record_opt(&app, "in-last").await.is_some_and(|r| r.get("state") == Some("succeeded"))
    })
    .await;
    shutdown.cancel();
    worker.await.unwrap().unwrap();
}

/// The run record, or `None` while it does not exist.
pub async fn record_opt(app: &TestApp, run_id: &str) -> Option<agentcron::records::Fields> {
    let mut conn = app.conn.clone();
    let run_id = crate::common::run_id(run_id);
    agentcron::records::load_run(&mut conn, &app.ctx.keys, &run_id).await.unwrap()
}

/// A generated intake payload and what the parser must do with it.
#[derive(Debug, Clone)]
enum Case {
    /// Arbitrary bytes: rejected, for any documented reason.
    Bytes(Vec<u8>),
    /// A JSON value that is not an object.
    NotObject(Value),
    /// A valid payload; it must become exactly this run.
    Valid {
        user: String,
        prompt: Option<String>,
        schedule: Option<String>,
        not_before: Option<i64>,
    },
    /// A valid user with one control character inserted.
    ControlUser(String, usize, char),
    /// An unknown field beside a valid user.
    Unknown(String, Value),
    /// A field of the wrong JSON type.
    WrongType(&'static str, Value),
}

/// Unix seconds 300 days from now: valid `not_before` values reach this far (365 days are
/// accepted; further ahead is `not_before_too_far`).
fn in_300_days_s() -> i64 {
    (chrono::Utc::now() + chrono::Duration::days(300)).timestamp()
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "\\PC{0,20}".prop_map(Value::String),
    ]
}

fn not_object() -> impl Strategy<Value = Value> {
    prop_oneof![leaf(), prop::collection::vec(leaf(), 0..5).prop_map(Value::Array)]
}

fn user() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9@._+/:-]{1,40}", "\\PC{1,30}"]
        .prop_filter("trimmed", |user: &String| user.trim() == user && !user.is_empty())
}

fn case() -> impl Strategy<Value = Case> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Case::Bytes),
        not_object().prop_map(Case::NotObject),
        (
            user(),
            prop::option::of("(?s).{0,40}"),
            prop::option::of("\\PC{0,20}"),
            prop::option::of(0i64..=in_300_days_s()),
        )
            .prop_map(|(user, prompt, schedule, not_before)| Case::Valid {
                user,
                prompt,
                schedule,
                not_before
            }),
        (user(), any::<usize>(), prop::char::range('\0', '\u{1f}'))
            .prop_map(|(user, at, c)| Case::ControlUser(user, at, c)),
        ("x_[a-z]{0,8}", leaf()).prop_map(|(key, value)| Case::Unknown(key, value)),
        (
            prop::sample::select(vec!["user", "prompt", "schedule", "run_id"]),
            not_object().prop_filter("not a string", |v| !v.is_string())
        )
            .prop_map(|(field, value)| Case::WrongType(field, value)),
    ]
}

/// The payload, and the reason it must be rejected for (`Some("")` = any reason).
fn render(case: &Case, run_id: &str) -> (Vec<u8>, Option<&'static str>) {
    match case {
        Case::Bytes(bytes) => (bytes.clone(), Some("")),
        Case::NotObject(value) => (value.to_string().into_bytes(), Some("not_object")),
        Case::Valid { user, prompt, schedule, not_before } => {
            let mut payload = json!({"user": user, "run_id": run_id});
            if let Some(prompt) = prompt {
                payload["prompt"] = json!(prompt);
            }
            if let Some(schedule) = schedule {
                payload["schedule"] = json!(schedule);
            }
            if let Some(not_before) = not_before {
                payload["not_before"] = json!(not_before);
            }
            (payload.to_string().into_bytes(), None)
        }
        Case::ControlUser(user, at, c) => {
            let mut chars: Vec<char> = user.chars().collect();
            chars.insert(at % (chars.len() + 1), *c);
            let user: String = chars.into_iter().collect();
            (json!({"user": user}).to_string().into_bytes(), Some("invalid_user"))
        }
        Case::Unknown(key, value) => (
            json!({"user": "u@x.test", key.as_str(): value}).to_string().into_bytes(),
            Some("unknown_field"),
        ),
        Case::WrongType(field, value) => {
            let mut payload = json!({"user": "u@x.test"});
            payload[*field] = value.clone();
            (payload.to_string().into_bytes(), Some("wrong_type"))
        }
    }
}

/// Pushes one batch into a running worker's intake and checks every payload's fate.
async fn check_batch(redis: &TestRedis, batch: usize, cases: &[Case]) {
    let mut conn = redis.conn.clone();
    let (intake, rejected) =
        (format!("{}:intake", redis.prefix), format!("{}:rejected", redis.prefix));
    let _: () = conn.del(&rejected).await.unwrap();
    let mut expected_rejections: Vec<(String, &'static str)> = Vec::new();
    let mut expected_runs = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let run_id = format!("pt{batch}-{i}");
        let (payload, reason) = render(case, &run_id);
        match reason {
            Some(reason) => {
                expected_rejections.push((String::from_utf8_lossy(&payload).into_owned(), reason))
            }
            None => expected_runs.push((run_id, case)),
        }
        let _: i64 = conn.lpush(&intake, payload).await.unwrap();
    }
    let what = format!("batch {batch}: every payload taken off the intake");
    poll_until(&what, Duration::from_secs(30), || {
        let (mut conn, intake, rejected) = (conn.clone(), &intake, &rejected);
        let (expected_runs, n_rejections) = (&expected_runs, expected_rejections.len());
        async move {
            let left: usize = conn.llen(intake).await.unwrap();
            let n: usize = conn.llen(rejected).await.unwrap();
            let n_runs = future_runs(redis, expected_runs).await;
            if left == 0 && n == n_rejections && n_runs == expected_runs.len() {
                Ok(())
            } else {
                Err(format!("{n} rejected, {n_runs} runs, {left} left"))
            }
        }
    })
    .await;
    let entries: Vec<String> = conn.lrange(&rejected, 0, -1).await.unwrap();
    for entry in entries {
        let entry: Value = serde_json::from_str(&entry).unwrap();
        let (payload, reason) =
            (entry["payload"].as_str().unwrap(), entry["reason"].as_str().unwrap());
        assert!(REASONS.contains(&reason), "{entry}");
        let at = expected_rejections
            .iter()
            .position(|(p, r)| p == payload && (r.is_empty() || *r == reason))
            .unwrap_or_else(|| panic!("unexpected rejection {entry}"));
        expected_rejections.swap_remove(at);
    }
    for (run_id, case) in expected_runs {
        let Case::Valid { user, prompt, schedule, not_before } = case else { unreachable!() };
        let record = test_worker::record(redis, &run_id).await;
        assert_eq!(record.get("user"), Some(user), "{run_id}");
        assert_eq!(
            record.get("prompt").map(String::as_str).unwrap_or_default(),
            prompt.as_deref().unwrap_or_default()
        );
        assert_eq!(
            record.get("schedule").map(String::as_str).unwrap_or_default(),
            schedule.as_deref().unwrap_or_default()
        );
        let not_before_ms = record.get("not_before_ms").and_then(|ms| ms.parse::<i64>().ok());
        if let Some(seconds) = not_before {
            assert_eq!(not_before_ms, Some(seconds * 1000), "{run_id}");
        }
    }
}

async fn future_runs(redis: &TestRedis, runs: &[(String, &Case)]) -> usize {
    let mut conn = redis.conn.clone();
    let mut n = 0;
    for (run_id, _) in runs {
        let exists: bool = conn.exists(format!("{}:run:{run_id}", redis.prefix)).await.unwrap();
        n += usize::from(exists);
    }
    n
}

#[test]
fn intake_classifies_every_generated_payload_as_constructed() {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (redis, running) = rt.block_on(async {
        let redis = TestRedis::new().await;
        let config = test_worker::config(&redis);
        let running = test_worker::spawn(&config, TestHandler::succeeding());
        (redis, running)
    });
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 6,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let batch = std::sync::atomic::AtomicUsize::new(0);
    let res = runner.run(&prop::collection::vec(case(), 40..80), |cases| {
        let n = batch.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        rt.block_on(check_batch(&redis, n, &cases));
        Ok(())
    });
    rt.block_on(running.stop());
    res.unwrap();
}

/// TOML-ish text: real sections and keys with values of every shape, and garbage lines.
fn toml_ish() -> impl Strategy<Value = String> {
    let sections = prop::sample::select(vec![
        "[worker]",
        "[retry]",
        "[redis]",
        "[ops]",
        "[transcripts]",
        "[limits]",
        "[scalekit]",
        "[anthropic]",
        "[[schedule]]",
        "[worker.extra]",
        "[]",
        "[[worker]]",
    ]);
    let keys = prop::sample::select(vec![
        "concurrency",
        "max_attempts",
        "heartbeat",
        "lease",
        "bind",
        "token",
        "url",
        "prefix",
        "dir",
        "initial",
        "max_interval",
        "multiplier",
        "cron",
        "timezone",
        "users",
        "name",
        "prompt",
        "tokens_per_second",
        "ttl",
        "model",
        "unknown_key",
    ]);
    let values = prop::sample::select(vec![
        "\"5s\"",
        "\"-1s\"",
        "-1",
        "0",
        "1e400",
        "\"\"",
        "true",
        "[1, 2]",
        "{ a = 1 }",
        "\"0.0.0.0:9\"",
        "\"not a cron\"",
        "\"* * * * *\"",
        "\"Mars/Olympus\"",
        "18446744073709551616",
        "nan",
        "\"redis://\"",
        "\"\\u0000\"",
        "\"1000000h\"",
        "[\"a@b\", \"\"]",
        "2.5",
    ]);
    let line = prop_oneof![
        3 => sections.prop_map(str::to_owned),
        6 => (keys, values).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => "\\PC{0,30}",
        1 => "[a-z_.\"]{1,10} = [\\[\\]{}\"'0-9a-z,. ]{0,12}",
    ];
    prop::collection::vec(line, 0..25).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn config_load_never_panics_and_every_problem_names_a_key(text in toml_ish()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.toml");
        std::fs::write(&path, &text).unwrap();
        if let Err(error) = config::load(&path, &Env::default()) {
            let problems = error.problems();
            prop_assert!(!problems.is_empty(), "{error}");
            let shown = error.to_string();
            for problem in problems {
                prop_assert!(!problem.key.is_empty(), "{problem}");
                prop_assert!(shown.contains(&format!("`{}`", problem.key)), "{shown}");
            }
        }
    }

    #[test]
    fn safe_names_are_injective_bounded_and_never_paths(
        a in prop_oneof![any::<String>(), "[./%\\\\\0aA~]{0,8}", "\\PC{190,260}"],
        b in prop_oneof![any::<String>(), "[./%\\\\\0aA~]{0,8}", "\\PC{190,260}"],
    ) {
        for id in [&a, &b] {
            let name = safe_name(id);
            prop_assert!(!name.is_empty() && name.len() <= 200, "{name:?}");
            prop_assert!(!name.contains('/') && !name.contains('\0'), "{name:?}");
            prop_assert!(name != "." && name != "..", "{name:?}");
        }
        if a != b {
            prop_assert_ne!(safe_name(&a), safe_name(&b));
        }
        let dir = Path::new("/srv/transcripts");
        let started = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        let path = file_path(dir, started, &a, &b);
        prop_assert!(path.starts_with(dir), "{path:?}");
        let rest: Vec<Component<'_>> = path.strip_prefix(dir).unwrap().components().collect();
        prop_assert_eq!(rest.len(), 3, "{:?}", path);
        prop_assert!(rest.iter().all(|c| matches!(c, Component::Normal(_))), "{:?}", path);
    }
}
