//! Chaos, hostile ids: users such as `../../etc/passwd`, `a/b`, `..`, unicode and run ids with
//! `../` run through the real pipeline (a 300-character user is refused as a user id: Scalekit
//! takes at most 100 in an authorization link; a 100-character one runs, its vault named
//! within Anthropic's 255); every transcript file lands inside
//! `transcripts_dir` (one per run, nothing beside it), every Redis key stays under the test's
//! prefix, and a user with NUL is refused as a user id and at the intake with a reason (the
//! documented rule: no control characters in user ids).

use std::path::{Path, PathBuf};
use std::time::Duration;

use agentcron::ids::UserId;
use agentcron::queue::{NewRun, Queue};
use agentcron::worker;
use redis::AsyncCommands;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::app::spawn_app_with;
use crate::common::poll_until;

/// Scalekit's limit on an identifier in an authorization link (the simulator enforces it).
const SCALEKIT_MAX_IDENTIFIER: usize = 100;

fn hostile() -> Vec<(String, String)> {
    let long = "x".repeat(300);
    let longest = "ü".repeat(SCALEKIT_MAX_IDENTIFIER);
    [
        ("../../etc/passwd", "ids-1"),
        ("a/b", "../../ids-2"),
        ("a%2Fb", "ids-3/../../x"),
        ("..", ".."),
        ("/abs/olute", "/ids-5"),
        ("ünïcödé@例え.jp", "ids-ünï-6"),
        (long.as_str(), "ids-7"),
        ("back\\slash", "ids\\8"),
        (longest.as_str(), "ids-9"),
    ]
    .into_iter()
    .map(|(user, run_id)| (user.to_owned(), run_id.to_owned()))
    .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_give_safe_paths_and_keys() {
    // The transcripts directory is nested so that an escape one or two levels up is visible.
    let outer = tempfile::tempdir().unwrap();
    let transcripts = outer.path().join("a").join("transcripts");
    let app = spawn_app_in(&transcripts).await;
    let shutdown = CancellationToken::new();
    let config = app.config.clone();
    let worker = tokio::spawn({
        let (ctx, shutdown) = (app.ctx.clone(), shutdown.clone());
        async move { worker::run(&config, ctx, shutdown).await }
    });

    let queue = Queue::connect(&app.config.redis).await.unwrap();
    let (too_long, accepted): (Vec<_>, Vec<_>) =
        hostile().into_iter().partition(|(user, _)| user.chars().count() > SCALEKIT_MAX_IDENTIFIER);
    assert_eq!(too_long.len(), 1);
    let refused = UserId::parse(too_long[0].0.as_str());
    assert!(refused.is_err(), "a user Scalekit cannot take is refused before enqueue: {refused:?}");
    let runs: Vec<NewRun> = accepted
        .iter()
        .map(|(user, run_id)| NewRun {
            run_id: crate::common::run_id(run_id),
            ..NewRun::now(crate::common::user_id(user))
        })
        .collect();
    queue.enqueue(&runs, "test").await.unwrap();
    let nul = UserId::parse("nul\0x@example.com");
    assert!(nul.is_err(), "{nul:?}");
    let mut conn = app.redis.conn.clone();
    let payload = json!({"user": "nul\u{0}x@example.com"}).to_string();
    let _: i64 = conn.lpush(app.ctx.keys.intake(), &payload).await.unwrap();

    // Every accepted hostile id ran.
    poll_until("every run succeeded", Duration::from_secs(60), || async {
        let mut open = Vec::new();
        for run in &runs {
            let record = app.record(run.run_id.as_str()).await;
            assert_eq!(record.get("user"), Some(run.user.as_str()));
            if record.get("state") != Some("succeeded") {
                open.push(record);
            }
        }
        if open.is_empty() { Ok(()) } else { Err(open) }
    })
    .await;
    let rejected = poll_until("the NUL payload rejected", Duration::from_secs(60), || async {
        let mut conn = conn.clone();
        let entries: Vec<String> = conn.lrange(app.ctx.keys.rejected(), 0, -1).await.unwrap();
        entries.first().map(|entry| serde_json::from_str::<Value>(entry).unwrap())
    })
    .await;
    assert_eq!(rejected["reason"], "invalid_user");
    shutdown.cancel();
    worker.await.unwrap().unwrap();

    // One transcript file per run that ran, all inside the directory; nothing written beside it.
    let mut files = Vec::new();
    walk(outer.path(), &mut files);
    let root = transcripts.canonicalize().unwrap();
    for file in &files {
        let real = file.canonicalize().unwrap();
        assert!(real.starts_with(&root), "{real:?} outside {root:?}");
        assert!(file.file_name().unwrap().len() <= 200 + ".jsonl".len(), "{file:?}");
    }
    assert_eq!(files.len(), runs.len(), "one transcript per run: {files:#?}");
    for run in &runs {
        let lines: Vec<Value> = files
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f).unwrap().lines().map(str::to_owned).collect::<Vec<_>>()
            })
            .map(|line| serde_json::from_str(&line).unwrap())
            .filter(|line: &Value| line["run_id"] == run.run_id.as_str())
            .collect();
        assert!(!lines.is_empty(), "{} has a transcript", run.run_id);
        assert!(lines.iter().all(|line| line["user"] == run.user.as_str()));
    }

    // Every key holding a hostile id is under the prefix, and none holds a raw NUL.
    let mut all_keys: Vec<String> = Vec::new();
    for pattern in
        ["*etc/passwd*", "*例え*", "*xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx*", "*ids-*", "*a%2Fb*"]
    {
        let mut iter: redis::AsyncIter<'_, String> = conn.scan_match(pattern).await.unwrap();
        while let Some(key) = futures::StreamExt::next(&mut iter).await {
            all_keys.push(key.unwrap());
        }
    }
    let ours: Vec<&String> = all_keys.iter().filter(|k| k.starts_with(&app.redis.prefix)).collect();
    assert!(ours.len() >= runs.len(), "{ours:?}");
    for key in &all_keys {
        assert!(key.starts_with(&format!("{}:", app.redis.prefix)), "{key:?} escaped the prefix");
    }
    for key in app.redis.keys().await {
        assert!(!key.contains('\0'), "{key:?}");
    }
    assert_eq!(app.audit().await["violations"], json!([]));
}

async fn spawn_app_in(transcripts: &Path) -> crate::common::app::TestApp {
    let dir = transcripts.to_path_buf();
    spawn_app_with(move |config| config.transcripts.dir = dir).await
}
