//! The deployment files in `deploy/` cannot run here (no Docker engine, no cluster), so they are
//! checked statically: every file parses, every `agentcron` invocation they contain (compose
//! commands and healthchecks, Kubernetes container args, the Dockerfile's CMD and HEALTHCHECK,
//! the systemd `ExecStart`s) names a subcommand and flags that `agentcron --help` of the built
//! binary lists, and the promises the issues make hold: Redis with AOF and `noeviction`, two
//! workers, a scheduler, a `sim` profile, a grace period above `shutdown_grace`, probes on
//! `/healthz` and `/readyz` for the worker and the scheduler, two scheduler replicas,
//! ServiceMonitors on `/metrics` (issue 10); and for production (issue 27): no demo users in
//! the shipped configuration, no `latest` or untagged image, healthchecks, the ops token and
//! a published ops port in compose, base images pinned by digest, a dependency-cache layer, a
//! `.dockerignore` that keeps secrets and build output out of the context but lets in what
//! the Dockerfile copies, memory requests and limits, a Redis for trials, hardened systemd
//! units with `LimitNOFILE`, and a `quickstart.sh` that finds the binary under
//! `CARGO_TARGET_DIR` (run with a stub `cargo build` and a stub binary there).
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

    // Healthchecks: the worker's heartbeat and the scheduler's /healthz, each with a real
    // command of the binary (checked last); Redis answers PING.
    let mut health = Vec::new();
    for (name, role) in [("worker", "--worker"), ("scheduler", "--scheduler")] {
        let test = strings(&compose["services"][name]["healthcheck"]["test"]);
        assert_eq!(test[..2], ["CMD", "agentcron"], "{name} healthcheck {test:?}");
        assert_eq!(test[2..], ["health", role], "{name} healthcheck {test:?}");
        assert_eq!(compose["services"][name]["healthcheck"]["disable"].as_bool(), None);
        health.push((name, test[2..].to_vec()));
    }
    assert_eq!(strings(&compose["services"]["redis"]["healthcheck"]["test"])[1], "redis-cli");
    assert!(
        strings(&compose["services"]["redis"]["volumes"]).iter().any(|v| v.ends_with(":/data")),
        "Redis keeps its AOF on a volume"
    );

    // The ops token is required of every agentcron service (compose stops with the message
    // when it is unset); the worker binds beyond loopback inside its container and publishes
    // its port, the scheduler its own.
    for (name, service) in services {
        if is_agentcron_image(service["image"].as_str()) && name.as_str() != Some("sim") {
            let token = service["environment"]["AGENTCRON__OPS__TOKEN"].as_str().unwrap_or("");
            assert!(token.starts_with("${AGENTCRON_OPS_TOKEN:?"), "{name:?}: token {token:?}");
            let mounts = strings(&service["volumes"]);
            let config = "./jobs.production.toml:/etc/agentcron/jobs.toml:ro";
            assert!(mounts.iter().any(|m| m == config), "{name:?} mounts {mounts:?}");
        }
    }
    let environment = |name: &str, var: &str| {
        compose["services"][name]["environment"][var].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(environment("worker", "AGENTCRON__OPS__BIND"), "0.0.0.0:9187");
    assert_eq!(environment("scheduler", "AGENTCRON__OPS__SCHEDULER_BIND"), "0.0.0.0:9188");
    for (name, port) in [("worker", ":9187"), ("scheduler", ":9188")] {
        let ports = strings(&compose["services"][name]["ports"]);
        assert!(ports.iter().any(|p| p.ends_with(port)), "{name} publishes {ports:?}");
    }
    let dockerfile = service_dockerfile(&compose);
    assert!(deploy(&dockerfile).is_file() || repo_root().join(&dockerfile).is_file());
    assert!(deploy("sim.env").is_file() && deploy("agentcron.env.example").is_file());
    for (name, invocation) in health {
        check_invocation(&format!("docker-compose.yml {name} healthcheck"), &invocation);
    }
}

fn service_dockerfile(compose: &Value) -> String {
    compose["services"]["worker"]["build"]["dockerfile"].as_str().unwrap().to_owned()
}

