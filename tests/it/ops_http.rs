//! The ops HTTP server (`ops::http`), in process against a real run: `/healthz`; `/readyz`,
//! also with Redis unreachable; `/metrics` as valid Prometheus text whose run counter moves by
//! one after a run; the `/api/*` JSON shapes and errors; bearer-token auth and the refusal of
//! a non-loopback bind without a token; the dashboard in headless Chromium; and the
//! `agentcron worker` binary serving it and closing it after a SIGTERM drain.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agentcron::config::Config;
use agentcron::ops::http::{self, OpsError, OpsState};
use agentcron::queue::{NewRun, Queue};
use agentcron::telemetry::Redactor;
use agentcron::worker;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common::app::{TestApp, spawn_app, spawn_app_with};
use crate::common::poll::{Text, poll_until};

pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";

/// A server running in this test.
pub(crate) struct Server {
    pub(crate) base: String,
    stop: CancellationToken,
    handle: JoinHandle<Result<(), OpsError>>,
}

impl Server {
    pub(crate) async fn start(config: Config) -> Self {
        let listener = http::bind(&config.ops).await.unwrap().unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = Arc::new(config);
        let state = OpsState::new(config.clone(), Redactor::new(config.secret_values())).unwrap();
        let stop = CancellationToken::new();
        let handle = tokio::spawn(http::serve(state, listener, stop.clone()));
        // Connect through loopback even when bound to 0.0.0.0.
        Self { base: format!("http://127.0.0.1:{port}"), stop, handle }
    }

    pub(crate) async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle).await.unwrap().unwrap().unwrap();
    }
}

/// The app's configuration with the ops server on an ephemeral loopback port.
pub(crate) fn ops_config(app: &TestApp) -> Config {
    let mut config = (*app.config).clone();
    config.ops.bind = Some("127.0.0.1:0".parse().unwrap());
    config
}

pub(crate) fn client() -> reqwest::Client {
    // reqwest is built without a default TLS provider; plain HTTP still needs one installed.
    rustls::crypto::ring::default_provider().install_default().ok();
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

pub(crate) async fn get(url: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut request = client().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn get_json(url: &str) -> (StatusCode, Value) {
    let (status, body) = get(url, None).await;
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}")))
}

/// Runs `run_id` of `user` under `schedule` through the real worker until it succeeds.
async fn run_through_worker(app: &TestApp, run_id: &str, user: &str, schedule: &str) {
    let queue = Queue::connect(&app.config.redis).await.unwrap();
    let run = NewRun {
        run_id: crate::common::run_id(run_id),
        schedule: Some(schedule.to_owned()),
        ..NewRun::now(crate::common::user_id(user))
    };
    queue.enqueue(&[run], "test").await.unwrap();
    let shutdown = CancellationToken::new();
    let (config, ctx, token) = (app.config.clone(), app.ctx.clone(), shutdown.clone());
    let running = tokio::spawn(async move { worker::run(&config, ctx, token).await });
    poll_until(&format!("{run_id} succeeded"), Duration::from_secs(30), || async {
        let record = app.record(run_id).await;
        if record.get("state") == Some("succeeded") { Ok(()) } else { Err(record) }
    })
    .await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), running).await.unwrap().unwrap().unwrap();
}

/// One sample line of the Prometheus text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text exposition format, failing on any line that is not a comment,
/// a `# HELP`/`# TYPE` line with a valid name, or a `name{labels} value [timestamp]` sample.
fn parse_prometheus(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE: {line}"));
            assert!(valid_name(name), "bad name in {line}");
            let kinds = ["counter", "gauge", "histogram", "summary", "untyped"];
            assert!(kinds.contains(&kind), "bad type in {line}");
            types.insert(name.to_owned(), kind.to_owned());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(valid_name(name), "bad name in {line}");
        } else if !line.starts_with('#') {
            samples.push(parse_sample(line));
        }
    }
    (types, samples)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("bad sample: {line}"));
    let name = &line[..name_end];
    assert!(valid_name(name), "bad name in {line}");
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner, line);
        labels = parsed;
        rest = after;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().unwrap_or_else(|| panic!("no value: {line}"));
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        number => number.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
    };
    if let Some(timestamp) = fields.next() {
        timestamp.parse::<i64>().unwrap_or_else(|_| panic!("bad timestamp in {line}"));
    }
    assert!(fields.next().is_none(), "trailing text in {line}");
    Sample { name: name.to_owned(), labels, value }
}

