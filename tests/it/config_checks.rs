//! Configuration checks that find everything in one pass: a file with several mistakes lists
//! them all with their lines, environment values are blamed on their variable (whatever its
//! case) and never hide other problems, variables that map to no key are warned about by name,
//! and the cross-checks between keys (heartbeat and lease, grace and run timeout, a cron that
//! can never fire); `enqueue --at` refuses more than a year ahead. `config check` and `enqueue`
//! are driven as processes, as operators run them.

use std::path::Path;

use agentcron::config::Origin;

use crate::common::{agentcron, shipped_config, text};
use crate::config::{load, shipped_text, write_config};

/// 1-based line of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|line| line.contains(needle)).unwrap() + 1
}

/// `config check` on `path` with `env` and extra `args`: (exit code, stdout, stderr).
fn config_check(path: &Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["config", "check", "--config", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let output = agentcron(&all, env, path.parent().unwrap());
    let (stdout, stderr) = text(&output);
    (output.status.code().unwrap(), stdout, stderr)
}

/// Five different mistakes (an unknown key with a near miss, a wrong type, a value out of
/// range, a cron that can never fire, a heartbeat not shorter than a third of the lease) are
/// all listed by one `config check`, each with its line. Before, the unknown key stopped the
/// check and it listed one.
#[test]
fn one_config_check_lists_five_mistakes_with_their_lines() {
    let edits = [
        ("concurrency = 200", "concurency = 200", "worker.concurency", "`concurrency`"),
        ("max_attempts = 5", "max_attempts = \"five\"", "worker.max_attempts", "invalid type"),
        ("heartbeat = \"5s\"", "heartbeat = \"10s\"", "worker.heartbeat", "worker.lease"),
        ("redis_maxlen = 10000", "redis_maxlen = 0", "transcripts.redis_maxlen", "from 1 to"),
        ("cron = \"30 17 * * 1-5\"", "cron = \"0 0 30 2 *\"", "schedule[1].cron", "never fires"),
    ];
    let mut broken = shipped_text();
    for (find, replace, _, _) in edits {
        assert!(broken.contains(find), "the shipped file lacks {find:?}");
        broken = broken.replacen(find, replace, 1);
    }
    let (_dir, path) = write_config(&broken);

    let (code, stdout, stderr) = config_check(&path, &[], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("invalid configuration (5 problems)"), "{stderr}");
    for (_, replace, key, phrase) in edits {
        let line = line_of(&broken, replace);
        let shown = stderr
            .lines()
            .find(|shown| shown.contains(&format!("jobs.toml:{line}: `{key}`")))
            .unwrap_or_else(|| panic!("no line for {key} at {line}: {stderr}"));
        assert!(shown.contains(phrase), "{key}: {shown}");
    }
    assert!(stderr.contains("did you mean `concurrency`?"), "{stderr}");

    let (code, stdout, _) = config_check(&path, &[], &["--json"]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 5, "{report:#}");
    for (_, replace, key, _) in edits {
        let problem = problems.iter().find(|p| p["key"] == key).unwrap();
        assert_eq!(problem["line"], line_of(&broken, replace), "{problem}");
    }
}

/// An unknown key (or section) is named with its line and the nearest valid key, and the
/// check goes on to the values after it.
#[test]
fn unknown_keys_name_the_nearest_key_and_checking_continues() {
    let broken = shipped_text()
        .replacen("[http]", "[htttp]", 1)
        .replacen("prefix = \"agentcron\"", "prefixx = \"agentcron\"", 1)
        .replacen("[ops]", "[ops]\nbindd = \"127.0.0.1:1\"", 1)
        .replacen("timezone = \"Europe/Berlin\"", "timezone = \"Nowhere\"", 1)
        .replacen("overlap = \"skip\"", "overlapp = \"skip\"", 1);
    let (_dir, path) = write_config(&broken);
    let error = load(&path, &[("AGENTCRON__REDIS__URL", "redis://127.0.0.1:6379")]).unwrap_err();
    let found: Vec<(String, Option<usize>, String)> = error
        .problems()
        .iter()
        .map(|p| match &p.origin {
            Origin::File { line, .. } => (p.key.clone(), *line, p.message.clone()),
            Origin::Env(var) => panic!("{} blamed on {var}: {error}", p.key),
        })
        .collect();
    let expect = [
        ("redis.prefixx", "prefixx", "did you mean `prefix`?"),
        ("htttp", "[htttp]", "did you mean `http`?"),
        ("ops.bindd", "bindd", "did you mean `bind`?"),
        ("schedule[0].overlapp", "overlapp", "did you mean `overlap`?"),
        ("schedule[1].timezone", "Nowhere", "IANA time zone"),
    ];
    assert_eq!(found.len(), expect.len(), "{error}");
    for (key, needle, phrase) in expect {
        let (_, line, message) = found.iter().find(|(k, _, _)| k == key).unwrap_or_else(|| {
            panic!("{key} not reported: {error}");
        });
        assert_eq!(*line, Some(line_of(&broken, needle)), "{key}: {error}");
        assert!(message.contains(phrase), "{key}: {message}");
    }
}

/// A wrong-typed environment value names its variable and hides nothing: the other problems,
/// from the environment and from the file, are reported beside it.
#[test]
fn a_wrong_typed_variable_is_named_and_other_problems_are_still_found() {
    let broken = shipped_text().replacen("timezone = \"Europe/Berlin\"", "timezone = \"X\"", 1);
    let (_dir, path) = write_config(&broken);
    let env = [
        ("AGENTCRON__WORKER__CONCURRENCY", "abc"),
        ("AGENTCRON__RETRY__INITIAL", "soon"),
        ("AGENTCRON__SETUP__AUTO", "maybe"),
    ];
    let error = load(&path, &env).unwrap_err();
    let found: Vec<(String, Origin)> =
        error.problems().iter().map(|p| (p.key.clone(), p.origin.clone())).collect();
    let env_origin = |var: &str| Origin::Env(var.to_owned());
    for (key, var) in [
        ("worker.concurrency", "AGENTCRON__WORKER__CONCURRENCY"),
        ("retry.initial", "AGENTCRON__RETRY__INITIAL"),
        ("setup.auto", "AGENTCRON__SETUP__AUTO"),
    ] {
        assert!(found.contains(&(key.to_owned(), env_origin(var))), "{key}: {error}");
    }
    assert!(found.iter().any(|(key, _)| key == "schedule[1].timezone"), "{error}");
    assert_eq!(found.len(), 4, "{error}");
    let shown = error.to_string();
    assert!(shown.contains("environment variable AGENTCRON__WORKER__CONCURRENCY"), "{shown}");
    assert!(shown.contains("expected an integer"), "{shown}");
}

/// Variable names map to keys case-insensitively, and a problem in a mixed-case variable is
/// blamed on that variable, never on a line of the file.
#[test]
fn mixed_case_variables_map_to_keys_and_are_blamed_by_name() {
    let config = load(&shipped_config(), &[("AGENTCRON__Worker__Max_Attempts", "7")]).unwrap();
    assert_eq!(config.worker.max_attempts, 7);

    let error = load(&shipped_config(), &[("AGENTCRON__WORKER__concurrency", "0")]).unwrap_err();
    let problem = &error.problems()[0];
    assert_eq!(problem.key, "worker.concurrency");
    assert_eq!(problem.origin, Origin::Env("AGENTCRON__WORKER__concurrency".to_owned()));
    assert!(!error.to_string().contains("jobs.toml:"), "{error}");
}

/// `AGENTCRON_` variables that map to no key are warned about by name, with the nearest
/// variable that would: the single-underscore form, unknown keys and sections. The warnings
/// leave the configuration valid (exit 0) unless `--strict`; the known non-key variables are
/// not warned about. Before, all of them were ignored without a word, and an unknown key in a
/// section was blamed on another variable of that section.
#[test]
fn variables_that_map_to_no_key_are_warned_about_by_name() {
    let path = shipped_config();
    let env = [
        ("AGENTCRON_REDIS__URL", "redis://127.0.0.1:1"),
        ("AGENTCRON__REDIS__SECRET_WORD", "hunter2"),
        ("AGENTCRON__REDIS__PREFIX", "warned"),
        ("AGENTCRON__WROKER__CONCURRENCY", "5"),
        ("AGENTCRON_LOG_FORMAT", "pretty"),
        ("AGENTCRON_CONFIG", path.to_str().unwrap()),
    ];
    let (code, stdout, stderr) = config_check(&path, &env, &[]);
    assert_eq!(code, 0, "warnings alone leave the configuration valid: {stderr}");
    assert!(stdout.contains("url = \"redis://127.0.0.1:6379\""), "the variable is ignored");
    assert!(stdout.contains("prefix = \"warned\""), "{stdout}");
    let warning = |var: &str| {
        stderr
            .lines()
            .find(|line| line.starts_with(&format!("warning: environment variable {var}:")))
            .unwrap_or_else(|| panic!("no warning for {var}: {stderr}"))
            .to_owned()
    };
    assert!(warning("AGENTCRON_REDIS__URL").contains("did you mean AGENTCRON__REDIS__URL?"));
    assert!(warning("AGENTCRON__REDIS__SECRET_WORD").contains("no configuration key"));
    let suggestion = "did you mean AGENTCRON__WORKER__CONCURRENCY?";
    assert!(warning("AGENTCRON__WROKER__CONCURRENCY").contains(suggestion));
    assert!(!stderr.contains("hunter2"), "values are never shown: {stderr}");
    for quiet in ["AGENTCRON__REDIS__PREFIX", "AGENTCRON_LOG_FORMAT", "AGENTCRON_CONFIG"] {
        assert!(!stderr.contains(&format!("variable {quiet}:")), "{quiet}: {stderr}");
    }

    let (code, _, stderr) = config_check(&path, &env, &["--strict"]);
    assert_eq!(code, 1, "--strict fails on warnings: {stderr}");
    let (code, stdout, _) = config_check(&path, &env, &["--json"]);
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let warned: Vec<&str> =
        report["warnings"].as_array().unwrap().iter().filter_map(|w| w["env"].as_str()).collect();
    assert_eq!(
        warned,
        ["AGENTCRON_REDIS__URL", "AGENTCRON__REDIS__SECRET_WORD", "AGENTCRON__WROKER__CONCURRENCY"]
    );
}

/// One cross-check case: the `[worker]` lines or the schedule's cron, and the problem expected
/// (key and phrase), or none.
struct Cross {
    worker: &'static str,
    cron: &'static str,
    expect: Option<(&'static str, &'static str)>,
}

const CROSS: &[Cross] = &[
    Cross { worker: "heartbeat = \"5s\"\nlease = \"30s\"", cron: "", expect: None },
    Cross { worker: "heartbeat = \"9s\"\nlease = \"30s\"", cron: "", expect: None },
    Cross {
        worker: "heartbeat = \"10s\"\nlease = \"30s\"",
        cron: "",
        expect: Some(("worker.heartbeat", "shorter than a third of worker.lease")),
    },
    Cross {
        worker: "heartbeat = \"1m\"\nlease = \"30s\"",
        cron: "",
        expect: Some(("worker.heartbeat", "shorter than a third of worker.lease")),
    },
    Cross { worker: "heartbeat = \"300ms\"\nlease = \"1s\"", cron: "", expect: None },
    Cross { worker: "shutdown_grace = \"30s\"\nrun_timeout = \"15m\"", cron: "", expect: None },
    Cross {
        worker: "shutdown_grace = \"15m\"\nrun_timeout = \"15m\"",
        cron: "",
        expect: Some(("worker.shutdown_grace", "shorter than worker.run_timeout")),
    },
    Cross {
        worker: "shutdown_grace = \"1h\"\nrun_timeout = \"10m\"",
        cron: "",
        expect: Some(("worker.shutdown_grace", "shorter than worker.run_timeout")),
    },
    Cross { worker: "", cron: "0 0 8 * * Mon-Fri", expect: None },
    Cross { worker: "", cron: "0 0 29 2 *", expect: None },
    Cross { worker: "", cron: "0 0 12 13 * Fri", expect: None },
    Cross { worker: "", cron: "0 0 30 2 *", expect: Some(("schedule[0].cron", "never fires")) },
    Cross { worker: "", cron: "0 0 31 4 *", expect: Some(("schedule[0].cron", "never fires")) },
    Cross {
        worker: "",
        cron: "0 0 0 1 1 * 2020",
        expect: Some(("schedule[0].cron", "never fires")),
    },
];

#[test]
fn cross_checks_between_keys() {
    for case in CROSS {
        let mut text = format!(
            "[scalekit]\nenv_url = \"https://x.scalekit.dev\"\n[worker]\n{}\n",
            case.worker
        );
        if !case.cron.is_empty() {
            text.push_str(&format!("[[schedule]]\nname = \"s\"\ncron = \"{}\"\n", case.cron));
        }
        let (_dir, path) = write_config(&text);
        let what = format!("{}{}", case.worker, case.cron);
        match (load(&path, &[]), case.expect) {
            (Ok(_), None) => {}
            (Err(error), Some((key, phrase))) => {
                let problems = error.problems();
                assert_eq!(problems.len(), 1, "{what}: {error}");
                assert_eq!(problems[0].key, key, "{what}: {error}");
                assert!(problems[0].message.contains(phrase), "{what}: {error}");
                let Origin::File { line, .. } = &problems[0].origin else { panic!("{error}") };
                let written = key.rsplit('.').next().unwrap();
                assert_eq!(*line, Some(line_of(&text, &format!("{written} ="))), "{what}");
            }
            (Ok(_), Some(expect)) => panic!("{what}: accepted, expected {expect:?}"),
            (Err(error), None) => panic!("{what}: {error}"),
        }
    }
    // The same cross-check through the environment names the variable.
    let env = [("AGENTCRON__WORKER__HEARTBEAT", "20s")];
    let error = load(&shipped_config(), &env).unwrap_err();
    assert_eq!(error.problems()[0].origin, Origin::Env("AGENTCRON__WORKER__HEARTBEAT".to_owned()));
}

/// `enqueue --at` refuses a time more than a year ahead, before touching Redis.
#[test]
fn enqueue_at_refuses_more_than_a_year_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let config = shipped_config();
    let env =
        [("AGENTCRON_CONFIG", config.to_str().unwrap()), ("REDIS_URL", "redis://127.0.0.1:1")];
    for at in ["400d", "500years", "1000000000y", "2200-01-01T00:00:00Z"] {
        let output = agentcron(&["enqueue", "alice@example.com", "--at", at], &env, dir.path());
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{at}: {stderr}");
        assert!(stderr.contains("--at") && stderr.contains("a year"), "{at}: {stderr}");
    }
}