/// Every Kubernetes object in `deploy/k8s/` and the trial overlay `deploy/k8s-trial/`, with
/// the file it is in (relative to `deploy/`).
fn k8s_objects() -> Vec<(String, Value)> {
    let mut objects = Vec::new();
    for dir in ["k8s", "k8s-trial"] {
        for entry in std::fs::read_dir(deploy(dir)).unwrap() {
            let name = format!("{dir}/{}", entry.unwrap().file_name().into_string().unwrap());
            if name.ends_with(".yaml") && !name.ends_with("/kustomization.yaml") {
                objects.extend(documents(&name).into_iter().map(|v| (name.clone(), v)));
            }
        }
    }
    objects
}

fn object<'a>(objects: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .map(|(_, value)| value)
        .find(|v| v["kind"].as_str() == Some(kind) && v["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/k8s or deploy/k8s-trial"))
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
            check_invocation(file, &args);
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

    // The scheduler serves its probes and /metrics on its own port, 9188.
    let pod = &scheduler["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let env = container["env"].as_sequence().unwrap();
    let bind = env.iter().find(|v| v["name"] == "AGENTCRON__OPS__SCHEDULER_BIND").unwrap();
    assert_eq!(bind["value"].as_str(), Some("0.0.0.0:9188"));
    assert_eq!(container["ports"][0]["containerPort"].as_u64(), Some(9188));
    let port_name = &container["ports"][0]["name"];
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(container[probe]["httpGet"]["path"].as_str(), Some(path), "scheduler {probe}");
        assert_eq!(&container[probe]["httpGet"]["port"], port_name, "scheduler {probe}");
    }
    let service = object(&objects, "Service", "agentcron-scheduler");
    assert_eq!(service["spec"]["ports"][0]["port"].as_u64(), Some(9188));
    assert_eq!(service["spec"]["selector"], scheduler["spec"]["selector"]["matchLabels"]);
    let monitor = object(&objects, "ServiceMonitor", "agentcron-scheduler");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"].as_str(), Some("/metrics"));
    assert_eq!(endpoint["port"], service["spec"]["ports"][0]["name"]);
    assert_eq!(endpoint["bearerTokenSecret"]["key"].as_str(), Some("AGENTCRON__OPS__TOKEN"));
    assert_eq!(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]);
}

#[test]
fn k8s_kustomizations_list_existing_files() {
    for dir in ["k8s", "k8s-trial"] {
        let kustomization = documents(&format!("{dir}/kustomization.yaml")).remove(0);
        let resources = strings(&kustomization["resources"]);
        assert!(!resources.is_empty(), "{dir}/kustomization.yaml lists no resources");
        for resource in resources {
            let path = deploy(dir).join(&resource);
            // A file, or a directory that is itself a kustomization (an overlay's base).
            let found = path.is_file() || path.join("kustomization.yaml").is_file();
            assert!(found, "{dir}/kustomization.yaml: no {resource}");
            // kustomize refuses a base that contains its overlay (a cycle).
            let base = path.canonicalize().unwrap();
            let overlay = deploy(dir).canonicalize().unwrap();
            assert!(
                path.is_file() || !overlay.starts_with(&base),
                "{dir}/kustomization.yaml: {resource} contains {dir}"
            );
        }
    }
    // The trial overlay is the base plus its Redis; the base has no Redis of its own.
    let trial = documents("k8s-trial/kustomization.yaml").remove(0);
    assert_eq!(strings(&trial["resources"]), ["../k8s", "redis.yaml"]);
    let base = documents("k8s/kustomization.yaml").remove(0);
    assert!(!strings(&base["resources"]).iter().any(|r| r.contains("redis")));
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

/// The Dockerfile's instructions as (keyword, arguments), continuation lines joined and
/// comments (the `# syntax=` line included) skipped.
fn dockerfile() -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let line = line.trim();
        if line.starts_with('#') || (current.is_empty() && line.is_empty()) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let (keyword, rest) = current.split_once(' ').unwrap_or((&current, ""));
        instructions.push((keyword.to_uppercase(), rest.trim().to_owned()));
        current.clear();
    }
    instructions
}

/// The Dockerfile's stages: each `FROM` and the instructions after it.
fn dockerfile_stages() -> Vec<Vec<(String, String)>> {
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for instruction in dockerfile() {
        if instruction.0 == "FROM" {
            stages.push(Vec::new());
        }
        stages.last_mut().expect("the Dockerfile starts with FROM").push(instruction);
    }
    stages
}

