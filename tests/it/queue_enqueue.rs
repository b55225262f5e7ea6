//! Enqueueing: the run record is the dedupe point, the indexes and lists are written as the
//! key layout documents, `not_before` waits in the delayed set, and `agentcron enqueue` prints
//! the run ids it created.

use agentcron::ids::{RunId, UserId};
use agentcron::queue::NewRun;
use redis::AsyncCommands;

use crate::common::worker::{config, queue, record};
use crate::common::{TestRedis, agentcron, text};

#[tokio::test]
async fn enqueue_creates_the_record_once_and_queues_the_id_once() {
    let redis = TestRedis::new().await;
    let queue = queue(&config(&redis)).await;
    let run = NewRun {
        run_id: crate::common::run_id("morning:alice@example.com:1767254400"),
        user: crate::common::user_id("alice@example.com"),
        schedule: Some("morning".to_owned()),
        prompt: Some("Triage my inbox.".to_owned()),
        not_before_ms: None,
        instructions: None,
    };
    let first = queue.enqueue(std::slice::from_ref(&run), "test").await.unwrap();
    let second = queue.enqueue(&[run.clone(), run.clone()], "test").await.unwrap();
    assert!(first[0].created);
    assert!(second.iter().all(|enqueued| !enqueued.created), "{second:?}");

    let record = record(&redis, run.run_id.as_str()).await;
    for (field, value) in [
        ("run_id", run.run_id.as_str()),
        ("user", "alice@example.com"),
        ("schedule", "morning"),
        ("prompt", "Triage my inbox."),
        ("state", "queued"),
        ("attempts", "0"),
        ("source", "test"),
    ] {
        assert_eq!(record.get(field).map(String::as_str), Some(value), "{field} in {record:?}");
    }
    assert!(record["created_at_ms"].parse::<i64>().unwrap() > 1_700_000_000_000);

    let mut conn = redis.conn.clone();
    let p = &redis.prefix;
    let ready: Vec<String> = conn.lrange(format!("{p}:q:ready"), 0, -1).await.unwrap();
    assert_eq!(ready, [run.run_id.as_str()], "queued exactly once");
    for index in ["runs", "runs:user:alice@example.com", "runs:state:queued"] {
        let score: Option<i64> = conn.zscore(format!("{p}:{index}"), &run.run_id).await.unwrap();
        assert_eq!(
            score.map(|ms| ms.to_string()),
            Some(record["created_at_ms"].clone()),
            "{index}"
        );
    }
}

#[tokio::test]
async fn not_before_in_the_future_waits_in_the_delayed_set() {
    let redis = TestRedis::new().await;
    let queue = queue(&config(&redis)).await;
    let later = agentcron_now_ms() + 3_600_000;
    let run = NewRun {
        not_before_ms: Some(later),
        instructions: None,
        ..NewRun::now(crate::common::user_id("bob@example.com"))
    };
    let past = NewRun {
        not_before_ms: Some(1_000),
        instructions: None,
        ..NewRun::now(crate::common::user_id("carol@example.com"))
    };
    queue.enqueue(&[run.clone(), past.clone()], "test").await.unwrap();
    let mut conn = redis.conn.clone();
    let due: Option<i64> =
        conn.zscore(format!("{}:q:delayed", redis.prefix), &run.run_id).await.unwrap();
    assert_eq!(due, Some(later));
    let ready: Vec<String> = conn.lrange(format!("{}:q:ready", redis.prefix), 0, -1).await.unwrap();
    assert_eq!(ready, [past.run_id.as_str()], "a not_before in the past is ready now");
    assert_eq!(record(&redis, run.run_id.as_str()).await["not_before_ms"], later.to_string());
}

