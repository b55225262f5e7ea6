//! The deployment files in `deploy/` cannot run here (no Docker engine, no cluster), so they are
//! checked statically: every file parses, every `agentcron` invocation they contain (compose
//! commands, Kubernetes container args, the Dockerfile's CMD, the systemd `ExecStart`) names a
//! subcommand and flags that `agentcron --help` of the built binary lists, and the promises the
//! issue makes hold: Redis with AOF and `noeviction`, two workers, a scheduler, a `sim`
//! profile, a grace period above `shutdown_grace`, probes on `/healthz` and `/readyz`, two
//! scheduler replicas, a ServiceMonitor on `/metrics`. See: issue 10.
//!
//! YAML is parsed with `yaml_serde` (the YAML organisation's maintained successor of the
//! deprecated `serde_yaml`) rather than by lines: a real parser also proves the files are
//! valid YAML, applies compose's `<<` merge keys, and reads multi-line strings correctly.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use yaml_serde::Value;

use crate::common::{agentcron, repo_root, text};

fn deploy(path: &str) -> PathBuf {
    repo_root().join("deploy").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
}

/// Every YAML document in `deploy/<path>`, merge keys applied.
fn documents(path: &str) -> Vec<Value> {
    let text = read(path);
    yaml_serde::Deserializer::from_str(&text)
        .map(|document| {
            let mut value = <Value as serde::Deserialize>::deserialize(document)
                .unwrap_or_else(|e| panic!("deploy/{path} is not valid YAML: {e}"));
            value.apply_merge().unwrap();
            value
        })
        .filter(|value| !value.is_null())
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// `agentcron <args> --help`, which must succeed.
fn help(args: &[&str]) -> String {
    let mut full: Vec<&str> = args.to_vec();
    full.push("--help");
    let output = agentcron(&full, &[], &repo_root());
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "agentcron {full:?} failed: {stderr}");
    stdout
}

/// The subcommands listed under `Commands:`.
fn subcommands(help_text: &str) -> BTreeSet<String> {
    help_text
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Whether `help_text` documents `flag` (as `--flag <VALUE>`, `--flag` alone, …).
fn documents_flag(help_text: &str, flag: &str) -> bool {
    help_text.match_indices(flag).any(|(i, _)| {
        let next = help_text[i + flag.len()..].chars().next();
        next.is_none_or(|c| !(c.is_alphanumeric() || c == '-' || c == '_'))
    })
}

/// Checks one invocation (the arguments after `agentcron`): its subcommand (and nested
/// subcommand) exists, and each `--flag` is documented where it is used.
fn check_invocation(origin: &str, args: &[String]) {
    let top = help(&[]);
    let Some(sub_at) = args.iter().position(|arg| subcommands(&top).contains(arg)) else {
        panic!("{origin}: no agentcron subcommand in {args:?}");
    };
    let mut path = vec![args[sub_at].as_str()];
    let sub_help = help(&path);
    if let Some(nested) = args.get(sub_at + 1).filter(|arg| subcommands(&sub_help).contains(*arg)) {
        path.push(nested);
    }
    for (i, arg) in args.iter().enumerate() {
        let Some(flag) = arg.strip_prefix("--").map(|rest| rest.split('=').next().unwrap_or(rest))
        else {
            continue;
        };
        let flag = format!("--{flag}");
        let scope = if i < sub_at { top.clone() } else { help(&path) };
        assert!(
            documents_flag(&scope, &flag),
            "{origin}: `agentcron {}` has no flag {flag} (args {args:?})",
            path.join(" ")
        );
    }
}

fn is_agentcron_image(image: Option<&str>) -> bool {
    image.is_some_and(|image| image == "agentcron" || image.starts_with("agentcron:"))
}

/// Durations in jobs.toml style ("30s") as a `Duration`.
fn duration(text: &str) -> Duration {
    humantime::parse_duration(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// `[worker] shutdown_grace` of the ConfigMap's jobs.toml, plus the cancel slack: the least
/// time a stopping worker may need.
fn worker_stop_budget() -> Duration {
    let config_map = documents("k8s/configmap.yaml").remove(0);
    let jobs: toml::Table = config_map["data"]["jobs.toml"].as_str().unwrap().parse().unwrap();
    let grace = jobs["worker"]["shutdown_grace"].as_str().unwrap_or("30s");
    duration(grace) + agentcron::worker::CANCEL_SLACK
}

#[test]
fn compose_runs_redis_two_workers_a_scheduler_and_a_sim_profile() {
    let compose = documents("docker-compose.yml").remove(0);
    let services = compose["services"].as_mapping().unwrap();
    let redis = strings(&compose["services"]["redis"]["command"]).join(" ");
    assert!(redis.contains("--appendonly yes"), "{redis}");
    assert!(redis.contains("--maxmemory-policy noeviction"), "{redis}");
    let worker = &compose["services"]["worker"];
    assert_eq!(worker["deploy"]["replicas"].as_u64(), Some(2));
    let stop = duration(worker["stop_grace_period"].as_str().unwrap());
    assert!(stop > worker_stop_budget(), "worker stop_grace_period {stop:?}");
    assert_eq!(strings(&compose["services"]["scheduler"]["command"]), ["scheduler"]);
    let sim = &compose["services"]["sim"];
    assert_eq!(strings(&sim["profiles"]), ["sim"]);
    assert_eq!(strings(&sim["command"]).join(" "), "sim --host 0.0.0.0 --port 8787");
    let mut n_checked = 0;
    for (name, service) in services {
        let name = name.as_str().unwrap();
        if !is_agentcron_image(service["image"].as_str()) {
            continue;
        }
        check_invocation(
            &format!("docker-compose.yml service {name}"),
            &strings(&service["command"]),
        );
        n_checked += 1;
    }
    assert!(n_checked >= 4, "only {n_checked} agentcron services");
    let dockerfile = service_dockerfile(&compose);
    assert!(deploy(&dockerfile).is_file() || repo_root().join(&dockerfile).is_file());
    assert!(deploy("sim.env").is_file() && deploy("agentcron.env.example").is_file());
}

fn service_dockerfile(compose: &Value) -> String {
    compose["services"]["worker"]["build"]["dockerfile"].as_str().unwrap().to_owned()
}

/// Every Kubernetes object in `deploy/k8s/`.
fn k8s_objects() -> Vec<(String, Value)> {
    let mut objects = Vec::new();
    for entry in std::fs::read_dir(deploy("k8s")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            objects
                .extend(documents(&format!("k8s/{name}")).into_iter().map(|v| (name.clone(), v)));
        }
    }
    objects
}

fn object<'a>(objects: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .map(|(_, value)| value)
        .find(|v| v["kind"].as_str() == Some(kind) && v["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/k8s"))
}

#[test]
fn k8s_manifests_use_real_commands_and_keep_their_promises() {
    let objects = k8s_objects();
    let mut n_checked = 0;
    for (file, value) in &objects {
        let Some(containers) = value["spec"]["template"]["spec"]["containers"].as_sequence() else {
            continue;
        };
        for container in containers.iter().filter(|c| is_agentcron_image(c["image"].as_str())) {
            let mut args = strings(&container["command"]);
            args.extend(strings(&container["args"]));
            check_invocation(&format!("k8s/{file}"), &args);
            n_checked += 1;
        }
    }
    assert!(n_checked >= 3, "only {n_checked} agentcron containers");

    let worker = object(&objects, "Deployment", "agentcron-worker");
    let pod = &worker["spec"]["template"]["spec"];
    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
    assert!(grace > worker_stop_budget(), "terminationGracePeriodSeconds {grace:?}");
    let container = &pod["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"].as_str(), Some("/healthz"));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
    assert!(container["envFrom"][0]["secretRef"]["name"].as_str() == Some("agentcron-env"));

    let scheduler = object(&objects, "Deployment", "agentcron-scheduler");
    assert_eq!(scheduler["spec"]["replicas"].as_u64(), Some(2));
    assert!(
        strings(&scheduler["spec"]["template"]["spec"]["containers"][0]["args"])
            .contains(&"scheduler".to_owned())
    );

    let secret = object(&objects, "Secret", "agentcron-env");
    for var in [
        "SCALEKIT_ENV_URL",
        "SCALEKIT_CLIENT_ID",
        "SCALEKIT_CLIENT_SECRET",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_ENVIRONMENT_ID",
    ] {
        assert!(!secret["stringData"][var].is_null(), "Secret lacks {var}");
    }
    let service = object(&objects, "Service", "agentcron-worker");
    assert_eq!(service["spec"]["ports"][0]["port"].as_u64(), Some(9187));
    let monitor = object(&objects, "ServiceMonitor", "agentcron-worker");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"].as_str(), Some("/metrics"));
    assert_eq!(endpoint["port"], service["spec"]["ports"][0]["name"]);
    assert_eq!(endpoint["bearerTokenSecret"]["key"].as_str(), Some("AGENTCRON__OPS__TOKEN"));
}