/// The stage with a `RUN` containing `command`.
fn stage_running(command: &str) -> Vec<(String, String)> {
    dockerfile_stages()
        .into_iter()
        .find(|stage| stage.iter().any(|(k, rest)| k == "RUN" && rest.contains(command)))
        .unwrap_or_else(|| panic!("no Dockerfile stage runs {command:?}"))
}

/// A `COPY`'s sources and destination, and whether it copies from another stage.
fn copy_parts(arguments: &str) -> (Vec<String>, String, bool) {
    let from_stage = arguments.split_whitespace().any(|w| w.starts_with("--from="));
    let mut words: Vec<String> =
        arguments.split_whitespace().filter(|w| !w.starts_with("--")).map(str::to_owned).collect();
    let destination = words.pop().expect("COPY has a destination");
    (words, destination, from_stage)
}

/// The JSON (exec) form of a directive's arguments.
fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: not an exec form: {e}"))
}

fn last<'a>(instructions: &'a [(String, String)], keyword: &str) -> &'a str {
    instructions
        .iter()
        .rfind(|(k, _)| k == keyword)
        .map(|(_, rest)| rest.as_str())
        .unwrap_or_else(|| panic!("Dockerfile has no {keyword}"))
}

#[test]
fn dockerfile_runs_agentcron_as_a_non_root_user_with_a_healthcheck() {
    let instructions = dockerfile();
    assert_eq!(exec_form(last(&instructions, "ENTRYPOINT")), ["agentcron"]);
    check_invocation("Dockerfile CMD", &exec_form(last(&instructions, "CMD")));
    assert!(dockerfile_stages().len() >= 2);
    let user = last(&instructions, "USER");
    assert!(user != "root" && user != "0" && !user.starts_with("0:"), "USER {user}");
    assert!(instructions.iter().any(|(k, rest)| {
        k == "RUN" && rest.contains("cargo build --release --locked --bin agentcron")
    }));

    // HEALTHCHECK [options] CMD ["agentcron", "health", "--worker"]
    let healthcheck = last(&instructions, "HEALTHCHECK");
    let (options, command) = healthcheck.split_once("CMD ").expect("HEALTHCHECK … CMD […]");
    assert!(options.contains("--interval=") && options.contains("--timeout="), "{options}");
    let command = exec_form(command.trim());
    assert_eq!(command, ["agentcron", "health", "--worker"]);
    check_invocation("Dockerfile HEALTHCHECK", &command[1..]);
}

#[test]
fn dockerfile_pins_its_base_images_by_digest_and_caches_the_dependencies() {
    let mut stage_names: Vec<String> = Vec::new();
    let mut n_pinned = 0;
    for stage in dockerfile_stages() {
        let words: Vec<&str> =
            stage[0].1.split_whitespace().filter(|w| !w.starts_with("--")).collect();
        let image = words[0];
        if !stage_names.iter().any(|name| name == image) {
            let (name, digest) = image
                .split_once("@sha256:")
                .unwrap_or_else(|| panic!("FROM {image}: not pinned by digest"));
            let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
            assert!(digest.len() == 64 && digest.chars().all(hex), "FROM {image}: bad digest");
            // The tag beside the digest says what the digest is (and is never `latest`).
            let tag = name.rsplit_once(':').map(|(_, tag)| tag).unwrap_or("");
            assert!(!tag.is_empty() && tag != "latest", "FROM {image}: tag {tag:?}");
            n_pinned += 1;
        }
        if let Some(at) = words.iter().position(|w| w.eq_ignore_ascii_case("AS")) {
            stage_names.push(words[at + 1].to_owned());
        }
    }
    assert!(n_pinned >= 2, "only {n_pinned} base images");

    // cargo-chef at a fixed version; the planner makes the recipe, and the stage that builds
    // agentcron cooks it (the dependencies' layer) before it copies any of src/.
    let instructions = dockerfile();
    assert!(instructions.iter().any(|(k, rest)| {
        k == "RUN" && rest.contains("cargo install cargo-chef --locked --version ")
    }));
    stage_running("cargo chef prepare --recipe-path recipe.json");
    let build = stage_running("cargo build --release --locked --bin agentcron");
    let position = |hit: &dyn Fn(&(String, String)) -> bool| build.iter().position(hit);
    let recipe = position(&|(k, rest)| k == "COPY" && rest.contains("recipe.json"));
    let cook = position(&|(k, rest)| k == "RUN" && rest.contains("cargo chef cook --release"));
    let source = position(&|(k, rest)| {
        k == "COPY" && copy_parts(rest).0.iter().any(|s| s == "src" || s.starts_with("src/"))
    });
    let (recipe, cook, source) = (recipe.unwrap(), cook.unwrap(), source.unwrap());
    assert!(recipe < cook && cook < source, "recipe {recipe}, cook {cook}, src {source}");
}

