//! The three benchmarks at small sizes through the real binary: each prints one JSON object
//! with the documented keys and positive numbers, and leaves no key behind. No timing is
//! asserted: benchmarks report numbers, they never fail on them.

use serde_json::Value;

use redis::AsyncCommands as _;

use crate::common::{agentcron, repo_root, text};

fn redis_url() -> String {
    std::env::var("AGENTCRON_TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
}

/// Runs `agentcron bench <args> --json` against the test Redis and returns its report.
fn bench(args: &[&str]) -> Value {
    let url = redis_url();
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--json", "--redis-url", url.as_str()]);
    let output = agentcron(&all, &[("RUST_LOG", "warn")], &repo_root());
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|error| panic!("{error}: {stdout}"))
}

fn assert_positive(report: &Value, keys: &[&str]) {
    for key in keys {
        let value = report[key].as_f64().unwrap_or_else(|| panic!("{key} missing: {report}"));
        assert!(value > 0.0, "{key} = {value}: {report}");
    }
}

#[tokio::test]
async fn bench_queue_reports_rates_latency_and_memory() {
    let report = bench(&["queue", "--jobs", "2000", "--concurrency", "50", "--intake"]);
    assert_eq!(report["jobs"], 2000);
    assert_eq!(report["concurrency"], 50);
    assert_positive(
        &report,
        &[
            "enqueue_jobs_per_sec",
            "enqueue_one_jobs_per_sec",
            "process_jobs_per_sec",
            "p50_ms",
            "p99_ms",
            "peak_rss_mb",
            "intake_jobs_per_sec",
            "redis_commands_per_job",
        ],
    );
    assert!(report["p99_ms"].as_f64() >= report["p50_ms"].as_f64());
    // CPU over the processing phase: present and numeric (a short run may round to 0).
    for key in ["worker_cpu_ms", "redis_cpu_ms"] {
        let value = report[key].as_f64().unwrap_or_else(|| panic!("{key} missing: {report}"));
        assert!(value >= 0.0, "{key} = {value}: {report}");
    }
    assert_positive(&report["baseline"], &["ping_per_sec", "lpush_pipelined_per_sec"]);
    assert_no_keys_left(&report).await;
}

#[tokio::test]
async fn bench_runs_reports_sessions_overhead_and_commands() {
    let report = bench(&["runs", "--users", "20", "--concurrency", "5", "--event-delay-ms", "20"]);
    assert_eq!(report["users"], 20);
    assert_eq!(report["concurrency"], 5);
    assert_eq!(report["succeeded"], 20, "{report}");
    assert_eq!(report["failed"], 0);
    assert_positive(
        &report,
        &[
            "runs_per_sec",
            "events_per_session",
            "peak_concurrent_sessions",
            "peak_rss_mb",
            "redis_commands_per_run",
            "overhead_p50_ms",
        ],
    );
    assert!(report["overhead_p99_ms"].is_number() && report["rss_per_session_kb"].is_number());
    // The overhead leaves out the time spent waiting on the simulator: 8 paused events of
    // 20 ms each at least, which the run's wall time includes.
    let (overhead, wall) = (&report["overhead_p50_ms"], &report["run_p50_ms"]);
    let (overhead, wall) = (overhead.as_f64().unwrap(), wall.as_f64().unwrap());
    assert!(overhead + 160.0 <= wall, "overhead {overhead} ms of a {wall} ms run: {report}");
    assert_no_keys_left(&report).await;
}

#[tokio::test]
async fn bench_fanout_creates_every_run_and_job() {
    let report = bench(&["fanout", "--users", "5000"]);
    assert_eq!(report["users"], 5000);
    assert_eq!(report["enqueued"], 5000);
    assert_eq!(report["run_records"], 5000);
    assert_eq!(report["jobs"], 5000);
    assert_positive(&report, &["fanout_ms", "users_per_sec", "peak_rss_mb", "redis_cpu_ms"]);
    assert_no_keys_left(&report).await;
}

/// The benchmark deleted every key under its prefix.
async fn assert_no_keys_left(report: &Value) {
    let prefix = report["prefix"].as_str().unwrap();
    assert!(prefix.starts_with("agentcron-bench-"), "{prefix}");
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: redis::AsyncIter<'_, String> =
        conn.scan_match(format!("{prefix}:*")).await.unwrap();
    let left = futures::StreamExt::next(&mut keys).await;
    assert!(left.is_none(), "{prefix} left keys behind: {left:?}");
}
