//! The binary's surface: help lists every subcommand, `config check` accepts the shipped file
//! and rejects broken copies naming the key, flags work before or after the subcommand, and
//! secrets never reach the output.

use crate::common::{agentcron, repo_root, shipped_config, text};

const SUBCOMMANDS: [&str; 18] = [
    "setup",
    "authorize",
    "enqueue",
    "worker",
    "scheduler",
    "status",
    "runs",
    "run",
    "result",
    "transcript",
    "notices",
    "requeue",
    "cancel",
    "schedules",
    "sim",
    "demo",
    "bench",
    "config",
];

#[test]
fn help_lists_every_subcommand_and_the_exit_codes() {
    let output = agentcron(&["--help"], &[], &repo_root());
    assert!(output.status.success());
    let (stdout, _) = text(&output);
    let listed: Vec<&str> = stdout
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    for name in SUBCOMMANDS {
        assert!(listed.contains(&name), "{name} missing from --help: {listed:?}");
    }
    assert!(stdout.contains("Exit codes: 0 success, 1 failure, 2 bad usage"));
    assert!(stdout.contains("4 authorize --wait timed out"), "{stdout}");
    assert!(stdout.contains("Examples:"));

    let output = agentcron(&["authorize", "--help"], &[], &repo_root());
    let (stdout, _) = text(&output);
    assert!(
        stdout.contains("4 --wait timed out") && stdout.contains("--connect-budget"),
        "{stdout}"
    );
}

#[test]
fn config_check_accepts_the_shipped_file() {
    let path = shipped_config();
    let path = path.to_str().unwrap();
    for args in
        [vec!["config", "check", "--config", path], vec!["--config", path, "config", "check"]]
    {
        let output = agentcron(&args, &[], &repo_root());
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(
            stdout.contains("[redis]") && stdout.contains("name = \"morning-triage\""),
            "{stdout}"
        );
        assert!(stderr.contains("configuration OK"), "{stderr}");
    }
}

#[test]
fn config_check_finds_the_file_through_the_environment_and_the_working_directory() {
    let path = shipped_config();
    let elsewhere = tempfile::tempdir().unwrap();
    let output = agentcron(
        &["config", "check"],
        &[("AGENTCRON_CONFIG", path.to_str().unwrap())],
        elsewhere.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output).1);

    let output = agentcron(&["config", "check"], &[], &repo_root());
    assert_eq!(output.status.code(), Some(0), "./jobs.toml is the default");

    let output = agentcron(&["config", "check"], &[], elsewhere.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).1.contains("cannot read configuration file jobs.toml"));
}

#[test]
fn config_check_rejects_a_broken_copy_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let broken = std::fs::read_to_string(shipped_config()).unwrap().replacen(
        "timezone = \"Europe/Berlin\"",
        "timezone = \"Europe/Atlantis\"",
        1,
    );
    let line = broken.lines().position(|l| l.contains("Atlantis")).unwrap() + 1;
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, broken).unwrap();

    let output =
        agentcron(&["config", "check", "--config", path.to_str().unwrap()], &[], dir.path());
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout.is_empty(), "nothing on stdout without --json: {stdout}");
    assert!(stderr.contains(&format!("broken.toml:{line}: `schedule[1].timezone`")), "{stderr}");

    let output = agentcron(
        &["config", "check", "--json", "--config", path.to_str().unwrap()],
        &[],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["problems"][0]["key"], "schedule[1].timezone");
    assert_eq!(report["problems"][0]["line"], line);
}

#[test]
fn config_check_json_and_secrets_flag() {
    let path = shipped_config();
    let args = ["config", "check", "--json", "--secrets", "--config", path.to_str().unwrap()];
    let output = agentcron(&args, &[], &repo_root());
    assert_eq!(output.status.code(), Some(1), "secrets are required with --secrets");
    assert!(text(&output).1.contains("SCALEKIT_CLIENT_SECRET"));

    let env = [
        ("SCALEKIT_CLIENT_ID", "client-id"),
        ("SCALEKIT_CLIENT_SECRET", "SECRET-cli-scalekit-123"),
        ("ANTHROPIC_API_KEY", "SECRET-cli-anthropic-456"),
        ("AGENTCRON__OPS__TOKEN", "SECRET-cli-ops-789"),
        ("AGENTCRON__WORKER__CONCURRENCY", "42"),
    ];
    let output = agentcron(&args, &env, &repo_root());
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["config"]["worker"]["concurrency"], 42);
    assert_eq!(report["config"]["secrets"]["anthropic_api_key"], "[REDACTED]");
    assert!(!stdout.contains("SECRET") && !stderr.contains("SECRET"), "{stdout}{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let output = agentcron(&["no-such-command"], &[], &repo_root());
    assert_eq!(output.status.code(), Some(2), "clap's usage errors share exit code 2");
    let output = agentcron(&["runs", "--limit", "many"], &[], &repo_root());
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).1.contains("--limit"));
}

#[test]
fn log_format_is_a_global_flag_and_an_environment_variable() {
    let path = shipped_config();
    let path = path.to_str().unwrap();
    let output = agentcron(
        &["config", "check", "--log-format", "json", "--config", path],
        &[],
        &repo_root(),
    );
    assert_eq!(output.status.code(), Some(0));
    let output = agentcron(
        &["config", "check", "--config", path],
        &[("AGENTCRON_LOG_FORMAT", "xml")],
        &repo_root(),
    );
    assert_eq!(output.status.code(), Some(2), "an unknown format is a usage error");
}