/// `.dockerignore` as Docker reads it: each pattern is anchored at the context's root, `*`
/// and `?` stay within a path component, `**` spans any number of them, a pattern that
/// matches a directory excludes everything in it, `!` re-includes, and the last match wins.
struct DockerIgnore(Vec<(regex::Regex, bool)>);

impl DockerIgnore {
    fn load() -> Self {
        let text = std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                let (pattern, excludes) =
                    line.strip_prefix('!').map_or((line, true), |rest| (rest, false));
                (Self::regex(pattern.trim_start_matches('/')), excludes)
            })
            .collect();
        Self(rules)
    }

    fn regex(pattern: &str) -> regex::Regex {
        let mut out = String::from("^");
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    if chars.peek() == Some(&'/') {
                        chars.next();
                        out.push_str("(.*/)?");
                    } else {
                        out.push_str(".*");
                    }
                }
                '*' => out.push_str("[^/]*"),
                '?' => out.push_str("[^/]"),
                c => out.push_str(&regex::escape(&c.to_string())),
            }
        }
        out.push('$');
        regex::Regex::new(&out).unwrap()
    }

    /// Whether the build context leaves `path` (relative to the repository) out.
    fn excludes(&self, path: &str) -> bool {
        let prefixes: Vec<&str> =
            path.match_indices('/').map(|(i, _)| &path[..i]).chain([path]).collect();
        let mut excluded = false;
        for (regex, excludes) in &self.0 {
            if prefixes.iter().any(|prefix| regex.is_match(prefix)) {
                excluded = *excludes;
            }
        }
        excluded
    }
}

