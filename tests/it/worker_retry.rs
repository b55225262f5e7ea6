//! Attempts end as the handler says: a transient failure is retried with backoff and then
//! succeeds; attempts run out into `dead` with the last error; permanent failures and
//! `needs_auth` are never retried; a deferral does not count as an attempt; a panic is caught.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use agentcron::outcome::{ErrorClass, Outcome};
use agentcron::worker::JobContext;
use redis::AsyncCommands;
use tokio::sync::Semaphore;

use crate::common::TestRedis;
use crate::common::poll_until;
use crate::common::worker::{TestHandler, config, enqueue_n, plan, record, spawn, state};

fn transient() -> Outcome {
    Outcome::failed("HTTP 503 from sessions.create", ErrorClass::Transient)
}

async fn settle(redis: &TestRedis, run_id: &str, expect: &str) {
    poll_until(&format!("{run_id} {expect}"), Duration::from_secs(20), || async {
        let now = state(redis, run_id).await;
        if now == expect { Ok(()) } else { Err(now) }
    })
    .await;
}

/// The record while the second attempt runs, held until the test opens `gate`: the first
/// attempt's error is visible then; the succeeded run shows none.
async fn while_second_attempt_runs(redis: &TestRedis, run_id: &str) -> HashMap<String, String> {
    poll_until("the second attempt running", Duration::from_secs(20), || async {
        let record = record(redis, run_id).await;
        let running = record.get("state").is_some_and(|state| state == "running");
        if running && record.get("attempts").is_some_and(|n| n == "2") {
            Ok(record)
        } else {
            Err(record)
        }
    })
    .await
}

/// A handler gate: the second attempt waits on it.
fn gate() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(0))
}

async fn pass(gate: &Semaphore) {
    let _permit = gate.acquire().await;
}

fn assert_no_error_shown(record: &HashMap<String, String>) {
    for field in ["last_error", "error_class", "next_attempt_at_ms"] {
        assert!(!record.contains_key(field), "{field} cleared on success: {record:?}");
    }
}

/// What [`retried_then_succeeded`] saw of one run.
struct Retried {
    /// The record while the second attempt was held: the first attempt's error shows.
    retrying: HashMap<String, String>,
    /// The record once the run succeeded.
    done: HashMap<String, String>,
    handler: TestHandler,
}