#[test]
fn k8s_kustomization_lists_existing_files() {
    let kustomization = documents("k8s/kustomization.yaml").remove(0);
    for resource in strings(&kustomization["resources"]) {
        assert!(deploy("k8s").join(&resource).is_file(), "kustomization: no {resource}");
    }
}

#[test]
fn k8s_config_map_holds_a_valid_jobs_toml() {
    let config_map = documents("k8s/configmap.yaml").remove(0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.toml");
    std::fs::write(&path, config_map["data"]["jobs.toml"].as_str().unwrap()).unwrap();
    let path = path.to_str().unwrap();
    let env =
        [("SCALEKIT_ENV_URL", "https://example.scalekit.com"), ("AGENTCRON__OPS__TOKEN", "t")];
    let output = agentcron(&["config", "check", "--config", path], &env, dir.path());
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

#[test]
fn dockerfile_runs_agentcron_as_a_non_root_user() {
    let dockerfile = read("Dockerfile");
    let directive = |name: &str| -> Vec<String> {
        let line = dockerfile
            .lines()
            .rfind(|line| line.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("Dockerfile has no {name}"));
        serde_json::from_str(&line[name.len() + 1..]).unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    assert_eq!(directive("ENTRYPOINT"), ["agentcron"]);
    check_invocation("Dockerfile CMD", &directive("CMD"));
    assert!(dockerfile.lines().filter(|line| line.starts_with("FROM ")).count() >= 2);
    let user = dockerfile.lines().rfind(|line| line.starts_with("USER ")).unwrap();
    assert!(!user.contains("root") && !user.ends_with(" 0"), "{user}");
    assert!(dockerfile.contains("cargo build --release --locked"));
}

#[test]
fn systemd_unit_starts_a_real_command_and_waits_for_the_drain() {
    let unit = read("systemd/agentcron-worker.service");
    let value = |key: &str| {
        unit.lines()
            .find_map(|line| line.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("unit has no {key}="))
            .to_owned()
    };
    let exec = value("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/agentcron"));
    check_invocation("systemd ExecStart", &words.map(str::to_owned).collect::<Vec<_>>());
    let stop = Duration::from_secs(value("TimeoutStopSec").parse().unwrap());
    assert!(stop > worker_stop_budget(), "TimeoutStopSec {stop:?}");
    assert_eq!(value("KillSignal"), "SIGTERM");
    assert_eq!(value("EnvironmentFile"), "/etc/agentcron/env");
    assert_eq!(value("Restart"), "on-failure");
}