/// Every file under `path` (relative to the repository), or `path` itself if it is a file.
fn files_under(path: &str) -> Vec<String> {
    let full = repo_root().join(path);
    if full.is_file() {
        return vec![path.to_owned()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&full).unwrap_or_else(|e| panic!("{path}: {e}")) {
        let name = entry.unwrap().file_name().into_string().unwrap();
        files.extend(files_under(&format!("{path}/{name}")));
    }
    files
}

#[test]
fn dockerignore_keeps_secrets_and_build_output_out_and_lets_in_what_the_build_copies() {
    let ignore = DockerIgnore::load();
    for path in [
        ".env",
        "deploy/.env",
        "deploy/agentcron.env",
        "production.env",
        "target",
        "target/release/agentcron",
        ".git/HEAD",
        "transcripts/2026-01-01/ann@example.com/run.jsonl",
        "node_modules/left-pad/index.js",
        "deploy/certs/redis.key",
    ] {
        assert!(ignore.excludes(path), ".dockerignore lets {path} into the build context");
    }

    // Every file a COPY takes from the context is in it.
    let mut copied = Vec::new();
    for (keyword, arguments) in dockerfile() {
        let (sources, _, from_stage) = copy_parts(&arguments);
        if keyword == "COPY" && !from_stage {
            copied.extend(sources.iter().flat_map(|source| files_under(source)));
        }
    }
    assert!(copied.len() > 10, "{copied:?}");
    let missing: Vec<&String> = copied.iter().filter(|path| ignore.excludes(path)).collect();
    assert!(missing.is_empty(), ".dockerignore leaves out what the Dockerfile copies: {missing:?}");

    // And what they copy is enough: every file src/ embeds from outside src/ is copied into
    // the stage that builds the binary ...
    let build_sources: Vec<String> = stage_running("cargo build --release --locked")
        .iter()
        .filter(|(keyword, arguments)| keyword == "COPY" && !copy_parts(arguments).2)
        .flat_map(|(_, arguments)| copy_parts(arguments).0)
        .collect();
    let mut rust = Vec::new();
    crate::tidy::rust_files(&repo_root().join("src"), &mut rust);
    let embed = regex::Regex::new(r#"include_(?:str|bytes)!\("([^"]+)"\)"#).unwrap();
    for file in &rust {
        let text = std::fs::read_to_string(file).unwrap();
        for capture in embed.captures_iter(&text) {
            let target = file.parent().unwrap().join(&capture[1]);
            let target = target.canonicalize().unwrap_or_else(|e| panic!("{target:?}: {e}"));
            let relative = target.strip_prefix(repo_root().canonicalize().unwrap()).unwrap();
            let relative = relative.to_string_lossy().into_owned();
            if !relative.starts_with("src/") {
                assert!(
                    build_sources.contains(&relative),
                    "{file:?} embeds {relative}, not copied"
                );
            }
        }
    }

    // ... and the planner's copy is a manifest whose every declared target exists (what
    // `cargo chef prepare` needs). cargo metadata does not look for a bench or test at its
    // default path, but any build command does: one for a bin that does not exist gets as
    // far as naming the bins only when the manifest is complete.
    let dir = tempfile::tempdir().unwrap();
    for (keyword, arguments) in stage_running("cargo chef prepare") {
        if keyword == "COPY" {
            for source in copy_parts(&arguments).0 {
                for file in files_under(&source) {
                    let to = dir.path().join(&file);
                    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                    std::fs::copy(repo_root().join(&file), to).unwrap();
                }
            }
        }
    }
    // cargo itself does not miss an explicit `path` (cargo-chef's skeleton writes one there).
    let manifest: toml::Table =
        std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap().parse().unwrap();
    for (kind, folder) in [("bin", "src/bin"), ("test", "tests"), ("bench", "benches")] {
        for target in manifest.get(kind).and_then(toml::Value::as_array).into_iter().flatten() {
            let default = format!("{folder}/{}.rs", target["name"].as_str().unwrap());
            let path = target.get("path").and_then(toml::Value::as_str).unwrap_or(&default);
            assert!(dir.path().join(path).is_file(), "the planner does not copy {path}");
        }
    }
    let output = std::process::Command::new(cargo())
        .args(["build", "--offline", "--bin", "no-such-bin"])
        .current_dir(dir.path())
        .env("CARGO_TARGET_DIR", dir.path().join("target"))
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert!(stderr.contains("no bin target named `no-such-bin`"), "the planner's copy: {stderr}");
}

/// The `cargo` running the tests (or the first on `PATH`), as an absolute path.
fn cargo() -> PathBuf {
    if let Some(cargo) = std::env::var_os("CARGO") {
        return PathBuf::from(cargo);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("cargo"))
        .find(|path| path.is_file())
        .expect("cargo on PATH")
}

/// Every image named in compose and in the Kubernetes manifests, with where.
fn images() -> Vec<(String, String)> {
    let mut images = Vec::new();
    let compose = documents("docker-compose.yml").remove(0);
    for (name, service) in compose["services"].as_mapping().unwrap() {
        let image = service["image"].as_str().unwrap_or_else(|| panic!("{name:?} has no image"));
        images.push((format!("docker-compose.yml {}", name.as_str().unwrap()), image.to_owned()));
    }
    for (file, value) in k8s_objects() {
        let pod = &value["spec"]["template"]["spec"];
        for key in ["containers", "initContainers"] {
            for container in pod[key].as_sequence().into_iter().flatten() {
                images.push((file.clone(), container["image"].as_str().unwrap().into()));
            }
        }
    }
    images
}

/// The tag of `image`, a compose default (`${AGENTCRON_VERSION:-0.1.0}`) resolved.
fn image_tag(image: &str) -> Option<String> {
    let image = match image.split_once("${") {
        Some((head, variable)) => {
            let (_, default) = variable.split_once(":-").expect("a variable tag has a default");
            format!("{head}{}", default.trim_end_matches('}'))
        }
        None => image.to_owned(),
    };
    let name = image.split('@').next().unwrap();
    let last = name.rsplit('/').next().unwrap();
    last.split_once(':').map(|(_, tag)| tag.to_owned())
}

#[test]
fn no_image_is_latest_or_untagged_and_agentcron_is_the_release() {
    let version = env!("CARGO_PKG_VERSION");
    let images = images();
    assert!(images.len() >= 8, "{images:?}");
    for (origin, image) in &images {
        let tag = image_tag(image).unwrap_or_else(|| panic!("{origin}: {image} has no tag"));
        assert!(tag != "latest", "{origin}: {image}");
        if is_agentcron_image(Some(image)) {
            assert_eq!(tag, version, "{origin}: {image} is not the crate's version");
        }
    }
    // kustomize sets the tag of every agentcron container.
    let kustomization = documents("k8s/kustomization.yaml").remove(0);
    let entry = kustomization["images"]
        .as_sequence()
        .and_then(|images| images.iter().find(|image| image["name"] == "agentcron"))
        .expect("kustomization.yaml sets the agentcron image");
    assert_eq!(entry["newTag"].as_str(), Some(version));
    // Nowhere in the deploy files, comments included.
    for file in files_under("deploy") {
        let text = std::fs::read_to_string(repo_root().join(&file)).unwrap();
        assert!(!text.contains(":latest") && !text.contains("Tag: latest"), "{file} says latest");
    }
}

/// What makes a jobs.toml text a demo's: users listed in a schedule, a demo user's name, the
/// simulator's address.
fn demo_traits(text: &str) -> Vec<String> {
    let config: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}"));
    let schedules = config["schedule"].as_array().expect("a [[schedule]]");
    let mut traits = Vec::new();
    for schedule in schedules {
        let users = schedule.get("users").and_then(toml::Value::as_array);
        if users.is_none_or(|users| !users.is_empty()) {
            traits.push(format!("schedule {:?} lists users {users:?}", schedule.get("name")));
        }
    }
    let lower = text.to_lowercase();
    for demo in ["alice", "bob", "carol"] {
        if lower.contains(demo) {
            traits.push(format!("mentions the demo user {demo}"));
        }
    }
    if text.contains("127.0.0.1:8787") {
        traits.push("points at the simulator".to_owned());
    }
    traits
}

#[test]
fn the_production_config_has_no_demo_users_and_the_image_and_compose_use_it() {
    // The check finds the demo's users where they are.
    let demo = std::fs::read_to_string(repo_root().join("jobs.toml")).unwrap();
    assert!(demo_traits(&demo).len() >= 4, "{:?}", demo_traits(&demo));

    let production = read("jobs.production.toml");
    assert_eq!(demo_traits(&production), Vec::<String>::new(), "deploy/jobs.production.toml");
    let config_map = documents("k8s/configmap.yaml").remove(0);
    let cluster = config_map["data"]["jobs.toml"].as_str().unwrap();
    assert_eq!(demo_traits(cluster), Vec::<String>::new(), "k8s/configmap.yaml");

    // Valid as it is, with only the URL the environment must give (--strict: no warning).
    let path = deploy("jobs.production.toml");
    let env = [("SCALEKIT_ENV_URL", "https://example.scalekit.com")];
    let dir = tempfile::tempdir().unwrap();
    let args = ["config", "check", "--strict", "--config", path.to_str().unwrap()];
    let output = agentcron(&args, &env, dir.path());
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");

    // The image's /etc/agentcron/jobs.toml is this file, not the demo's.
    let runtime = dockerfile_stages().pop().unwrap();
    let configs: Vec<Vec<String>> = runtime
        .iter()
        .filter(|(keyword, _)| keyword == "COPY")
        .map(|(_, arguments)| copy_parts(arguments))
        .filter(|(_, destination, _)| destination.starts_with("/etc/agentcron"))
        .map(|(sources, _, _)| sources)
        .collect();
    assert_eq!(configs, [["deploy/jobs.production.toml"]]);
    let compose = read("docker-compose.yml");
    assert!(compose.contains("./jobs.production.toml:/etc/agentcron/jobs.toml:ro"));
    assert!(!compose.contains("../jobs.toml"), "compose mounts the demo jobs.toml");
}

/// A Kubernetes memory quantity in MiB (`128Mi`, `1Gi`).
fn mebibytes(quantity: &str) -> u64 {
    let (number, factor) = match quantity {
        q if q.ends_with("Gi") => (&q[..q.len() - 2], 1024),
        q if q.ends_with("Mi") => (&q[..q.len() - 2], 1),
        q => panic!("memory {q:?}: use Mi or Gi"),
    };
    number.parse::<u64>().unwrap() * factor
}

#[test]
fn k8s_containers_request_and_limit_memory_as_measured() {
    let objects = k8s_objects();
    let mut n_checked = 0;
    for (file, value) in &objects {
        for container in
            value["spec"]["template"]["spec"]["containers"].as_sequence().into_iter().flatten()
        {
            let resources = &container["resources"];
            let request = resources["requests"]["memory"].as_str();
            let limit = resources["limits"]["memory"].as_str();
            let (Some(request), Some(limit)) = (request, limit) else {
                panic!("{file}: {:?} has no memory request and limit", container["name"]);
            };
            assert!(mebibytes(request) <= mebibytes(limit), "{file}: {request} > {limit}");
            assert!(!resources["requests"]["cpu"].is_null(), "{file}: no CPU request");
            n_checked += 1;
        }
    }
    assert!(n_checked >= 4, "only {n_checked} containers");
    let memory = |name: &str| {
        let container =
            &object(&objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0];
        let resources = &container["resources"];
        (
            mebibytes(resources["requests"]["memory"].as_str().unwrap()),
            mebibytes(resources["limits"]["memory"].as_str().unwrap()),
        )
    };
    // The worker: about 35 MiB at the shipped concurrency, about 280 MB with 10,000 sessions
    // over HTTPS (README, Benchmarks): the limit holds the latter.
    let (_, worker_limit) = memory("agentcron-worker");
    assert!(worker_limit * 1_048_576 > 280_000_000, "worker limit {worker_limit}Mi");
    assert_eq!(memory("agentcron-worker"), (128, 512));
    assert_eq!(memory("agentcron-scheduler"), (64, 256));
}

#[test]
fn the_trial_redis_keeps_its_aof_on_a_volume_and_never_evicts() {
    let objects = k8s_objects();
    assert!(read("k8s-trial/redis.yaml").starts_with("# FOR TRIALS ONLY"));
    let redis = object(&objects, "StatefulSet", "redis");
    let container = &redis["spec"]["template"]["spec"]["containers"][0];
    let args = strings(&container["args"]).join(" ");
    assert!(args.contains("--appendonly yes"), "{args}");
    assert!(args.contains("--maxmemory-policy noeviction"), "{args}");
    // Below the container's limit: a full Redis refuses writes rather than being OOM-killed.
    let maxmemory = args.split("--maxmemory ").nth(1).and_then(|rest| rest.split(' ').next());
    let maxmemory: u64 = maxmemory.unwrap().trim_end_matches("mb").parse().unwrap();
    let limit = mebibytes(container["resources"]["limits"]["memory"].as_str().unwrap());
    assert!(maxmemory * 1_000_000 < limit * 1_048_576, "maxmemory {maxmemory}mb, limit {limit}Mi");
    let claim = &redis["spec"]["volumeClaimTemplates"][0];
    let mount = container["volumeMounts"].as_sequence().unwrap();
    assert!(
        mount.iter().any(|m| m["name"] == claim["metadata"]["name"] && m["mountPath"] == "/data")
    );
    assert!(!claim["spec"]["resources"]["requests"]["storage"].is_null());
    // The Secret's REDIS_URL names the trial's Service.
    let service = object(&objects, "Service", "redis");
    assert_eq!(service["spec"]["ports"][0]["port"].as_u64(), Some(6379));
    let secret = object(&objects, "Secret", "agentcron-env");
    assert_eq!(secret["stringData"]["REDIS_URL"].as_str(), Some("redis://redis:6379"));
    assert!(read("k8s/secret.yaml").contains("rediss://"), "the managed-Redis note is gone");
}

/// `key=` values of a systemd unit, in order.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|line| line.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn systemd_units_start_real_commands_hardened_and_wait_for_the_drain() {
    for (file, subcommand) in
        [("agentcron-worker.service", "worker"), ("agentcron-scheduler.service", "scheduler")]
    {
        let unit = read(&format!("systemd/{file}"));
        let value = |key: &str| {
            unit_values(&unit, key).pop().unwrap_or_else(|| panic!("{file} has no {key}="))
        };
        let exec = value("ExecStart");
        let words: Vec<String> = exec.split_whitespace().map(str::to_owned).collect();
        assert_eq!(words[0], "/usr/local/bin/agentcron", "{file}");
        assert_eq!(words[1..3], ["--config", "/etc/agentcron/jobs.toml"], "{file}");
        assert_eq!(words.last().map(String::as_str), Some(subcommand), "{file}");
        check_invocation(&format!("systemd {file} ExecStart"), &words[1..]);
        assert_eq!(value("KillSignal"), "SIGTERM", "{file}");
        assert_eq!(value("EnvironmentFile"), "/etc/agentcron/env", "{file}");
        assert_eq!(value("Restart"), "on-failure", "{file}");
        assert_eq!(value("User"), "agentcron", "{file}");
        let files: u64 = value("LimitNOFILE").parse().unwrap();
        assert!(files >= 65_536, "{file}: LimitNOFILE={files}");
        let yes = |key: &str| {
            let v = value(key);
            assert!(v == "yes" || v == "true", "{file}: {key}={v}");
        };
        for key in [
            "NoNewPrivileges",
            "ProtectHome",
            "PrivateTmp",
            "PrivateDevices",
            "ProtectKernelTunables",
            "ProtectKernelModules",
            "ProtectControlGroups",
            "RestrictSUIDSGID",
            "LockPersonality",
        ] {
            yes(key);
        }
        assert_eq!(value("ProtectSystem"), "strict", "{file}");
        assert_eq!(value("CapabilityBoundingSet"), "", "{file}: keeps capabilities");
        // The only writable paths are the service's state directory (transcripts included).
        let state = format!("/var/lib/{}", value("StateDirectory").split(' ').next().unwrap());
        let writable = value("ReadWritePaths");
        assert!(!writable.is_empty(), "{file}");
        assert!(writable.split(' ').all(|p| p.starts_with(&state)), "{file}: {writable}");
        // The header installs the production configuration, not the demo's.
        if subcommand == "worker" {
            assert!(unit.contains("deploy/jobs.production.toml /etc/agentcron/jobs.toml"));
            let stop = Duration::from_secs(value("TimeoutStopSec").parse().unwrap());
            assert!(stop > worker_stop_budget(), "TimeoutStopSec {stop:?}");
            assert!(
                value("Environment").contains("/var/lib/agentcron/transcripts")
                    || unit.contains("AGENTCRON__TRANSCRIPTS__DIR=/var/lib/agentcron/transcripts")
            );
        }
    }
}

