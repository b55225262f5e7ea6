//! The redis-cli intake: payloads pushed with the real `redis-cli` binary become runs; each
//! malformed payload is filed under `<p>:rejected` with the right reason while the valid ones
//! around it still run, and the worker keeps going.

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::Value;

use crate::common::TestRedis;
use crate::common::poll_until;
use crate::common::worker::{TestHandler, config, count_in_state, record, spawn, state};

/// Pushes with the `redis-cli` binary when it is installed (it is on every machine here),
/// else with the client library.
async fn lpush(redis: &TestRedis, key: &str, payload: &[u8]) {
    let cli = std::path::Path::new("/usr/bin/redis-cli");
    if let (true, Ok(text)) = (cli.exists(), std::str::from_utf8(payload)) {
        let status = std::process::Command::new(cli)
            .args(["-u", &redis.url, "LPUSH", key, text])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "redis-cli LPUSH failed");
    } else {
        let mut conn = redis.conn.clone();
        let _: i64 = conn.lpush(key, payload).await.unwrap();
    }
}

#[tokio::test]
async fn intake_accepts_valid_payloads_and_rejects_each_malformed_one_with_its_reason() {
    let redis = TestRedis::new().await;
    let config = config(&redis);
    let big = format!(r#"{{"user":"big@example.com","prompt":"{}"}}"#, "x".repeat(70_000));
    // Oversized and not UTF-8: the take script keeps its first 1 KiB as Rust's lossy decoding
    // would (invalid and cut sequences, surrogates, overlongs, a character split at the cut).
    let mut mangled =
        b"\xff\xe2\x82A\xed\xa0\x80\xf0\x9f\x98\x80\xf4\x90\x80\x80\xc0\xaf\xe0\x80\xaf\xf0\x9f"
            .to_vec();
    mangled.resize(1023, b'y');
    mangled.extend("\u{e9}".as_bytes());
    mangled.resize(70_000, b'z');
    // (payload, expected rejection reason or None when valid), in push order.
    let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
        (br#"{"user":"v1@example.com","run_id":"intake-v1"}"#.to_vec(), None),
        (b"hello".to_vec(), Some("not_json")),
        (br#"{"user":"v2@example.com""#.to_vec(), Some("not_json")),
        (br#"["alice@example.com"]"#.to_vec(), Some("not_object")),
        (br#"{"prompt":"no user"}"#.to_vec(), Some("missing_user")),
        (br#"{"user":""}"#.to_vec(), Some("empty_user")),
        (br#"{"user":42}"#.to_vec(), Some("wrong_type")),
        (br#"{"user":"v3@example.com","schedule":"morning","prompt":"Hi.","not_before":"2001-01-01T00:00:00Z","run_id":"intake-v3"}"#.to_vec(), None),
        (br#"{"user":"a@example.com","prompt":["x"]}"#.to_vec(), Some("wrong_type")),
        (br#"{"user":"a@example.com","colour":"red"}"#.to_vec(), Some("unknown_field")),
        (br#"{"user":"a@example.com","run_id":"two words"}"#.to_vec(), Some("invalid_run_id")),
        (br#"{"user":"a@example.com","not_before":"next tuesday"}"#.to_vec(), Some("bad_not_before")),
        (br#"{"user":"a@example.com","not_before":1900000000000}"#.to_vec(), Some("bad_not_before")),
        (br#"{"user":"a@example.com","not_before":"9999-12-31T23:59:59Z"}"#.to_vec(), Some("not_before_too_far")),
        (big.into_bytes(), Some("too_large")),
        (mangled, Some("too_large")),
        (b"\xff\xfe{}".to_vec(), Some("not_utf8")),
        (br#"{"user":"v4@example.com"}"#.to_vec(), None),
        (br#"{"user":"v1@example.com","run_id":"intake-v1"}"#.to_vec(), None),
    ];
    let n_rejected = cases.iter().filter(|(_, reason)| reason.is_some()).count();
    assert!(n_rejected >= 10);

    let handler = TestHandler::succeeding();
    let worker = spawn(&config, handler.clone());
    let intake = format!("{}:intake", redis.prefix);
    for (payload, _) in &cases {
        lpush(&redis, &intake, payload).await;
    }

    let rejected_key = format!("{}:rejected", redis.prefix);
    let mut conn = redis.conn.clone();
    poll_until("every payload handled", Duration::from_secs(20), || {
        let (redis, mut conn, key) = (&redis, conn.clone(), rejected_key.clone());
        async move {
            let n: usize = conn.llen(&key).await.unwrap();
            n == n_rejected && count_in_state(redis, "succeeded").await == 3
        }
    })
    .await;

    // Each rejection carries its reason, the payload (truncated) and a timestamp.
    let entries: Vec<String> = conn.lrange(&rejected_key, 0, -1).await.unwrap();
    let entries: Vec<Value> =
        entries.iter().map(|entry| serde_json::from_str(entry).unwrap()).collect();
    let mut by_payload: HashMap<String, &Value> = HashMap::new();
    for entry in &entries {
        assert!(entry["at_ms"].as_i64().unwrap() > 1_700_000_000_000, "{entry}");
        // 1 KiB kept; an invalid byte becomes U+FFFD, 3 bytes of text.
        let kept = entry["payload"].as_str().unwrap();
        assert!(kept.len() <= 3 * 1024, "payload kept truncated: {} bytes", kept.len());
        by_payload.insert(entry["payload"].as_str().unwrap().to_owned(), entry);
    }
    for (payload, reason) in &cases {
        let Some(reason) = reason else { continue };
        let kept = String::from_utf8_lossy(&payload[..payload.len().min(1024)]).into_owned();
        let entry = by_payload.get(&kept).unwrap_or_else(|| panic!("no rejection for {kept:.80}"));
        assert_eq!(entry["reason"], *reason, "{kept:.80}");
        assert_eq!(entry["payload_bytes"], payload.len());
    }

    // Valid payloads became runs; the repeated run id ran once.
    assert_eq!(state(&redis, "intake-v1").await, "succeeded");
    let v3 = record(&redis, "intake-v3").await;
    assert_eq!(
        (v3["schedule"].as_str(), v3["prompt"].as_str(), v3["source"].as_str()),
        ("morning", "Hi.", "intake")
    );
    assert_eq!(v3["not_before_ms"], "978307200000");
    let v4: Vec<String> =
        conn.zrange(format!("{}:runs:user:v4@example.com", redis.prefix), 0, -1).await.unwrap();
    assert_eq!(v4.len(), 1, "a payload without run_id gets one generated id");
    assert_eq!(handler.stats.counts().values().copied().collect::<Vec<_>>(), [1, 1, 1]);
    let left: usize = conn.llen(&intake).await.unwrap();
    assert_eq!(left, 0);
    worker.stop().await;
    let keys = redis.keys().await;
    assert!(!keys.iter().any(|key| key.contains(":intake:processing:")), "{keys:?}");
}

/// A user Scalekit or Anthropic would refuse later is refused at the intake, with a reason that
/// says why: a 101-character user (Scalekit takes identifiers of at most 100 characters in an
/// authorization link) is filed under `user_too_long`; a 100-character one becomes a run.
/// Before, the long user was accepted and broke its run's auth link mid-run.
#[tokio::test]
async fn intake_rejects_a_user_longer_than_the_vendors_take() {
    let redis = TestRedis::new().await;
    let config = config(&redis);
    let longest = format!("{}@x.test", "a".repeat(93));
    let too_long = format!("{}@x.test", "b".repeat(94));
    assert_eq!((longest.chars().count(), too_long.chars().count()), (100, 101));
    let control = "c@x.test\u{1b}";
    let handler = TestHandler::succeeding();
    let worker = spawn(&config, handler.clone());
    let intake = format!("{}:intake", redis.prefix);
    for (user, run_id) in [(&longest, "long-ok"), (&too_long, "long-no")] {
        lpush(&redis, &intake, format!(r#"{{"user":"{user}","run_id":"{run_id}"}}"#).as_bytes())
            .await;
    }
    let escaped = serde_json::json!({"user": control, "run_id": "ctl-no"}).to_string();
    lpush(&redis, &intake, escaped.as_bytes()).await;

    let rejected_key = format!("{}:rejected", redis.prefix);
    let mut conn = redis.conn.clone();
    poll_until("the payloads handled", Duration::from_secs(20), || {
        let (redis, mut conn, key) = (&redis, conn.clone(), rejected_key.clone());
        async move {
            let n: usize = conn.llen(&key).await.unwrap();
            n == 2 && state(redis, "long-ok").await == "succeeded"
        }
    })
    .await;
    worker.stop().await;
    let entries: Vec<String> = conn.lrange(&rejected_key, 0, -1).await.unwrap();
    let entries: Vec<Value> = entries.iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let long = entries.iter().find(|e| e["payload"].as_str().unwrap().contains("long-no")).unwrap();
    assert_eq!(long["reason"], "user_too_long", "{long}");
    let detail = long["detail"].as_str().unwrap();
    assert!(detail.contains("101") && detail.contains("at most 100"), "{detail}");
    let ctl = entries.iter().find(|e| e["payload"].as_str().unwrap().contains("ctl-no")).unwrap();
    assert_eq!(ctl["reason"], "invalid_user", "{ctl}");
    assert_eq!(state(&redis, "long-no").await, "", "no run for the refused user");
}

/// The take script as the worker runs it (`queue/script.rs` prepends the shared helpers).
fn take_script() -> redis::Script {
    redis::Script::new(concat!(
        include_str!("../../src/queue/lua/common.lua"),
        include_str!("../../src/queue/lua/intake_take.lua")
    ))
}

/// One call of the take script on `keys` (intake, processing list, rejected), with the
/// worker's limits: 100 payloads, 64 KiB each, 1 MiB a batch, 1 KiB kept of a rejected one.
async fn take(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: [&str; 3],
) -> (Vec<u64>, u64, Vec<Vec<u8>>) {
    let script = take_script();
    let mut invocation = script.prepare_invoke();
    invocation.key(keys[0]).key(keys[1]).key(keys[2]);
    invocation.arg(100).arg(64 * 1024).arg(1024 * 1024).arg(1024).arg(10_000);
    invocation.invoke_async(conn).await.unwrap()
}

/// The take script is the intake's only way out, so it alone bounds what a worker reads: a
/// batch stops before the payload that would take it past the byte budget (1 MiB here), and
/// a payload over the limit (64 KiB) is filed as `too_large` without being returned, whatever
/// the count allows. Before, the script returned up to 100 payloads of any size.
/// See: issue 22.
#[tokio::test]
async fn a_take_is_bounded_in_bytes_and_never_returns_an_oversized_payload() {
    let redis = TestRedis::new().await;
    let mut conn = redis.conn.clone();
    let key = |name: &str| format!("{}:{name}", redis.prefix);
    let (intake, processing, rejected) =
        (key("intake"), key("intake:processing:w"), key("rejected"));
    let item = |i: usize, bytes: usize| {
        let head = format!(r#"{{"user":"b{i}@x.test","prompt":""#);
        format!("{head}{}\"}}", "x".repeat(bytes - head.len() - 2)).into_bytes()
    };
    // Oldest first: a 70 KiB payload, then forty of 60 KiB.
    let mut pushed = vec![item(0, 70 * 1024)];
    pushed.extend((1..=40).map(|i| item(i, 60 * 1024)));
    for payload in &pushed {
        let _: i64 = conn.lpush(&intake, payload).await.unwrap();
    }
    let (too_large, left, batch) = take(&mut conn, [&intake, &processing, &rejected]).await;
    assert_eq!(too_large, [70 * 1024], "the oversized payload is refused, by size");
    // What the script measured counts, refused or not: 70 KiB + 16 × 60 KiB reach 1 MiB.
    assert_eq!(batch.len(), 16);
    assert_eq!(batch, pushed[1..=16], "oldest first, none skipped");
    assert_eq!(left, 24);
    let n_processing: usize = conn.llen(&processing).await.unwrap();
    assert_eq!(n_processing, 16);
    let entries: Vec<String> = conn.lrange(&rejected, 0, -1).await.unwrap();
    assert_eq!(entries.len(), 1);
    let entry: Value = serde_json::from_str(&entries[0]).unwrap();
    assert_eq!(
        (entry["reason"].as_str(), entry["payload_bytes"].as_u64()),
        (Some("too_large"), Some(70 * 1024))
    );
    assert_eq!(entry["payload"], String::from_utf8_lossy(&pushed[0][..1024]).as_ref());

    let (too_large, left, batch) = take(&mut conn, [&intake, &processing, &rejected]).await;
    // 17 × 60 KiB fit 1 MiB, 18 would not.
    assert_eq!((too_large.len(), left, batch.len()), (0, 7, 17));
    let (too_large, left, batch) = take(&mut conn, [&intake, &processing, &rejected]).await;
    assert_eq!((too_large.len(), left, batch.len()), (0, 0, 7));
    let (too_large, left, batch) = take(&mut conn, [&intake, &processing, &rejected]).await;
    assert_eq!((too_large.len(), left, batch.len()), (0, 0, 0));
}
