//! Real `agentcron worker` child processes for the process-level tests (crash, drain, chaos):
//! the environment that points a child at a test's simulator, Redis and transcripts directory,
//! spawning one with its stderr in a log file, and polling a run record with a deadline.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::app::{API_KEY, CLIENT_SECRET, TestApp};
use super::poll::{WithLog, poll_until};

/// A `[limits]` rate per minute no test reaches (the highest accepted).
pub const UNTHROTTLED: &str = "6000000";

/// Where a child worker should point: the simulator, a Redis server and prefix, a directory.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub sim_url: &'a str,
    pub redis_url: &'a str,
    pub prefix: &'a str,
    pub transcripts: &'a Path,
}

/// The environment a child worker needs to reach `target`, with short heartbeat (300 ms) and
/// lease (2 s) so that a killed worker's runs are taken over quickly. The simulator enforces
/// no rate limit, so Anthropic's are raised out of the way: every request still takes from its
/// bucket in Redis (under the tests' Redis trouble too), and no run waits on one.
pub fn worker_env(target: &Target<'_>) -> Vec<(String, String)> {
    [
        ("SCALEKIT_ENV_URL", target.sim_url.to_owned()),
        ("ANTHROPIC_BASE_URL", target.sim_url.to_owned()),
        ("SCALEKIT_CLIENT_ID", "sim-client-id".to_owned()),
        ("SCALEKIT_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
        ("ANTHROPIC_API_KEY", API_KEY.to_owned()),
        ("REDIS_URL", target.redis_url.to_owned()),
        ("AGENTCRON__REDIS__PREFIX", target.prefix.to_owned()),
        ("AGENTCRON__WORKER__HEARTBEAT", "300ms".to_owned()),
        ("AGENTCRON__WORKER__LEASE", "2s".to_owned()),
        ("AGENTCRON__WORKER__SHUTDOWN_GRACE", "30s".to_owned()),
        ("AGENTCRON__OPS__BIND", "127.0.0.1:0".to_owned()),
        ("AGENTCRON__OPS__SCHEDULER_BIND", "127.0.0.1:0".to_owned()),
        ("AGENTCRON__TRANSCRIPTS__DIR", target.transcripts.display().to_string()),
        ("AGENTCRON__LIMITS__CREATES_PER_MINUTE", UNTHROTTLED.to_owned()),
        ("AGENTCRON__LIMITS__REQUESTS_PER_MINUTE", UNTHROTTLED.to_owned()),
        ("AGENTCRON_LOG_FORMAT", "json".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// [`worker_env`] for `app`'s simulator and Redis prefix.
pub fn child_env(app: &TestApp, transcripts: &Path) -> Vec<(String, String)> {
    child_env_at(app, &app.redis.url, transcripts)
}

/// [`child_env`] on the Redis at `redis_url` (a test's own server, TLS, a cluster).
pub fn child_env_at(app: &TestApp, redis_url: &str, transcripts: &Path) -> Vec<(String, String)> {
    worker_env(&Target {
        sim_url: app.sim.base_url(),
        redis_url,
        prefix: &app.redis.prefix,
        transcripts,
    })
}

/// Sets `name` in `env`, replacing an earlier value.
pub fn set_env(env: &mut Vec<(String, String)>, name: &str, value: &str) {
    env.retain(|(k, _)| k != name);
    env.push((name.to_owned(), value.to_owned()));
}

/// Starts `agentcron worker` with `env` only (nothing leaks in from the machine), its stderr
/// (the logs) appended to `log`.
pub fn spawn_worker(env: &[(String, String)], log: &Path) -> Worker {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_agentcron"));
    command.arg("worker").current_dir(super::repo_root());
    for (name, _) in std::env::vars() {
        if name.starts_with("AGENTCRON")
            || name.starts_with("SCALEKIT_")
            || name.starts_with("ANTHROPIC_")
            || name == "REDIS_URL"
            || name == "RUST_LOG"
            || name.starts_with("OTEL_")
        {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k, v))).stdout(Stdio::null()).stderr(log);
    Worker(command.spawn().unwrap())
}

/// An `agentcron worker` (or any agentcron) child, SIGKILLed when dropped: a test that fails
/// half-way leaves no process behind to load the machine while the other tests run.
pub struct Worker(pub Child);

impl std::ops::Deref for Worker {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Worker {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Best effort in a destructor: the child may have exited or been reaped already.
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Sends `signal` (`-STOP`, `-CONT`, …) to `child` with `kill`.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill").arg(signal).arg(child.id().to_string()).status().unwrap();
    assert!(status.success(), "kill {signal} {}", child.id());
}

/// SIGKILLs `child` and reaps it.
pub fn kill9(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A run's (state, phase).
pub async fn state(app: &TestApp, run_id: &str) -> (Option<String>, Option<String>) {
    let record = app.record(run_id).await;
    (record.get("state").map(str::to_owned), record.get("phase").map(str::to_owned))
}

/// Polls until `done` holds for the run's (state, phase); on timeout (60 s) the failure shows
/// the last (state, phase) and the worker log.
pub async fn wait_for(
    app: &TestApp,
    run_id: &str,
    log: &Path,
    done: impl Fn(&(Option<String>, Option<String>)) -> bool,
) {
    poll_until(&format!("{run_id} to reach the wanted state"), Duration::from_secs(60), || async {
        let now = state(app, run_id).await;
        if done(&now) { Ok(()) } else { Err(WithLog(now, log)) }
    })
    .await;
}

/// The peak resident set size of a running process (`VmHWM` in `/proc/<pid>/status`), in KiB.
/// Read it before the process is killed: a reaped or zombie process has no memory lines.
pub fn peak_rss_kib(child: &Child) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