#[test]
fn every_deploy_path_the_deploy_files_mention_exists() {
    let mentioned = regex::Regex::new(r"deploy/[A-Za-z0-9_./-]*[A-Za-z0-9_]").unwrap();
    let mut files = files_under("deploy");
    files.extend([".dockerignore".to_owned(), "README.md".to_owned()]);
    let mut n_checked = 0;
    for file in files {
        let text = std::fs::read_to_string(repo_root().join(&file)).unwrap();
        for path in mentioned.find_iter(&text).map(|m| m.as_str()) {
            // A filled-in env file is never committed; a glob is not a path.
            let secret = path.ends_with(".env") && !repo_root().join(path).exists();
            if secret || text[text.find(path).unwrap() + path.len()..].starts_with('*') {
                continue;
            }
            assert!(repo_root().join(path).exists(), "{file} mentions {path}, which is not there");
            n_checked += 1;
        }
    }
    assert!(n_checked > 20, "only {n_checked} paths");
}

#[test]
fn quickstart_runs_the_binary_where_cargo_target_dir_puts_it() {
    let script = read("quickstart.sh");
    assert!(!script.contains("./target/release"), "quickstart.sh hard-codes ./target/release");
    let syntax = std::process::Command::new("bash").arg("-n").arg(deploy("quickstart.sh")).output();
    assert!(syntax.unwrap().status.success(), "bash -n deploy/quickstart.sh");

    // Run it with `cargo build` stubbed out (every other cargo command is the real one),
    // redis-server "installed", and a stub agentcron where CARGO_TARGET_DIR says.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let executable = |path: &std::path::Path, body: &str| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let bin = dir.path().join("bin");
    let real_cargo = cargo();
    let stub = format!("[ \"$1\" = build ] && exit 0\nexec '{}' \"$@\"", real_cargo.display());
    executable(&bin.join("cargo"), &stub);
    executable(&bin.join("redis-server"), "exit 0");
    let target = dir.path().join("elsewhere");
    executable(&target.join("release/agentcron"), "echo \"stub $0: $*\"");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let output = std::process::Command::new("bash")
        .arg(deploy("quickstart.sh"))
        .arg("--follow")
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "quickstart.sh: {stdout}\n{stderr}");
    let expected = format!("stub {}: demo --follow", target.join("release/agentcron").display());
    assert!(stdout.contains(&expected), "expected {expected:?} in:\n{stdout}\n{stderr}");
}
