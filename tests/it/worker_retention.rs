//! Retention with real worker processes: with a 2-second retention, finished runs go (record,
//! transcript stream, every index entry) while a live run stays; transcript days past their
//! age go; resolved notices expire; what agentcron takes is measured and shown by `status`.

use std::time::Duration;

use agentcron::queue::{NewRun, Queue};
use redis::AsyncCommands;

use crate::common::app::{TestApp, spawn_app};
use crate::common::poll::poll_until;
use crate::common::procs::{child_env, set_env, spawn_worker, wait_for};

const DONE: [(&str, &str); 3] = [
    ("r-ret-1", "ret1@example.com"),
    ("r-ret-2", "ret2@example.com"),
    ("r-ret-3", "ret3@example.com"),
];

/// Every key or index entry that names `run_id`.
async fn traces(app: &TestApp, run_id: &str, user: &str) -> Vec<String> {
    let mut conn = app.conn.clone();
    let keys = &app.ctx.keys;
    let (id, user) = (crate::common::run_id(run_id), crate::common::user_id(user));
    let mut found = Vec::new();
    for key in [keys.run(&id), keys.transcript(&id)] {
        if conn.exists::<_, bool>(&key).await.unwrap() {
            found.push(key);
        }
    }
    for index in [keys.runs(), keys.runs_by_user(&user), keys.runs_by_state("succeeded")] {
        let score: Option<f64> = conn.zscore(&index, run_id).await.unwrap();
        if score.is_some() {
            found.push(index);
        }
    }
    found
}

#[tokio::test]
async fn finished_runs_and_old_transcripts_go_and_live_runs_stay() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let old_day = dir.path().join("2020-01-01").join("someone");
    std::fs::create_dir_all(&old_day).unwrap();
    std::fs::write(old_day.join("r-old.jsonl"), b"{}\n").unwrap();
    let mut env = child_env(&app, dir.path());
    set_env(&mut env, "AGENTCRON__RETENTION__RUNS", "2s");
    set_env(&mut env, "AGENTCRON__RETENTION__EVERY", "200ms");
    let log = dir.path().join("worker.log");
    let mut worker = spawn_worker(&env, &log);

    // A run due in an hour: live, whatever its age.
    let queue = Queue::connect(&app.config.redis).await.unwrap();
    let later = NewRun {
        run_id: crate::common::run_id("r-ret-later"),
        not_before_ms: Some(chrono::Utc::now().timestamp_millis() + 3_600_000),
        instructions: None,
        ..NewRun::now(crate::common::user_id("later@example.com"))
    };
    queue.enqueue(&[later], "test").await.unwrap();
    app.enqueue(&DONE).await;
    for (run_id, _) in DONE {
        wait_for(&app, run_id, &log, |(state, _)| state.as_deref() == Some("succeeded")).await;
    }
    for (run_id, user) in DONE {
        poll_until(&format!("{run_id} removed"), Duration::from_secs(20), || async {
            let left = traces(&app, run_id, user).await;
            if left.is_empty() { Ok(()) } else { Err(left) }
        })
        .await;
    }
    assert!(!dir.path().join("2020-01-01").exists(), "a transcript day past its age went");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(dir.path().join(today).exists(), "today's transcripts stay");
    let live = app.record("r-ret-later").await;
    assert_eq!(live.get("state"), Some("queued"), "a live run stays: {live:?}");

    let mut conn = app.conn.clone();
    let status = poll_until("usage measured", Duration::from_secs(20), || {
        let mut conn = conn.clone();
        let app = &app;
        async move {
            let status = agentcron::ops::report::status(&mut conn, &app.ctx.keys, &app.config)
                .await
                .unwrap();
            let measured = ["redis_bytes", "redis_keys", "transcript_bytes"]
                .iter()
                .all(|name| status.usage.contains_key(*name));
            if measured { Ok(status) } else { Err(status.usage) }
        }
    })
    .await;
    assert!(
        status.usage["redis_bytes"] > 0 && status.usage["redis_keys"] > 0,
        "{:?}",
        status.usage
    );
    assert!(status.usage["transcript_bytes"] > 0, "{:?}", status.usage);
    let ttl: i64 = conn.ttl(app.ctx.keys.run(&crate::common::run_id("r-ret-later"))).await.unwrap();
    assert_eq!(ttl, -1, "records carry no TTL of their own; the retention loop removes them");
    worker.kill().unwrap();
    worker.wait().unwrap();
}

/// A resolved notice is kept for the retention, then goes; an open one never expires.
#[tokio::test]
async fn a_resolved_notice_expires_with_the_retention() {
    let app = spawn_app().await;
    let user = "noticed@example.com";
    app.sim_client.set_connection(user, "googlecalendar", Some("EXPIRED")).await;
    app.create_run("r-notice-1", user).await;
    app.execute("r-notice-1").await.unwrap();
    let key = app.ctx.keys.notice(&crate::common::user_id(user), "googlecalendar");
    let mut conn = app.conn.clone();
    assert_eq!(conn.ttl::<_, i64>(&key).await.unwrap(), -1, "open: kept");
    app.sim_client.set_connection(user, "googlecalendar", Some("ACTIVE")).await;
    app.create_run("r-notice-2", user).await;
    app.execute("r-notice-2").await.unwrap();
    let ttl: i64 = conn.ttl(&key).await.unwrap();
    let keep = i64::try_from(app.config.retention.runs.as_secs()).unwrap();
    assert!(ttl > keep - 60 && ttl <= keep, "resolved: kept for the retention, got {ttl}");
}

/// A transcript stream Redis lost mid-turn (a restart without persistence) is re-created by
/// the next event, and still gets its lifetime: no key is left without its retention.
#[tokio::test]
async fn a_transcript_stream_lost_mid_turn_keeps_its_lifetime() {
    let app = spawn_app().await;
    let slow = serde_json::json!({"method": "POST", "path": "/v1/sessions/*/events", "event_delay_ms": 300});
    app.sim_client.add_fault(slow).await;
    app.create_run("r-lost-stream", "lost-stream@example.com").await;
    let key = app.ctx.keys.transcript(&crate::common::run_id("r-lost-stream"));
    let run = app.execute("r-lost-stream");
    let lose = async {
        let mut conn = app.conn.clone();
        poll_until("the stream written", Duration::from_secs(20), || {
            let mut conn = conn.clone();
            let key = key.clone();
            async move { conn.exists::<_, bool>(&key).await.unwrap() }
        })
        .await;
        conn.del::<_, ()>(&key).await.unwrap();
    };
    let (finish, ()) = tokio::join!(run, lose);
    assert!(matches!(finish.unwrap(), agentcron::run::Finish::Succeeded { .. }));
    let mut conn = app.conn.clone();
    let ttl: i64 = conn.ttl(&key).await.unwrap();
    assert!(ttl > 0, "the re-created stream has a lifetime: {ttl}");
}
