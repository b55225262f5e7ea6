//! The ops port of real `agentcron worker` processes: a second worker whose `ops.bind` is taken
//! exits with one clear message naming the address and the setting that changes it, and with
//! `ops.bind = "off"` a worker runs its queue without the ops server. Start-up logs the
//! warnings about variables that map to no key.

use std::process::Command;

use crate::common::app::spawn_app;
use crate::common::procs::{child_env, set_env, spawn_worker, wait_for};
use crate::common::{agentcron, repo_root, text};

#[tokio::test]
async fn a_worker_on_a_taken_ops_port_exits_naming_the_address_and_the_setting() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    // The first worker's port, held by this test.
    let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = first.local_addr().unwrap().to_string();
    let mut env = child_env(&app, dir.path());
    set_env(&mut env, "AGENTCRON__OPS__BIND", &addr);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    let output = agentcron(&["worker"], &env, &repo_root());
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let error: Vec<&str> = stderr.lines().filter(|line| line.starts_with("error:")).collect();
    assert_eq!(error.len(), 1, "printed once: {stderr}");
    let error = error[0];
    for phrase in [addr.as_str(), "ops.bind", "AGENTCRON__OPS__BIND", "\"off\""] {
        assert!(error.contains(phrase), "{phrase:?} missing: {error}");
    }
    assert_eq!(stderr.matches("os error").count(), 1, "the OS error once: {stderr}");
    assert_eq!(stderr.matches("in use").count(), 1, "the OS error once: {stderr}");
}

#[tokio::test]
async fn with_ops_bind_off_a_worker_runs_without_the_ops_server() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = child_env(&app, dir.path());
    set_env(&mut env, "AGENTCRON__OPS__BIND", "off");
    set_env(&mut env, "AGENTCRON_WORKER__LEASE", "1s");
    app.enqueue(&[("r-ops-off", "ops-off@example.com")]).await;

    let log = dir.path().join("w.log");
    let mut worker = spawn_worker(&env, &log);
    wait_for(&app, "r-ops-off", &log, |(state, _)| state.as_deref() == Some("succeeded")).await;
    let status = Command::new("kill").arg("-TERM").arg(worker.id().to_string()).status().unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || worker.wait().unwrap()).await.unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(exit.code(), Some(0), "log:\n{log}");
    assert!(log.contains("Ops HTTP is off"), "log:\n{log}");
    assert!(!log.contains("Ops HTTP listening."), "log:\n{log}");
    let warned = log.lines().any(|line| {
        line.contains("AGENTCRON_WORKER__LEASE") && line.contains("AGENTCRON__WORKER__LEASE")
    });
    assert!(warned, "start-up warns about the variable by name:\n{log}");
}

#[test]
fn off_is_a_setting_of_ops_bind_and_config_check_shows_it() {
    let load = |bind: &str| {
        let env = agentcron::config::Env::from_pairs([("AGENTCRON__OPS__BIND", bind)]);
        agentcron::config::load(&crate::common::shipped_config(), &env)
    };
    let config = load("off").unwrap();
    assert_eq!(config.ops.bind, None);
    assert_eq!(serde_json::to_value(&config).unwrap()["ops"]["bind"], "off");
    assert!(load("OFF").unwrap().ops.bind.is_none(), "in any case");
    let error = load("127.0.0.1").unwrap_err();
    assert!(error.to_string().contains("or \"off\""), "{error}");
}