/// `[redis.tls]` is checked before anything connects: a file that is not there, a client
/// certificate without its key, TLS files with a plain `redis://` URL; each problem names its
/// key. A password in `REDIS_PASSWORD` is redacted in the printed configuration. See: issue 24.
#[test]
fn redis_tls_settings_are_checked_and_the_password_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("ca.pem");
    std::fs::write(&pem, "not checked here").unwrap();
    let pem = pem.display().to_string();
    let cases = [
        (
            "rediss://h:6379",
            format!("ca_file = \"{pem}.missing\""),
            "redis.tls.ca_file",
            "cannot read",
        ),
        ("rediss://h:6379", format!("cert_file = \"{pem}\""), "redis.tls.key_file", "both"),
        ("redis://h:6379", format!("ca_file = \"{pem}\""), "redis.url", "rediss://"),
    ];
    for (url, tls, key, phrase) in cases {
        let text = format!(
            "[scalekit]\nenv_url = \"https://x.scalekit.dev\"\n[redis]\nurl = \"{url}\"\n[redis.tls]\n{tls}\n"
        );
        let (_dir, path) = write_config(&text);
        let error = load(&path, &[]).unwrap_err();
        let problems = error.problems();
        assert_eq!(problems.len(), 1, "{text}: {error}");
        assert_eq!(problems[0].key, key, "{text}: {error}");
        assert!(problems[0].message.contains(phrase), "{text}: {error}");
    }
    // Sentinel needs both its keys, and every node is a host:port.
    for (sentinel, key) in [
        ("master = \"mymaster\"", "redis.sentinel.nodes"),
        ("master = \"m\"\nnodes = [\"a:26379\", \"b\"]", "redis.sentinel.nodes"),
        ("nodes = [\"a:26379\"]", "redis.sentinel.master"),
    ] {
        let text = format!(
            "[scalekit]\nenv_url = \"https://x.scalekit.dev\"\n[redis.sentinel]\n{sentinel}\n"
        );
        let (_dir, path) = write_config(&text);
        let error = load(&path, &[]).unwrap_err();
        assert_eq!(error.problems()[0].key, key, "{text}: {error}");
    }
    let text = format!(
        "[scalekit]\nenv_url = \"https://x.scalekit.dev\"\n[redis]\nurl = \"rediss://h:6379\"\nusername = \"agentcron\"\n[redis.tls]\nca_file = \"{pem}\"\n"
    );
    let (_dir, path) = write_config(&text);
    let (code, stdout, stderr) =
        config_check(&path, &[("REDIS_PASSWORD", "pw-never-printed-91c2")], &["--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("pw-never-printed-91c2") && !stderr.contains("pw-never-printed-91c2"));
    let printed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed["config"]["redis"]["password"], "[REDACTED]");
    assert_eq!(printed["config"]["redis"]["username"], "agentcron");
}

