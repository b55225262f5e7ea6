//! The run lifecycle events (`<p>:events`, one stream per shard): a run's transitions appear in
//! order, a failed attempt's `failed` followed by its retry's `started`; operator actions write
//! theirs; each stream stays capped; a sharded queue writes each run's events to its shard.

use std::collections::HashMap;
use std::time::Duration;

use agentcron::queue::{NewRun, Queue};
use redis::AsyncCommands;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::common::app::spawn_app_with;
use crate::common::worker::config;
use crate::common::{TestRedis, poll_until, run_id, user_id};

type Entry = HashMap<String, String>;

/// Every entry of `stream`, oldest first, as field maps.
async fn entries(redis: &TestRedis, stream: &str) -> Vec<Entry> {
    let mut conn = redis.conn.clone();
    let reply: redis::streams::StreamRangeReply = conn.xrange_all(stream).await.unwrap();
    reply
        .ids
        .into_iter()
        .map(|entry| {
            entry
                .map
                .into_iter()
                .map(|(field, value)| (field, redis::from_redis_value::<String>(value).unwrap()))
                .collect()
        })
        .collect()
}

/// The entries of `run` in `stream`, as `event` (`phase:<name>` for phases) and attempt.
async fn events_of(redis: &TestRedis, stream: &str, run: &str) -> Vec<(String, String)> {
    entries(redis, stream)
        .await
        .into_iter()
        .filter(|entry| entry["run_id"] == run)
        .map(|entry| {
            let event = match entry.get("phase") {
                Some(phase) => format!("phase:{phase}"),
                None => entry["event"].clone(),
            };
            (event, entry["attempt"].clone())
        })
        .collect()
}

#[tokio::test]
async fn a_runs_events_are_its_transitions_in_order_with_the_retry_of_a_failed_attempt() {
    // One try per remote call, so that one 500 fails the attempt and the run is retried.
    let app = spawn_app_with(|config| config.retry.max_attempts = 1).await;
    app.sim_client
        .add_fault(json!({"method": "POST", "path": "/v1/sessions", "status": 500, "count": 1}))
        .await;
    let queue = Queue::connect(&app.config.redis).await.unwrap();
    let new = NewRun {
        run_id: run_id("r-events"),
        schedule: Some("morning-triage".to_owned()),
        ..NewRun::now(user_id("alice@example.com"))
    };
    queue.enqueue(&[new], "test").await.unwrap();
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn({
        let (config, ctx, shutdown) = (app.config.clone(), app.ctx.clone(), shutdown.clone());
        async move { agentcron::worker::run(&config, ctx, shutdown).await }
    });
    let stream = queue.keys().events();
    let events = poll_until("the run succeeded", Duration::from_secs(30), || async {
        let events = events_of(&app.redis, &stream, "r-events").await;
        let done = events.last().is_some_and(|(event, _)| event == "succeeded");
        if done { Ok(events) } else { Err(events) }
    })
    .await;
    shutdown.cancel();
    worker.await.unwrap().unwrap();

    let phases = |attempt: &str| -> Vec<String> {
        events
            .iter()
            .filter(|(event, at)| event.starts_with("phase:") && at == attempt)
            .map(|(event, _)| event.trim_start_matches("phase:").to_owned())
            .collect()
    };
    let transitions: Vec<(&str, &str)> = events
        .iter()
        .filter(|(event, _)| !event.starts_with("phase:"))
        .map(|(event, attempt)| (event.as_str(), attempt.as_str()))
        .collect();
    assert_eq!(
        transitions,
        [("created", "0"), ("started", "1"), ("failed", "1"), ("started", "2"), ("succeeded", "2")],
        "{events:?}"
    );
    // Each attempt's phases lie between its `started` and its end, in the pipeline's order.
    let position = |wanted: (&str, &str)| {
        events.iter().position(|(event, at)| (event.as_str(), at.as_str()) == wanted).unwrap()
    };
    let (first, failed) = (position(("started", "1")), position(("failed", "1")));
    let (second, succeeded) = (position(("started", "2")), position(("succeeded", "2")));
    assert!(events[first + 1..failed].iter().all(|(event, _)| event.starts_with("phase:")));
    assert!(events[second + 1..succeeded].iter().all(|(event, _)| event.starts_with("phase:")));
    let order = ["checking", "minting", "vault", "session", "message", "streaming"];
    let ranks = |phases: Vec<String>| -> Vec<usize> {
        phases.iter().map(|phase| order.iter().position(|known| known == phase).unwrap()).collect()
    };
    let (first_ranks, second_ranks) = (ranks(phases("1")), ranks(phases("2")));
    for ranks in [&first_ranks, &second_ranks] {
        assert!(ranks.windows(2).all(|pair| pair[0] < pair[1]), "in order: {events:?}");
    }
    // The first attempt failed creating the session; the second went to the end of the turn.
    assert_eq!(first_ranks.last(), Some(&3), "{events:?}");
    assert_eq!(second_ranks.last(), Some(&5), "{events:?}");

    // Every entry carries the run's user, schedule, state and time; the failure its class.
    let all: Vec<Entry> = entries(&app.redis, &stream)
        .await
        .into_iter()
        .filter(|entry| entry["run_id"] == "r-events")
        .collect();
    for entry in &all {
        assert_eq!(entry["user"], "alice@example.com", "{entry:?}");
        assert_eq!(entry["schedule"], "morning-triage", "{entry:?}");
        assert!(entry["at_ms"].parse::<i64>().unwrap() > 0, "{entry:?}");
    }
    let states: Vec<&str> = all.iter().map(|entry| entry["state"].as_str()).collect();
    assert_eq!(states.first(), Some(&"queued"));
    assert_eq!(states.last(), Some(&"succeeded"));
    let failed = all.iter().find(|entry| entry["event"] == "failed").unwrap();
    assert_eq!((failed["state"].as_str(), failed["error_class"].as_str()), ("failed", "transient"));
}

