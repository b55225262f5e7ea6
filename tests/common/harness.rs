//! The shared integration-test harness: each test gets its own Redis prefix, a configuration
//! loaded from the shipped `jobs.toml` the way the binary loads it, and helpers to run the
//! `agentcron` binary. Every helper of the tests lives under here: [`app`] (`spawn_app`, the
//! product on a simulator), [`worker`] (in-process workers with a recording test handler),
//! [`procs`] (real `agentcron worker` children), [`private_redis`] (a test-owned `redis-server`
//! for faults that would disturb the shared one), [`sim`] (the simulator's client) and
//! [`poll`] (`poll_until`, the one way to wait for a state).

#[path = "app.rs"]
pub mod app;
pub mod cluster;
#[path = "poll.rs"]
pub mod poll;
#[path = "private_redis.rs"]
pub mod private_redis;
#[path = "procs.rs"]
pub mod procs;
#[path = "redis.rs"]
mod redis_ns;
pub mod sentinel;
#[path = "sim.rs"]
pub mod sim;
pub mod tls;
#[path = "worker.rs"]
pub mod worker;

use std::path::{Path, PathBuf};
use std::process::Output;

pub use poll::poll_until;
pub use redis_ns::TestRedis;

/// A valid run id for a test.
pub fn run_id(id: &str) -> agentcron::ids::RunId {
    agentcron::ids::RunId::parse(id).unwrap()
}

/// A valid user id for a test.
pub fn user_id(id: &str) -> agentcron::ids::UserId {
    agentcron::ids::UserId::parse(id).unwrap()
}

/// The repository root (where `jobs.toml` lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped `jobs.toml`.
pub fn shipped_config() -> PathBuf {
    repo_root().join("jobs.toml")
}

/// Runs the built `agentcron` binary with `args` and `env` (on top of a cleaned environment:
/// no secrets or overrides leak in from the machine running the tests).
pub fn agentcron(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Output {
    agentcron_command(args, env, dir).output().expect("the agentcron binary runs")
}

/// The command [`agentcron`] runs, for a test that reads its output as it comes.
pub fn agentcron_command(args: &[&str], env: &[(&str, &str)], dir: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_agentcron"));
    command.args(args).current_dir(dir);
    for (name, _) in std::env::vars() {
        if name.starts_with("AGENTCRON")
            || name.starts_with("SCALEKIT_")
            || name.starts_with("ANTHROPIC_")
            || name == "REDIS_URL"
        {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command
}

/// `agentcron <args>` with a child worker's `env` (from `procs`), run from the repository root
/// (its `jobs.toml`): the JSON it prints. It must exit 0.
pub fn agentcron_json(env: &[(String, String)], args: &[&str]) -> serde_json::Value {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let output = agentcron(args, &env, &repo_root());
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{args:?}: {stdout} {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

/// Stdout and stderr of a finished command, as text.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