/// A cluster is one seed node over TCP and never beside Sentinel; a `redis+cluster://` URL
/// turns it on; the sentinels' password is redacted like every secret.
#[test]
fn redis_cluster_and_sentinel_settings_are_checked() {
    let sentinel = "[redis.sentinel]\nmaster = \"m\"\nnodes = [\"a:26379\"]\n";
    for (redis, extra, key) in [
        ("cluster = true\n", sentinel, "redis.cluster"),
        ("url = \"redis+cluster://h:7000\"\n", sentinel, "redis.cluster"),
        ("cluster = true\nurl = \"unix:///tmp/redis.sock\"\n", "", "redis.cluster"),
        ("cluster_nodes = [\"a:7000\", \"b\"]\n", "", "redis.cluster_nodes"),
    ] {
        let text =
            format!("[scalekit]\nenv_url = \"https://x.scalekit.dev\"\n[redis]\n{redis}{extra}");
        let (_dir, path) = write_config(&text);
        let error = load(&path, &[]).unwrap_err();
        assert_eq!(error.problems()[0].key, key, "{text}: {error}");
    }
    let text = "[scalekit]\nenv_url = \"https://x.scalekit.dev\"\n[redis]\nurl = \"redis+cluster://h:7000\"\n";
    let (_dir, path) = write_config(text);
    let config = load(&path, &[]).unwrap();
    assert!(config.redis.cluster && config.redis.keys().ready() == "{agentcron}:q:ready");
    let text = format!("[scalekit]\nenv_url = \"https://x.scalekit.dev\"\n{sentinel}");
    let (_dir, path) = write_config(&text);
    let secret = ("AGENTCRON__REDIS__SENTINEL__PASSWORD", "sentinel-pw-never-printed-5e1a");
    let (code, stdout, stderr) = config_check(&path, &[secret], &["--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains(secret.1) && !stderr.contains(secret.1), "{stdout}");
    let printed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed["config"]["redis"]["sentinel"]["password"], "[REDACTED]");
}