#[tokio::test]
async fn operator_actions_write_their_events_and_the_stream_stays_capped() {
    let redis = TestRedis::new().await;
    let mut config = config(&redis);
    config.redis.events_max_len = 100;
    let queue = Queue::connect(&config.redis).await.unwrap();
    let runs: Vec<NewRun> = (0..1_000)
        .map(|i| NewRun { run_id: run_id(&format!("r{i}")), ..NewRun::now(user_id("a@x")) })
        .collect();
    queue.enqueue(&runs, "test").await.unwrap();
    let stream = queue.keys().events();
    let mut conn = redis.conn.clone();
    let len: usize = conn.xlen(&stream).await.unwrap();
    // `MAXLEN ~` trims whole nodes of the stream: never below the cap, and above it by less
    // than one node.
    let node: HashMap<String, usize> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("stream-node-max-entries")
        .query_async(&mut conn)
        .await
        .unwrap();
    let node = node["stream-node-max-entries"];
    assert!((100..=100 + node).contains(&len), "{len} entries with a cap of 100");

    queue.cancel(&run_id("r999")).await.unwrap();
    queue.requeue(&run_id("r999")).await.unwrap();
    let events = events_of(&redis, &stream, "r999").await;
    let expect = [("created", "0"), ("cancelled", "0"), ("requeued", "0")];
    let expect: Vec<(String, String)> =
        expect.iter().map(|(event, at)| ((*event).to_owned(), (*at).to_owned())).collect();
    assert_eq!(events, expect);
}

#[tokio::test]
async fn a_sharded_queue_writes_each_runs_events_to_its_shard() {
    let redis = TestRedis::new().await;
    let mut config = config(&redis);
    config.redis.shards = 4;
    let queue = Queue::connect(&config.redis).await.unwrap();
    let runs: Vec<NewRun> = (0..40)
        .map(|i| NewRun { run_id: run_id(&format!("s{i}")), ..NewRun::now(user_id("a@x")) })
        .collect();
    queue.enqueue(&runs, "test").await.unwrap();
    let keys = queue.keys();
    let streams = keys.all_events();
    assert_eq!(streams[0], keys.events(), "shard 0's stream is `<p>:events`");
    let mut seen = 0;
    for run in &runs {
        let own = keys.for_run(&run.run_id).events();
        let events = events_of(&redis, &own, run.run_id.as_str()).await;
        assert_eq!(events, [("created".to_owned(), "0".to_owned())], "{own}");
        seen += 1;
    }
    let mut total = 0;
    let mut conn = redis.conn.clone();
    for stream in &streams {
        let len: usize = conn.xlen(stream).await.unwrap();
        total += len;
    }
    assert_eq!((seen, total), (40, 40), "{streams:?}");
}
