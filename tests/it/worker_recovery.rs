//! Crash recovery and shutdown, in process: a worker "killed" (its task aborted, so no cleanup
//! runs and its processing lists stay) has its run taken over by another worker within the
//! lease, which resumes it and creates no second session; a worker whose lease was taken stops
//! its run before anyone else starts it; shutdown drains in-flight runs, and what cannot finish
//! within the grace goes back to the queue with its attempt refunded.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentcron::outcome::Outcome;
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use crate::common::TestRedis;
use crate::common::poll_until;
use crate::common::worker::{TestHandler, config, enqueue_n, gated, plan, record, spawn, state};

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_killed_workers_run_is_taken_over_and_resumed_with_one_session() {
    let redis = TestRedis::new().await;
    let config = config(&redis);
    let sessions = Arc::new(AtomicUsize::new(0));
    // Phase "session": create the session unless the record already has one (the pipeline's
    // resume rule), then hang (worker A) or finish (worker B).
    let session_plan = |hang: bool| {
        let (sessions, url, prefix) =
            (Arc::clone(&sessions), redis.url.clone(), redis.prefix.clone());
        plan(move |job| {
            let (sessions, url, prefix) = (Arc::clone(&sessions), url.clone(), prefix.clone());
            async move {
                let client = redis::Client::open(url).unwrap();
                let mut conn = client.get_multiplexed_async_connection().await.unwrap();
                let key = format!("{prefix}:run:{}", job.run_id);
                let created: bool = conn
                    .hset_nx(&key, "session_id", format!("sesn_{}", job.attempt))
                    .await
                    .unwrap();
                if created && job.run_id == "crash-0" {
                    sessions.fetch_add(1, Ordering::SeqCst);
                }
                if hang {
                    std::future::pending::<()>().await;
                }
                Outcome::Succeeded
            }
        })
    };
    let handler_a = TestHandler::new(session_plan(true));
    let worker_a = spawn(&config, handler_a.clone());
    let ids = enqueue_n(&config, "crash", 1).await;
    poll_until("worker A started the run", LIMIT, || async {
        !handler_a.stats.starts().is_empty()
    })
    .await;
    let mut conn = redis.conn.clone();
    let workers: Vec<String> = conn.hkeys(format!("{}:workers", redis.prefix)).await.unwrap();
    let worker_a_id = workers[0].clone();

    let worker_b = spawn(&config, handler_a.with_plan(session_plan(false)));
    // kill -9: no drain, no release; its processing list and lease stay behind.
    worker_a.handle.abort();
    assert!(worker_a.handle.await.unwrap_err().is_cancelled());
    // It also held an intake payload it had not handled yet.
    let stuck = format!("{}:intake:processing:{worker_a_id}", redis.prefix);
    let _: i64 =
        conn.lpush(&stuck, r#"{"user":"late@example.com","run_id":"from-intake"}"#).await.unwrap();

    poll_until("worker B finished the run", LIMIT, || async {
        state(&redis, &ids[0]).await == "succeeded"
    })
    .await;
    poll_until("the intake payload was recovered", LIMIT, || async {
        state(&redis, "from-intake").await == "succeeded"
    })
    .await;
    worker_b.stop().await;

    let starts = handler_a.stats.starts_of(&ids[0]);
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(
        (starts[0].attempt, starts[0].resumed, starts[0].worker_id.as_str()),
        (1, false, worker_a_id.as_str())
    );
    assert_eq!((starts[1].attempt, starts[1].resumed), (2, true), "B resumed the run");
    assert_ne!(starts[1].worker_id, worker_a_id);
    assert_eq!(sessions.load(Ordering::SeqCst), 1, "exactly one session across both workers");
    let record = record(&redis, &ids[0]).await;
    assert_eq!(
        (record["session_id"].as_str(), record["worker"].as_str()),
        ("sesn_1", starts[1].worker_id.as_str())
    );
    let keys = redis.keys().await;
    assert!(!keys.iter().any(|key| key.contains(&worker_a_id)), "A's lists were emptied: {keys:?}");
}

#[tokio::test]
async fn a_worker_that_lost_its_lease_stops_the_run_before_it_runs_elsewhere() {
    let redis = TestRedis::new().await;
    let config = config(&redis);
    let first_token: Arc<Mutex<Option<CancellationToken>>> = Arc::default();
    let first_was_cancelled = Arc::new(AtomicBool::new(false));
    let (token, seen) = (Arc::clone(&first_token), Arc::clone(&first_was_cancelled));
    let handler = TestHandler::new(plan(move |job| {
        let (token, seen) = (Arc::clone(&token), Arc::clone(&seen));
        async move {
            if job.attempt == 1 {
                *token.lock().unwrap() = Some(job.cancel.clone());
                job.cancel.cancelled().await;
                return Outcome::Cancelled;
            }
            let first = token.lock().unwrap().clone().unwrap();
            seen.store(first.is_cancelled(), Ordering::SeqCst);
            Outcome::Succeeded
        }
    }));
    let worker = spawn(&config, handler.clone());
    let ids = enqueue_n(&config, "paused", 1).await;
    poll_until("the run started", LIMIT, || async { !handler.stats.starts().is_empty() }).await;
    // As if this worker had been paused past its lease and another worker's reaper acted:
    // what reap.lua does, the lease marked 0 and the run handed back to the ready list.
    let mut conn = redis.conn.clone();
    let owner = handler.stats.starts()[0].worker_id.clone();
    let _: i64 = conn.zadd(format!("{}:q:leases", redis.prefix), &owner, 0).await.unwrap();
    let processing = format!("{}:q:processing:{owner}", redis.prefix);
    let ready = format!("{}:q:ready", redis.prefix);
    let (right, left) = (redis::Direction::Right, redis::Direction::Left);
    let moved: Option<String> = conn.lmove(&processing, &ready, right, left).await.unwrap();
    assert_eq!(moved.as_deref(), Some(ids[0].as_str()));

    poll_until("the run succeeded", LIMIT, || async {
        state(&redis, &ids[0]).await == "succeeded"
    })
    .await;
    worker.stop().await;
    let starts = handler.stats.starts();
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(starts[1].worker_id, format!("{owner}~1"), "continued under a new id");
    assert!(first_was_cancelled.load(Ordering::SeqCst), "the old attempt was told to stop first");
}

#[tokio::test]
async fn shutdown_drains_in_flight_runs() {
    let redis = TestRedis::new().await;
    let config = config(&redis);
    // Each run is held until the test opens the gate, so all five are in flight at shutdown.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let handler = gated(&gate);
    let worker = spawn(&config, handler.clone());
    let ids = enqueue_n(&config, "drain", 5).await;
    poll_until("all five running", LIMIT, || async { handler.stats.starts().len() == 5 }).await;
    worker.shutdown.cancel();
    assert_eq!(handler.stats.finished.load(Ordering::SeqCst), 0, "all five still in flight");
    gate.add_permits(5);
    worker.stop().await;
    for run_id in &ids {
        assert_eq!(state(&redis, run_id).await, "succeeded", "{run_id}");
    }
    assert_eq!(handler.stats.starts().len(), 5, "nothing ran twice");
    let keys = redis.keys().await;
    assert!(
        !keys.iter().any(|key| key.ends_with(":workers") || key.ends_with(":q:leases")),
        "{keys:?}"
    );
}

#[tokio::test]
async fn runs_that_outlast_the_grace_go_back_to_the_queue_unharmed() {
    let redis = TestRedis::new().await;
    let mut config = config(&redis);
    config.worker.shutdown_grace = Duration::from_millis(200);
    let stubborn = TestHandler::new(plan(|job| async move {
        job.cancel.cancelled().await;
        Outcome::Cancelled
    }));
    let worker = spawn(&config, stubborn.clone());
    let ids = enqueue_n(&config, "long", 3).await;
    poll_until("all three running", LIMIT, || async { stubborn.stats.starts().len() == 3 }).await;
    worker.stop().await;

    let mut conn = redis.conn.clone();
    let mut ready: Vec<String> =
        conn.lrange(format!("{}:q:ready", redis.prefix), 0, -1).await.unwrap();
    ready.sort();
    assert_eq!(ready, ids, "released to the ready list");
    for run_id in &ids {
        let record = record(&redis, run_id).await;
        assert_eq!(
            (record["state"].as_str(), record["attempts"].as_str()),
            ("queued", "0"),
            "{run_id}"
        );
    }
    let keys = redis.keys().await;
    assert!(
        !keys.iter().any(|key| key.contains(":processing:") || key.ends_with(":workers")),
        "{keys:?}"
    );

    let next = TestHandler::succeeding();
    let worker = spawn(&config, next.clone());
    poll_until("the next worker ran them", LIMIT, || async { next.stats.starts().len() == 3 })
        .await;
    worker.stop().await;
    assert!(next.stats.starts().iter().all(|start| start.attempt == 1 && !start.resumed));
}

/// A run whose processing-list entry vanished while it ran (an operator's `DEL`, eviction, a
/// restore) still ends, and its end is recorded: the record names this worker, so nobody took
/// it over. Before, the result was dropped as "taken over" and the run stayed `running`.
#[tokio::test]
async fn a_run_whose_queue_entry_vanished_mid_run_still_ends() {
    let redis = TestRedis::new().await;
    let config = config(&redis);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let handler = gated(&gate);
    let worker = spawn(&config, handler.clone());
    let ids = enqueue_n(&config, "vanish", 3).await;
    poll_until("all three running", LIMIT, || async { handler.stats.starts().len() == 3 }).await;
    let mut conn = redis.conn.clone();
    let lists: Vec<String> = conn.keys(format!("{}:q:processing:*", redis.prefix)).await.unwrap();
    assert_eq!(lists.len(), 1, "one worker, one processing list: {lists:?}");
    let () = conn.del(&lists).await.unwrap();
    gate.add_permits(3);
    for run_id in &ids {
        poll_until(&format!("{run_id} succeeded"), LIMIT, || async {
            state(&redis, run_id).await == "succeeded"
        })
        .await;
        assert_eq!(record(&redis, run_id).await["attempts"], "1", "{run_id}");
    }
    worker.stop().await;
    assert_eq!(handler.stats.starts().len(), 3, "nothing ran twice");
}

/// A run recorded `running` by a worker that is gone, whose queue entry was lost too (its
/// processing list deleted, evicted or missing from a restore), is found by the sweep of the
/// `running` index and returns to the queue: no run stays `running` forever.
#[tokio::test]
async fn a_running_run_nobody_holds_returns_to_the_queue() {
    let redis = TestRedis::new().await;
    let config = config(&redis);
    let ids = enqueue_n(&config, "stranded", 1).await;
    // As a worker that died would leave it once its processing list was lost: the record says
    // running under a worker with no lease, and no list holds the id.
    let mut conn = redis.conn.clone();
    let p = &redis.prefix;
    let removed: i64 = conn.lrem(format!("{p}:q:ready"), 1, &ids[0]).await.unwrap();
    assert_eq!(removed, 1);
    let fields = [("state", "running"), ("worker", "gone-worker"), ("attempts", "1")];
    let () = conn.hset_multiple(format!("{p}:run:{}", ids[0]), &fields).await.unwrap();
    let _: i64 = conn.zrem(format!("{p}:runs:state:queued"), &ids[0]).await.unwrap();
    let _: i64 = conn.zadd(format!("{p}:runs:state:running"), &ids[0], 1).await.unwrap();

    let handler = TestHandler::succeeding();
    let worker = spawn(&config, handler.clone());
    poll_until("the stranded run succeeded", LIMIT, || async {
        state(&redis, &ids[0]).await == "succeeded"
    })
    .await;
    worker.stop().await;
    let starts = handler.stats.starts();
    assert_eq!(starts.len(), 1, "{starts:?}");
    // Its next start knows the last attempt never ended, as for a reaped run: the pipeline
    // then outwaits a request the lost attempt's worker may still have in flight.
    assert!(starts[0].resumed, "the swept run's start is a takeover: {starts:?}");
    let after = record(&redis, &ids[0]).await;
    assert_eq!(after["attempts"], "2", "the lost attempt counts");
    assert!(!after.contains_key("abandoned_at_ms"), "the sweep's mark is used once: {after:?}");
}
