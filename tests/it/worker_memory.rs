//! Memory bounds of a real `agentcron worker` process: producers that push 20 MB payloads to
//! the intake cannot grow the worker, because the intake refuses an oversized payload inside
//! Redis, before any of it is read, and bounds each batch in bytes as well as in count.
//!
//! The flood goes to a private `redis-server` (1 GB would crowd the Redis the other tests
//! share), which is killed at the end with everything in it.

use std::time::Duration;

use agentcron::keys::Keys;
use redis::AsyncCommands;
use serde_json::Value;

use crate::common::app::spawn_app;
use crate::common::poll::{WithLog, poll_until};
use crate::common::private_redis::{PrivateRedis, setup_on};
use crate::common::procs::{child_env_at, kill9, peak_rss_kib, spawn_worker};

/// Oversized payloads pushed, and the size of each.
const N_BIG: usize = 50;
const BIG_BYTES: usize = 20 * 1024 * 1024;
/// Valid payloads pushed among them.
const N_VALID: usize = 10;
/// The bound the worker's peak RSS must stay under, in KiB.
const RSS_BOUND_KIB: u64 = 200 * 1024;
/// Bytes of a payload kept in its rejected entry.
const KEPT: usize = 1024;

/// Fifty 20 MB payloads (1 GB) wait in the intake with ten valid ones among them when the
/// worker starts. Every big one is filed under `<p>:rejected` as `too_large` with its size and
/// only its first 1 KiB, the valid ones run, and the worker's peak RSS stays under 200 MB.
/// See: issue 22 (the old intake read whole batches of 100: 1.5–3.3 GB, OOM-killed at 512Mi).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_mb_payloads_are_refused_unread_and_the_worker_stays_under_200_mb() {
    let app = spawn_app().await;
    let server = PrivateRedis::start(false).await;
    setup_on(&app, &server).await;
    let keys = Keys::new(app.redis.prefix.as_str());
    let (intake, rejected) = (keys.intake(), keys.rejected());
    // A 20 MB command takes longer than the client's default 500 ms reply timeout.
    let patient =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection_with_config(&patient).await.unwrap();

    // Built once: a payload that would be valid but for its size.
    let filler = "x".repeat(BIG_BYTES - 40);
    let big = format!(r#"{{"user":"big@x.test","prompt":"{filler}"}}"#).into_bytes();
    drop(filler);
    let valid = |i: usize| format!(r#"{{"user":"mem{i}@x.test","run_id":"mem-{i}"}}"#);
    for i in 0..N_BIG {
        let _: i64 = conn.lpush(&intake, &big).await.unwrap();
        if i % (N_BIG / N_VALID) == 0 {
            let _: i64 = conn.lpush(&intake, valid(i / (N_BIG / N_VALID))).await.unwrap();
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker.log");
    let env = child_env_at(&app, &server.url(), dir.path());
    let mut worker = spawn_worker(&env, &log);
    let prefix = app.redis.prefix.as_str();
    poll_until("every payload handled", Duration::from_secs(120), || {
        let (mut conn, intake, rejected, log) = (conn.clone(), &intake, &rejected, &log);
        async move {
            let n_left: usize = conn.llen(intake).await.unwrap();
            let n_rejected: usize = conn.llen(rejected).await.unwrap();
            let mut n_succeeded = 0;
            for i in 0..N_VALID {
                let state: Option<String> =
                    conn.hget(format!("{prefix}:run:mem-{i}"), "state").await.unwrap();
                n_succeeded += usize::from(state.as_deref() == Some("succeeded"));
            }
            let now = (n_left, n_rejected, n_succeeded);
            if now == (0, N_BIG, N_VALID) { Ok(()) } else { Err(WithLog(now, log)) }
        }
    })
    .await;
    let peak_kib = peak_rss_kib(&worker);
    kill9(&mut worker);
    println!(
        "worker peak RSS (VmHWM) after {N_BIG} payloads of {BIG_BYTES} bytes: {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    assert!(peak_kib < RSS_BOUND_KIB, "worker peak RSS {peak_kib} KiB");

    // Each rejection is small: the reason, the size and the first bytes, never the payload.
    let entries: Vec<String> = conn.lrange(&rejected, 0, -1).await.unwrap();
    let kept = String::from_utf8_lossy(&big[..KEPT]).into_owned();
    for entry in &entries {
        assert!(entry.len() < 2 * KEPT, "a rejected entry of {} bytes", entry.len());
        let entry: Value = serde_json::from_str(entry).unwrap();
        assert_eq!(entry["reason"], "too_large", "{entry}");
        assert_eq!(entry["payload_bytes"], big.len(), "{entry}");
        assert_eq!(entry["payload"], kept.as_str());
        let detail = entry["detail"].as_str().unwrap();
        assert!(detail.contains(&big.len().to_string()), "{detail}");
        assert!(entry["at_ms"].as_i64().unwrap() > 1_700_000_000_000, "{entry}");
    }
    let _: () = conn.del(&[intake, rejected]).await.unwrap();
}
