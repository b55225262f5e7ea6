//! Commands that behave in pipes and outages: a reader that goes away (`| head -1`) ends the
//! command quietly with exit 0, however the write broke (a table written line by line, or one
//! large JSON document); a Redis nobody serves fails a report within `redis.connect_timeout`
//! (3 s) naming the URL without its password, the cause said once.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{TestRedis, agentcron, agentcron_command, text, user_id};

#[tokio::test]
async fn a_reader_that_goes_away_ends_the_command_quietly_with_exit_0() {
    let redis = TestRedis::new().await;
    let config = crate::common::worker::config(&redis);
    let queue = crate::common::worker::queue(&config).await;
    // Enough runs that the output is larger than a pipe's buffer (64 KiB).
    let runs: Vec<_> = (0..1000)
        .map(|i| agentcron::queue::NewRun {
            run_id: crate::common::run_id(&format!("pipe-run-{i:04}-{}", "x".repeat(40))),
            ..agentcron::queue::NewRun::now(user_id(&format!("pipe-user-{i}@example.com")))
        })
        .collect();
    queue.enqueue(&runs, "test").await.unwrap();
    let env =
        [("REDIS_URL", redis.url.as_str()), ("AGENTCRON__REDIS__PREFIX", redis.prefix.as_str())];
    let dir = tempfile::tempdir().unwrap();
    for args in [&["runs", "--limit", "1000"][..], &["runs", "--limit", "1000", "--json"][..]] {
        let mut child = agentcron_command(args, &env, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read one line, then hang up, as `head -1` does.
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        assert!(!first.is_empty(), "{args:?}");
        let output =
            tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: no message, no panic: {stderr}");
    }
}

#[tokio::test]
async fn a_report_with_redis_down_fails_within_the_timeout_naming_the_url_once() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1; the password must not be shown.
    let env = [("REDIS_URL", "redis://:hunter2-redis-pw@127.0.0.1:1")];
    for args in [&["status"][..], &["runs"][..], &["requeue", "r-1"][..]] {
        let started = Instant::now();
        let output = tokio::task::spawn_blocking({
            let path = dir.path().to_path_buf();
            let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                agentcron(&args, &env, &path)
            }
        })
        .await
        .unwrap();
        let took = started.elapsed();
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
        assert_eq!(stderr.matches("redis://:***@127.0.0.1:1").count(), 1, "{args:?}: {stderr}");
        assert_eq!(stderr.matches("refused").count(), 1, "{args:?}: the cause once: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}
