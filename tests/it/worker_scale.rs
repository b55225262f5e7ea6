//! Many runs, many workers: two workers on one queue never run a run twice (or at the same
//! time), and 20,000 runs due at once — one big tick, or a retry storm — are all processed
//! with no worker error (apalis-redis 1.0's own backend dies on 8,000 due jobs, which is one
//! reason the queue is ours).

use std::time::{Duration, Instant, SystemTime};

use agentcron::outcome::Outcome;
use agentcron::queue::NewRun;
use redis::AsyncCommands;

use crate::common::TestRedis;
use crate::common::poll_until;
use crate::common::worker::{TestHandler, config, count_in_state, enqueue_n, plan, queue, spawn};

#[tokio::test]
async fn two_workers_on_one_queue_never_run_a_run_twice() {
    let redis = TestRedis::new().await;
    let config = config(&redis);
    let handler = TestHandler::new(plan(|_| async {
        // Not a wait: 0–2 ms of simulated work, so that the two workers' runs interleave.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..3))).await;
        Outcome::Succeeded
    }));
    let workers = [spawn(&config, handler.clone()), spawn(&config, handler.clone())];
    let ids = enqueue_n(&config, "pair", 1_000).await;
    poll_until("all runs succeeded", Duration::from_secs(60), || async {
        count_in_state(&redis, "succeeded").await == ids.len()
    })
    .await;
    for worker in workers {
        worker.stop().await;
    }
    let counts = handler.stats.counts();
    assert_eq!(counts.len(), ids.len());
    assert!(counts.values().all(|n| *n == 1), "a run executed twice");
    assert_eq!(handler.stats.overlaps.load(std::sync::atomic::Ordering::SeqCst), 0);
    let n_workers = handler
        .stats
        .starts()
        .iter()
        .map(|s| s.worker_id.clone())
        .collect::<std::collections::HashSet<_>>();
    assert_eq!(n_workers.len(), 2, "both workers took runs");
}

#[tokio::test]
async fn twenty_thousand_runs_due_at_once_are_all_processed() {
    const N_RUNS: usize = 20_000;
    let redis = TestRedis::new().await;
    let mut config = config(&redis);
    config.worker.concurrency = 200;
    // All due in the same millisecond, through the delayed set: the shape of a 08:00 tick for
    // 20,000 users or of a retry storm.
    let due = i64::try_from(
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis(),
    )
    .unwrap()
        + 1_000;
    let runs: Vec<NewRun> = (0..N_RUNS)
        .map(|i| NewRun {
            run_id: crate::common::run_id(&format!("tick-{i}")),
            not_before_ms: Some(due),
            instructions: None,
            ..NewRun::now(crate::common::user_id(&format!("u{i}@example.com")))
        })
        .collect();
    let started = Instant::now();
    let enqueued = queue(&config).await.enqueue(&runs, "test").await.unwrap();
    assert!(enqueued.iter().all(|run| run.created));
    let enqueue_time = started.elapsed();

    let handler = TestHandler::succeeding();
    let workers = [spawn(&config, handler.clone()), spawn(&config, handler.clone())];
    poll_until("all runs succeeded", Duration::from_secs(100), || async {
        count_in_state(&redis, "succeeded").await == N_RUNS
    })
    .await;
    let total_time = started.elapsed();
    for worker in workers {
        // `stop` fails the test if a worker ended with an error.
        worker.stop().await;
    }
    eprintln!(
        "20,000 runs: enqueued in {enqueue_time:?}, all succeeded {total_time:?} after enqueue began (due 1 s later)"
    );
    let counts = handler.stats.counts();
    assert_eq!(counts.len(), N_RUNS);
    assert!(counts.values().all(|n| *n == 1));
    let mut conn = redis.conn.clone();
    let p = &redis.prefix;
    let (delayed, ready, dead): (usize, usize, usize) = redis::pipe()
        .zcard(format!("{p}:q:delayed"))
        .llen(format!("{p}:q:ready"))
        .llen(format!("{p}:q:dead"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((delayed, ready, dead), (0, 0, 0));
    let running: usize = conn.zcard(format!("{p}:runs:state:running")).await.unwrap();
    assert_eq!(running, 0);
}