#[tokio::test]
async fn a_large_batch_keeps_order_dedupes_within_itself_and_indexes_every_run() {
    let redis = TestRedis::new().await;
    let queue = queue(&config(&redis)).await;
    // More than one script call's worth (500), with a repeat inside the batch and across calls.
    let runs: Vec<NewRun> = (0..1_203)
        .map(|i| NewRun {
            run_id: crate::common::run_id(&format!("r-{i:05}")),
            ..NewRun::now(crate::common::user_id(&format!("u{}@x", i % 7)))
        })
        .collect();
    let mut batch = runs.clone();
    batch.insert(600, runs[3].clone());
    let enqueued = queue.enqueue(&batch, "test").await.unwrap();
    assert_eq!(enqueued.iter().filter(|e| e.created).count(), runs.len());
    assert!(!enqueued[600].created, "the repeat inside the batch: {:?}", enqueued[600]);
    let again = queue.enqueue(&runs[..10], "test").await.unwrap();
    assert!(again.iter().all(|e| !e.created), "{again:?}");

    let mut conn = redis.conn.clone();
    let p = &redis.prefix;
    let ready: Vec<String> = conn.lrange(format!("{p}:q:ready"), 0, -1).await.unwrap();
    let oldest_first: Vec<String> = ready.into_iter().rev().collect();
    let ids: Vec<String> = runs.iter().map(|run| run.run_id.to_string()).collect();
    assert_eq!(oldest_first, ids, "each run queued once, first in first out");
    for (index, expect) in [("runs", 1_203), ("runs:state:queued", 1_203), ("runs:user:u3@x", 172)]
    {
        let n: usize = conn.zcard(format!("{p}:{index}")).await.unwrap();
        assert_eq!(n, expect, "{index}");
    }
}

#[test]
fn malformed_ids_are_refused_before_a_run_exists() {
    // A run carries only parsed ids, so the queue never sees a malformed one.
    assert!(RunId::parse("has space").is_err());
    assert!(UserId::parse(" bob@example.com").is_err());
    assert!(UserId::parse("x".repeat(256)).is_err());
}

#[tokio::test]
async fn cli_enqueue_prints_run_ids_and_dedupes_a_given_run_id() {
    let redis = TestRedis::new().await;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.txt");
    std::fs::write(&users, "# morning users\ncarol@example.com\n\ndave@example.com\n").unwrap();
    let config = crate::common::shipped_config();
    let env =
        [("AGENTCRON__REDIS__PREFIX", redis.prefix.as_str()), ("REDIS_URL", redis.url.as_str())];
    let run = |args: &[&str]| {
        let mut all = vec!["--config", config.to_str().unwrap(), "enqueue"];
        all.extend_from_slice(args);
        agentcron(&all, &env, dir.path())
    };

    let output =
        run(&["alice@example.com", "bob@example.com", "--from-file", "users.txt", "--json"]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let printed: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    let users: Vec<&str> = printed.iter().map(|run| run["user"].as_str().unwrap()).collect();
    assert_eq!(
        users,
        ["alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"]
    );
    for run in &printed {
        assert_eq!(run["created"], true);
        let run_id = run["run_id"].as_str().unwrap();
        assert_eq!(record(&redis, run_id).await["source"], "cli");
    }

    let output = run(&["erin@example.com", "--run-id", "manual-1", "--at", "10m"]);
    let (stdout, _) = text(&output);
    assert!(output.status.success());
    assert!(stdout.contains("manual-1") && stdout.contains("queued"), "{stdout}");
    let output = run(&["erin@example.com", "--run-id", "manual-1"]);
    let (stdout, _) = text(&output);
    assert!(stdout.contains("manual-1") && stdout.contains("exists"), "{stdout}");
    assert!(record(&redis, "manual-1").await.contains_key("not_before_ms"));

    let output = run(&["a@example.com", "b@example.com", "--run-id", "x"]);
    assert_eq!(output.status.code(), Some(2), "--run-id with two users is a usage error");
    let output = run(&[]);
    assert_eq!(output.status.code(), Some(2), "no users is a usage error");
    // Scalekit takes identifiers of at most 100 characters in an authorization link.
    let too_long = "u".repeat(101);
    let output = run(&[too_long.as_str()]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "a user over 100 characters: {stderr}");
    assert!(stderr.contains("at most 100"), "{stderr}");
    assert!(run(&["u".repeat(100).as_str()]).status.success(), "100 characters are fine");
}

fn agentcron_now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis(),
    )
    .unwrap()
}