/// `key="value",…}` → the labels and the text after the closing brace.
fn parse_labels<'a>(mut inner: &'a str, line: &str) -> (BTreeMap<String, String>, &'a str) {
    let mut labels = BTreeMap::new();
    loop {
        if let Some(after) = inner.strip_prefix('}') {
            return (labels, after);
        }
        let (key, after) = inner.split_once("=\"").unwrap_or_else(|| panic!("bad labels: {line}"));
        assert!(valid_name(key) && !key.contains(':'), "bad label name in {line}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => panic!("bad escape in {line}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line}"),
            }
        };
        labels.insert(key.to_owned(), value);
        inner = &after[end + 1..];
        inner = inner.strip_prefix(',').unwrap_or(inner);
    }
}

fn runs_total(samples: &[Sample], schedule: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == "agentcron_runs_total")
        .filter(|s| s.labels.get("schedule").map(String::as_str) == Some(schedule))
        .filter(|s| s.labels.get("outcome").map(String::as_str) == Some("succeeded"))
        .map(|s| s.value)
        .sum()
}

async fn scrape(server: &Server) -> (BTreeMap<String, String>, Vec<Sample>) {
    let (status, text) = get(&format!("{}/metrics", server.base), None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    parse_prometheus(&text)
}

#[tokio::test]
async fn metrics_parse_and_the_run_counter_moves_after_a_run() {
    // A configured schedule no other test has, so a shared recorder cannot move this counter;
    // and a name no configuration has, which a run may carry but no label may.
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let (schedule, unconfigured) = (format!("ops-{}", &unique[..8]), format!("free-{unique}"));
    let app = spawn_app_with(|config| {
        let mut extra = config.schedules[0].clone();
        extra.name.clone_from(&schedule);
        config.schedules.push(extra);
    })
    .await;
    let server = Server::start(ops_config(&app)).await;
    let (_, before) = scrape(&server).await;
    assert_eq!(runs_total(&before, &schedule), 0.0);

    run_through_worker(&app, "r-ops-metrics", "ops-metrics@example.com", &schedule).await;
    run_through_worker(&app, "r-ops-adhoc", "ops-adhoc@example.com", &unconfigured).await;

    let (types, after) = scrape(&server).await;
    assert_eq!(runs_total(&after, &schedule), 1.0, "{after:?}");
    assert!(runs_total(&after, "adhoc") >= 1.0, "{after:?}");
    assert!(!after.iter().any(|s| s.labels.values().any(|v| *v == unconfigured)), "{after:?}");
    for (name, kind) in [
        ("agentcron_runs_total", "counter"),
        ("agentcron_run_duration_seconds", "histogram"),
        ("agentcron_phase_duration_seconds", "histogram"),
        ("agentcron_api_requests_total", "counter"),
        ("agentcron_queue_depth", "gauge"),
        ("agentcron_runs_in_flight", "gauge"),
        ("agentcron_notices_open", "gauge"),
    ] {
        assert_eq!(types.get(name).map(String::as_str), Some(kind), "{name} in {types:?}");
    }
    let has = |name: &str, label: &str, value: &str| {
        after
            .iter()
            .any(|s| s.name == name && s.labels.get(label).map(String::as_str) == Some(value))
    };
    assert!(has("agentcron_phase_duration_seconds_count", "phase", "streaming"));
    assert!(has("agentcron_queue_depth", "state", "pending"));
    assert!(has("agentcron_api_requests_total", "api", "anthropic"), "{after:?}");
    assert!(
        after.iter().any(|s| s.name == "agentcron_run_duration_seconds_count" && s.value >= 1.0)
    );
    server.stop().await;
}

/// A run that found a setup object missing at the vendor leaves a mark: `/readyz` is not ready
/// and names it until `setup` stores the ids again.
#[tokio::test]
async fn readiness_names_a_missing_setup_object() {
    let app = spawn_app().await;
    let server = Server::start(ops_config(&app)).await;
    let mut conn = app.conn.clone();
    let reported =
        agentcron::setup::report_missing(&mut conn, &app.ctx.keys, "agent", "gone").await.unwrap();
    assert!(reported);
    let (status, body) = get_json(&format!("{}/readyz", server.base)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["setup"], "agent missing");
    let (scalekit, anthropic, _) = agentcron::run::clients(&app.config).unwrap();
    agentcron::setup::ensure(&app.config, &scalekit, &anthropic, &mut conn, &app.ctx.keys)
        .await
        .unwrap();
    let (status, body) = get_json(&format!("{}/readyz", server.base)).await;
    assert_eq!((status, &body["checks"]["setup"]), (StatusCode::OK, &Value::from("ok")));
    server.stop().await;
}

/// `/readyz` is not ready on a Redis that can drop keys, unless `redis.allow_eviction` says so.
#[tokio::test]
async fn readiness_refuses_a_redis_that_can_drop_keys() {
    let app = spawn_app().await;
    let server = crate::common::private_redis::PrivateRedis::start(false).await;
    let mut conn = server.conn().await.unwrap();
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("volatile-lru")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut config = ops_config(&app);
    config.redis.url = server.url().parse().unwrap();
    let strict = Server::start(config.clone()).await;
    let (status, body) = get_json(&format!("{}/readyz", strict.base)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["eviction"], "maxmemory-policy volatile-lru can drop keys");
    strict.stop().await;
    config.redis.allow_eviction = true;
    let allowed = Server::start(config).await;
    let (status, body) = get_json(&format!("{}/readyz", allowed.base)).await;
    assert_eq!((status, &body["checks"]["eviction"]), (StatusCode::OK, &Value::from("ok")));
    allowed.stop().await;
}

#[tokio::test]
async fn health_readiness_and_readiness_without_redis() {
    let app = spawn_app().await;
    let server = Server::start(ops_config(&app)).await;
    let (status, body) = get_json(&format!("{}/healthz", server.base)).await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &Value::from("ok")));
    let (status, body) = get_json(&format!("{}/readyz", server.base)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["redis"], "ok");

    // The same configuration with Redis on a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut config = ops_config(&app);
    config.redis.url = format!("redis://{closed}/").parse().unwrap();
    let down = Server::start(config).await;
    let (status, body) = get_json(&format!("{}/readyz", down.base)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["redis"], "unreachable");
    assert_eq!(body["checks"]["config"], "ok");
    let (status, _) = get_json(&format!("{}/healthz", down.base)).await;
    assert_eq!(status, StatusCode::OK, "liveness does not depend on Redis");
    down.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn api_endpoints_return_the_report_shapes() {
    let app = spawn_app().await;
    let server = Server::start(ops_config(&app)).await;
    run_through_worker(&app, "r-ops-api", "ops-api@example.com", "ops-api").await;
    let api = |path: &str| format!("{}/api/{path}", server.base);

    let (status, body) = get_json(&api("status")).await;
    assert_eq!(status, StatusCode::OK);
    for field in ["at_ms", "workers", "queue", "runs_last_hour", "notices_open", "next_ticks"] {
        assert!(body.get(field).is_some(), "status lacks {field}: {body}");
    }
    assert_eq!(body["runs_last_hour"]["succeeded"], 1);

    let (status, body) = get_json(&api("runs?limit=10&state=succeeded")).await;
    assert_eq!(status, StatusCode::OK);
    let runs = body.as_array().unwrap();
    assert_eq!(runs.len(), 1, "{body}");
    assert_eq!(runs[0]["run_id"], "r-ops-api");
    assert_eq!(runs[0]["schedule"], "ops-api");
    assert_eq!(runs[0]["phase"], "streaming");
    let (_, body) = get_json(&api("runs?user=nobody@example.com")).await;
    assert_eq!(body, serde_json::json!([]));

    let (status, body) = get_json(&api("runs/r-ops-api")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["record"]["state"], "succeeded");
    assert_eq!(body["timeline"].as_array().unwrap().len(), 6, "{body}");

    let (status, body) = get_json(&api("runs/r-ops-api/transcript")).await;
    assert_eq!(status, StatusCode::OK);
    let lines = body.as_array().unwrap();
    assert!(lines.iter().all(|line| line["run_id"] == "r-ops-api" && line["type"].is_string()));
    assert!(lines.iter().any(|line| line["type"] == "agent.mcp_tool_use"), "{body}");

    let (status, body) = get_json(&api("notices")).await;
    assert_eq!((status, body), (StatusCode::OK, serde_json::json!([])));

    for (path, code) in [
        ("runs?limit=0", StatusCode::BAD_REQUEST),
        ("runs?limit=1001", StatusCode::BAD_REQUEST),
        ("runs?state=done", StatusCode::BAD_REQUEST),
        ("runs?since=tomorrow-ish", StatusCode::BAD_REQUEST),
        ("runs?colour=red", StatusCode::BAD_REQUEST),
        ("notices?all=maybe", StatusCode::BAD_REQUEST),
        ("runs/r-nope", StatusCode::NOT_FOUND),
        ("runs/r-nope/transcript", StatusCode::NOT_FOUND),
    ] {
        let (status, body) = get_json(&api(path)).await;
        assert_eq!(status, code, "{path}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{path}: {body}");
    }
    let (status, body) = get_json(&api("runs?since=2020-01-01T00:00:00Z&limit=1000")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_token_guards_everything_but_liveness_and_non_loopback_needs_one() {
    let app = spawn_app().await;
    let mut config = ops_config(&app);
    config.ops.bind = Some("0.0.0.0:0".parse().unwrap());
    let refused = http::bind(&config.ops).await.unwrap_err();
    assert!(matches!(refused, OpsError::TokenRequired(_)), "{refused}");
    assert!(refused.to_string().contains("ops.token"), "{refused}");

    let token = "SECRET-ops-http-token-51c9";
    config.ops.token = Some(token.to_owned().into());
    let server = Server::start(config).await;
    for path in ["/metrics", "/api/status", "/api/runs", "/api/notices"] {
        let url = format!("{}{path}", server.base);
        for wrong in [None, Some("SECRET-ops-http-token-51c8"), Some("short")] {
            let (status, body) = get(&url, wrong).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} with {wrong:?}");
            assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "unauthorized");
        }
        let (status, body) = get(&url, Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    // The probes are open: an orchestrator's probe has no token.
    assert_eq!(get(&format!("{}/healthz", server.base), None).await.0, StatusCode::OK);
    assert_eq!(get(&format!("{}/readyz", server.base), None).await.0, StatusCode::OK);
    // The dashboard too: without the token, its sign-in page; with it, the dashboard.
    let (status, page) = get(&format!("{}/", server.base), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("Ops token") && !page.contains("dashboard.js"), "{page}");
    let (status, page) = get(&format!("{}/", server.base), Some(token)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("dashboard.js"), "{page}");
    server.stop().await;
}

/// The DOM of `url` after headless Chromium ran its scripts for 5 s (virtual time).
pub(crate) async fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let args = [
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        format!("--user-data-dir={}", profile.path().display()),
        "--virtual-time-budget=5000".to_owned(),
        "--dump-dom".to_owned(),
        url.to_owned(),
    ];
    let output = tokio::process::Command::new(CHROMIUM).args(&args).output();
    let output = tokio::time::timeout(Duration::from_secs(90), output).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "chromium failed: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn the_dashboard_shows_a_run_and_its_transcript_in_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install the Debian packages chromium and chromium-driver \
         (`.ci/run` installs them when missing)"
    );
    let app = spawn_app().await;
    let server = Server::start(ops_config(&app)).await;
    run_through_worker(&app, "r-ops-dash", "ops-dash@example.com", "ops-dash").await;

    let dom = dump_dom(&format!("{}/?run=r-ops-dash", server.base)).await;
    let detail = dom.split("id=\"view-run\"").nth(1).unwrap_or_else(|| panic!("no detail: {dom}"));
    assert!(detail.contains("r-ops-dash"), "run id missing: {dom}");
    assert!(detail.contains("succeeded"), "state missing: {dom}");
    assert!(detail.contains("→ gmail_fetch_mails"), "transcript missing: {dom}");
    // The result under its own heading, with the usage.
    let result = detail.split("id=\"detail-result\"").nth(1).expect("a result section");
    let result = result.split("</pre>").next().unwrap();
    assert!(result.contains("I created the calendar event"), "result missing: {dom}");
    assert!(detail.contains("cache read tokens"), "usage missing: {dom}");
    let dom = dump_dom(&format!("{}/?view=runs", server.base)).await;
    let runs = dom.split("id=\"runs\"").nth(1).unwrap();
    assert!(runs.contains("ops-dash@example.com"), "run list missing the run: {dom}");
    // The front page's usage today and this month: the one run's tokens (every kind).
    let record = app.record("r-ops-dash").await;
    let kinds = ["tokens_input", "tokens_output", "tokens_cache_write", "tokens_cache_read"];
    let tokens: u64 = kinds.iter().map(|k| record.get(k).unwrap().parse::<u64>().unwrap()).sum();
    let shown = tokens
        .to_string()
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(",");
    let dom = dump_dom(&format!("{}/", server.base)).await;
    let status = dom.split("id=\"status\"").nth(1).unwrap().split("</div></div>").next().unwrap();
    for label in ["tokens today", "tokens this month"] {
        assert!(
            status.contains(&format!("<b>{shown} (~$")) && status.contains(label),
            "{label} {shown}: {status}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn the_worker_binary_serves_ops_and_closes_it_after_the_drain() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("worker.log");
    let mut worker = spawn_worker(&app, dir.path(), &log_path);
    let base = wait_for_url(&log_path).await;
    assert_eq!(get(&format!("{base}healthz"), None).await.0, StatusCode::OK);
    let (status, body) = get(&format!("{base}readyz"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let pid = worker.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exit = tokio::task::spawn_blocking(move || worker.wait().unwrap()).await.unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(exit.code(), Some(0), "log:\n{log}");
    let stopped = log.find("Worker stopped.").unwrap_or_else(|| panic!("log:\n{log}"));
    assert!(log.find("Ops HTTP listening.").is_some_and(|at| at < stopped), "log:\n{log}");
    assert!(client().get(format!("{base}healthz")).send().await.is_err(), "closed after exit");

    // A non-loopback bind without a token never starts.
    let env = worker_env(&app, dir.path());
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.retain(|(k, _)| *k != "AGENTCRON__OPS__BIND");
    env.push(("AGENTCRON__OPS__BIND", "0.0.0.0:0"));
    let output = crate::common::agentcron(&["worker"], &env, &crate::common::repo_root());
    let (_, stderr) = crate::common::text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ops.token"), "{stderr}");
}

pub(crate) fn worker_env(app: &TestApp, transcripts: &Path) -> Vec<(String, String)> {
    let base = app.sim.base_url().to_owned();
    [
        ("SCALEKIT_ENV_URL", base.clone()),
        ("ANTHROPIC_BASE_URL", base),
        ("SCALEKIT_CLIENT_ID", "sim-client-id".to_owned()),
        ("SCALEKIT_CLIENT_SECRET", crate::common::app::CLIENT_SECRET.to_owned()),
        ("ANTHROPIC_API_KEY", crate::common::app::API_KEY.to_owned()),
        ("REDIS_URL", app.redis.url.clone()),
        ("AGENTCRON__REDIS__PREFIX", app.redis.prefix.clone()),
        ("AGENTCRON__OPS__BIND", "127.0.0.1:0".to_owned()),
        ("AGENTCRON__TRANSCRIPTS__DIR", transcripts.display().to_string()),
        ("AGENTCRON_LOG_FORMAT", "json".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

pub(crate) fn spawn_worker(app: &TestApp, dir: &Path, log: &Path) -> std::process::Child {
    spawn_worker_with(log, &worker_env(app, dir))
}

/// `agentcron worker` with only `env` of the agentcron variables, logging to `log`.
pub(crate) fn spawn_worker_with(log: &Path, env: &[(String, String)]) -> std::process::Child {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_agentcron"));
    command.arg("worker").current_dir(crate::common::repo_root());
    for (name, _) in std::env::vars() {
        if name.starts_with("AGENTCRON")
            || name.starts_with("SCALEKIT_")
            || name.starts_with("ANTHROPIC_")
        {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().cloned()).stdout(std::process::Stdio::null());
    command.stderr(std::fs::File::create(log).unwrap());
    command.spawn().unwrap()
}

/// The `http://127.0.0.1:<port>/` the worker logged.
pub(crate) async fn wait_for_url(log: &Path) -> String {
    let pattern = regex::Regex::new(r"http://127\.0\.0\.1:\d+/").unwrap();
    poll_until("the worker to log its ops URL", Duration::from_secs(30), || async {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        pattern.find(&text).map(|found| found.as_str().to_owned()).ok_or(Text(text))
    })
    .await
}