/// A worker whose `handle` answers every attempt, the one that succeeds after waiting on the
/// gate it is given; one run tagged `tag`, read while its second attempt is held, then let
/// through to success. The succeeded run shows no error.
async fn retried_then_succeeded<F, Fut>(
    redis: &TestRedis,
    config: &agentcron::config::Config,
    tag: &str,
    handle: F,
) -> Retried
where
    F: Fn(JobContext, Arc<Semaphore>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Outcome> + Send + 'static,
{
    let held = gate();
    let gate_for_handler = Arc::clone(&held);
    let handler = TestHandler::new(plan(move |job| handle(job, Arc::clone(&gate_for_handler))));
    let worker = spawn(config, handler.clone());
    let ids = enqueue_n(config, tag, 1).await;
    let retrying = while_second_attempt_runs(redis, &ids[0]).await;
    held.add_permits(1);
    settle(redis, &ids[0], "succeeded").await;
    worker.stop().await;
    let done = record(redis, &ids[0]).await;
    assert_no_error_shown(&done);
    Retried { retrying, done, handler }
}

#[tokio::test]
async fn transient_failure_is_retried_then_succeeds() {
    let redis = TestRedis::new().await;
    let config = config(&redis);
    let Retried { retrying, done: record, handler } =
        retried_then_succeeded(&redis, &config, "flaky", |job, gate| async move {
            if job.attempt == 1 {
                return transient();
            }
            pass(&gate).await;
            Outcome::Succeeded
        })
        .await;
    assert_eq!(retrying["last_error"], "HTTP 503 from sessions.create", "{retrying:?}");
    // A succeeded run shows no error (checked by the helper): `attempts` says it needed a
    // second try. See: issue 23.
    assert_eq!(record["attempts"], "2");
    assert!(
        record["ended_at_ms"].parse::<i64>().unwrap()
            >= record["started_at_ms"].parse::<i64>().unwrap()
    );
    let attempts: Vec<u32> = handler.stats.starts().iter().map(|start| start.attempt).collect();
    assert_eq!(attempts, [1, 2]);
}

#[tokio::test]
async fn attempts_run_out_into_dead_with_the_last_error() {
    let redis = TestRedis::new().await;
    let config = config(&redis);
    let handler = TestHandler::new(plan(|_| async { transient() }));
    let worker = spawn(&config, handler.clone());
    let ids = enqueue_n(&config, "doomed", 1).await;
    settle(&redis, &ids[0], "dead").await;
    worker.stop().await;

    let record = record(&redis, &ids[0]).await;
    assert_eq!(record["attempts"], "3", "max_attempts = 3");
    assert_eq!(record["error_class"], "transient");
    assert!(record["last_error"].starts_with("HTTP 503"), "{record:?}");
    assert_eq!(handler.stats.starts().len(), 3);
    let mut conn = redis.conn.clone();
    let dead: Vec<String> = conn.lrange(format!("{}:q:dead", redis.prefix), 0, -1).await.unwrap();
    let entry: serde_json::Value = serde_json::from_str(&dead[0]).unwrap();
    assert_eq!(entry["run_id"], ids[0].as_str());
    assert!(entry["reason"].as_str().unwrap().contains("gave up after 3 attempts"), "{entry}");
    let in_dead: Option<f64> =
        conn.zscore(format!("{}:runs:state:dead", redis.prefix), &ids[0]).await.unwrap();
    assert!(in_dead.is_some(), "indexed as dead");
}

#[tokio::test]
async fn permanent_failures_needs_auth_and_cancel_are_not_retried() {
    let redis = TestRedis::new().await;
    let config = config(&redis);
    let handler = TestHandler::new(plan(|job| async move {
        match job.run_id.as_str() {
            "final-0" => Outcome::failed("HTTP 400 bad request", ErrorClass::Permanent),
            "final-1" => Outcome::NeedsAuth,
            _ => Outcome::Cancelled,
        }
    }));
    let worker = spawn(&config, handler.clone());
    let ids = enqueue_n(&config, "final", 3).await;
    for (run_id, expect) in ids.iter().zip(["dead", "needs_auth", "cancelled"]) {
        settle(&redis, run_id, expect).await;
    }
    worker.stop().await;
    assert_eq!(record(&redis, "final-0").await["error_class"], "permanent");
    let mut counts: Vec<usize> = handler.stats.counts().into_values().collect();
    counts.sort_unstable();
    assert_eq!(counts, [1, 1, 1], "each ran exactly once");
}

#[tokio::test]
async fn a_deferral_does_not_use_an_attempt_and_a_panic_is_retried() {
    let redis = TestRedis::new().await;
    let config = config(&redis);
    let n_calls = Arc::new(AtomicU32::new(0));
    let Retried { retrying, handler, .. } =
        retried_then_succeeded(&redis, &config, "defer", move |job, gate| {
            let call = n_calls.fetch_add(1, Ordering::SeqCst);
            async move {
                match call {
                    0 | 1 => Outcome::Defer { after: Duration::from_millis(20) },
                    2 => panic!("handler bug on attempt {}", job.attempt),
                    _ => {
                        pass(&gate).await;
                        Outcome::Succeeded
                    }
                }
            }
        })
        .await;
    assert_eq!(retrying["error_class"], "panic");
    assert!(retrying["last_error"].contains("handler bug on attempt 1"), "{retrying:?}");
    let attempts: Vec<u32> = handler.stats.starts().iter().map(|start| start.attempt).collect();
    assert_eq!(attempts, [1, 1, 1, 2], "deferrals are refunded; the panic counted");
}

#[tokio::test]
async fn a_run_over_its_timeout_is_cancelled_and_retried() {
    let redis = TestRedis::new().await;
    let mut config = config(&redis);
    config.worker.run_timeout = Duration::from_millis(200);
    let Retried { retrying, .. } =
        retried_then_succeeded(&redis, &config, "slow", |job, gate| async move {
            if job.attempt == 1 {
                job.cancel.cancelled().await;
                Outcome::Cancelled
            } else {
                pass(&gate).await;
                Outcome::Succeeded
            }
        })
        .await;
    assert_eq!(retrying["error_class"], "timeout");
    assert!(retrying["last_error"].contains("timed out after 200ms"), "{retrying:?}");
}

/// A deferral whose run was woken while its attempt was still finding the user busy (the
/// holder released the lease and woke the run before the deferral was recorded: the wake
/// marked the record, as `redis-cli HSET … wake_requested 1` does here) queues the run now,
/// not after the deferral's delay. See: issue 25.
#[tokio::test]
async fn a_deferral_woken_during_its_attempt_is_queued_at_once() {
    let redis = TestRedis::new().await;
    let config = config(&redis);
    let keys = config.redis.keys();
    let conn = redis.conn.clone();
    let handler = TestHandler::new(plan(move |job: JobContext| {
        let (mut conn, record) = (conn.clone(), keys.run(&job.run_id));
        async move {
            let deferred: Option<u32> = conn.hget(&record, "test_deferred").await.unwrap();
            if job.attempt > 1 || deferred.is_some() {
                return Outcome::Succeeded;
            }
            let () = conn.hset(&record, "wake_requested", "1").await.unwrap();
            let () = conn.hset(&record, "test_deferred", "1").await.unwrap();
            Outcome::Defer { after: Duration::from_secs(120) }
        }
    }));
    let ids = enqueue_n(&config, "woken", 1).await;
    let worker = spawn(&config, handler.clone());
    settle(&redis, &ids[0], "succeeded").await;
    worker.stop().await;
    let attempts: Vec<u32> = handler.stats.starts().iter().map(|start| start.attempt).collect();
    assert_eq!(attempts, [1, 1], "deferred once, then run at once: {attempts:?}");
    let record = record(&redis, &ids[0]).await;
    assert!(!record.contains_key("wake_requested"), "the mark is used up: {record:?}");
}
