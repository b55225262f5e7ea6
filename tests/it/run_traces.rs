//! OpenTelemetry traces of real `agentcron worker` processes, received by an in-process OTLP
//! receiver (`POST /v1/traces`, `http/json`): one trace per run attempt, a span per phase the
//! attempt went through, remote-call spans that are the parents of the `traceparent` every
//! request the simulator saw carried, the record's `trace_id` that of the last attempt, and
//! no secret in any span. Without the `OTEL_*` variables no request carries a `traceparent`;
//! `http/protobuf` is spoken too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::app::{API_KEY, CLIENT_SECRET, TestApp, cli, spawn_app};
use crate::common::poll::WithLog;
use crate::common::poll_until;
use crate::common::procs::{Worker, child_env, set_env, spawn_worker, wait_for};

/// What the receiver got: each request's content type and body.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An OTLP/HTTP receiver on 127.0.0.1:0 that keeps every `POST /v1/traces`; its base URL.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let kept = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let kept = Arc::clone(&kept);
            async move {
                let content_type = headers
                    .get("content-type")
                    .map(|value| value.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                kept.lock().unwrap().push((content_type, body.to_vec()));
                // An empty `ExportTraceServiceResponse` is a full success in either encoding.
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), received)
}

/// One received span, flattened.
#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    parent_id: String,
    name: String,
    start: u128,
    attributes: BTreeMap<String, Value>,
}

impl Span {
    fn text(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(Value::as_str)
    }
}

/// An OTLP `AnyValue` as plain JSON (`intValue` is a string in OTLP/JSON).
fn any_value(value: &Value) -> Value {
    if let Some(text) = value.get("stringValue") {
        return text.clone();
    }
    if let Some(int) = value.get("intValue") {
        let n = int.as_i64().or_else(|| int.as_str().and_then(|s| s.parse().ok())).unwrap();
        return json!(n);
    }
    value.get("boolValue").or(value.get("doubleValue")).cloned().unwrap_or(Value::Null)
}

/// Every span of the `http/json` bodies received, and the service names they came from.
fn spans(received: &Received) -> (Vec<Span>, BTreeSet<String>) {
    let mut out = Vec::new();
    let mut services = BTreeSet::new();
    for (content_type, body) in received.lock().unwrap().iter() {
        assert_eq!(content_type, "application/json");
        let body: Value = serde_json::from_slice(body).unwrap();
        for resource in body["resourceSpans"].as_array().unwrap() {
            for attribute in resource["resource"]["attributes"].as_array().unwrap() {
                if attribute["key"] == "service.name" {
                    services.insert(any_value(&attribute["value"]).as_str().unwrap().to_owned());
                }
            }
            for scope in resource["scopeSpans"].as_array().unwrap() {
                for span in scope["spans"].as_array().unwrap() {
                    let attributes = span["attributes"]
                        .as_array()
                        .map(|list| {
                            list.iter()
                                .map(|a| {
                                    (a["key"].as_str().unwrap().to_owned(), any_value(&a["value"]))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let text = |key: &str| span[key].as_str().unwrap_or_default().to_owned();
                    out.push(Span {
                        trace_id: text("traceId").to_lowercase(),
                        span_id: text("spanId").to_lowercase(),
                        parent_id: text("parentSpanId").to_lowercase(),
                        name: text("name"),
                        start: text("startTimeUnixNano").parse().unwrap(),
                        attributes,
                    });
                }
            }
        }
    }
    (out, services)
}

/// The `run attempt` root spans of `run_id`, oldest first.
fn attempts_of<'a>(spans: &'a [Span], run_id: &str) -> Vec<&'a Span> {
    let mut roots: Vec<&Span> = spans
        .iter()
        .filter(|span| span.name == "run attempt" && span.text("run_id") == Some(run_id))
        .collect();
    roots.sort_by_key(|span| span.start);
    roots
}

/// `(trace id, parent span id)` of a `traceparent` (`00-<trace>-<span>-<flags>`).
fn parse_traceparent(value: &str) -> (String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00", "{value}");
    assert_eq!(parts[1].len(), 32, "{value}");
    assert_eq!(parts[2].len(), 16, "{value}");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// A worker child for `app` with `env` added, logging to `log`.
fn worker(app: &TestApp, log: &Path, env: &[(&str, &str)]) -> Worker {
    let mut child = child_env(app, app.transcripts.path());
    set_env(&mut child, "AGENTCRON__RETRY__MAX_ATTEMPTS", "2");
    set_env(&mut child, "AGENTCRON__RETRY__INITIAL", "50ms");
    set_env(&mut child, "AGENTCRON__RETRY__MAX_INTERVAL", "200ms");
    for (name, value) in env {
        set_env(&mut child, name, value);
    }
    spawn_worker(&child, log)
}

/// SIGTERM, and the clean exit that follows the drain (the tracer provider is flushed then).
async fn stop(mut worker: Worker, log: &Path) {
    let pid = worker.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exit = poll_until("the worker to exit after SIGTERM", Duration::from_secs(30), || {
        let exited = worker.try_wait().unwrap().ok_or(WithLog("running", log));
        async move { exited }
    })
    .await;
    assert!(exit.success(), "{exit}: {}", std::fs::read_to_string(log).unwrap_or_default());
}

async fn succeeded(app: &TestApp, run_id: &str, log: &Path) {
    wait_for(app, run_id, log, |(state, _)| state.as_deref() == Some("succeeded")).await;
}

/// The audit's requests from index `from` on.
async fn requests_since(app: &TestApp, from: usize) -> Vec<Value> {
    app.audit().await["traceparents"].as_array().unwrap()[from..].to_vec()
}

/// What an HTTP/2 client sends first (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const PHASES: [&str; 6] = ["checking", "minting", "vault", "session", "message", "streaming"];

#[tokio::test]
async fn each_attempt_is_a_trace_whose_calls_are_what_the_simulator_saw() {
    let app = spawn_app().await;
    let (endpoint, received) = receiver().await;
    let log = app.transcripts.path().join("worker.log");
    // Requests so far are the in-process setup's, with traces off in this process.
    let n_before = app.audit().await["traceparents"].as_array().unwrap().len();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_SERVICE_NAME", "agentcron-traces-test"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let child = worker(&app, &log, &env);
    // The first run's checking fails twice (every try of its call), so its first attempt
    // fails transiently and the worker retries it.
    let fault =
        json!({"method": "POST", "path": "/api/v1/mcp/configs/", "status": 503, "count": 2});
    app.sim_client.add_fault(fault).await;
    app.enqueue(&[("r-trace-retried", "trace-a@example.com")]).await;
    succeeded(&app, "r-trace-retried", &log).await;
    app.enqueue(&[("r-trace-plain", "trace-b@example.com")]).await;
    succeeded(&app, "r-trace-plain", &log).await;
    let expected = [("r-trace-retried", 2), ("r-trace-plain", 1)];
    for (run_id, n) in expected {
        assert_eq!(app.record(run_id).await.get("attempts"), Some(n.to_string().as_str()));
    }

    // Every attempt's root span ends after its phases; wait for all of them.
    poll_until("every attempt's trace exported", Duration::from_secs(30), || async {
        let (spans, _) = spans(&received);
        let n_roots: Vec<usize> =
            expected.iter().map(|(id, _)| attempts_of(&spans, id).len()).collect();
        if n_roots == [2, 1] { Ok(()) } else { Err(WithLog(n_roots, &log)) }
    })
    .await;
    let seen = requests_since(&app, n_before).await;
    stop(child, &log).await;
    let (spans, services) = spans(&received);
    assert_eq!(services, BTreeSet::from(["agentcron-traces-test".to_owned()]));

    let mut all_traces = BTreeSet::new();
    for (run_id, n_attempts) in expected {
        let attempts = attempts_of(&spans, run_id);
        assert_eq!(attempts.len(), n_attempts, "{run_id}: one trace per attempt");
        for (i, attempt) in attempts.iter().enumerate() {
            assert!(attempt.parent_id.is_empty(), "an attempt is a trace's root: {attempt:?}");
            assert!(all_traces.insert(attempt.trace_id.clone()), "distinct trace ids");
            let phases: Vec<&str> = spans
                .iter()
                .filter(|span| {
                    span.trace_id == attempt.trace_id
                        && span.attributes.contains_key("agentcron.phase")
                })
                .map(|span| {
                    assert_eq!(span.parent_id, attempt.span_id, "a phase is the attempt's child");
                    span.name.as_str()
                })
                .collect();
            let phases: BTreeSet<&str> = phases.into_iter().collect();
            // The retried run's first attempt ended in checking; every other went through all.
            let wanted: BTreeSet<&str> = if run_id == "r-trace-retried" && i == 0 {
                BTreeSet::from(["checking"])
            } else {
                PHASES.into_iter().collect()
            };
            assert_eq!(phases, wanted, "{run_id} attempt {}", i + 1);
        }
        let record = app.record(run_id).await;
        assert_eq!(record.get("trace_id"), Some(attempts[n_attempts - 1].trace_id.as_str()));
    }
    // `agentcron run <id>` shows it, with `--json` too.
    let last = &attempts_of(&spans, "r-trace-retried")[1].trace_id;
    let (code, stdout, stderr) = cli(&app, &["run", "r-trace-retried", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    let shown: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(shown["record"]["trace_id"], last.as_str(), "{stdout}");
    let (code, stdout, stderr) = cli(&app, &["run", "r-trace-retried"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.lines().any(|line| line.contains("trace_id") && line.contains(last.as_str())));

    // The remote calls: every request the simulator saw from the worker carries a
    // traceparent naming a remote-call span of an attempt's trace, of the same method and
    // route; every remote-call span was seen; the retried call's second try says so.
    let calls: BTreeMap<&str, &Span> = spans
        .iter()
        .filter(|span| span.name == "remote call" || span.attributes.contains_key("url.template"))
        .map(|span| (span.span_id.as_str(), span))
        .collect();
    assert!(!seen.is_empty());
    let mut parents = BTreeSet::new();
    for request in &seen {
        let traceparent = request["traceparent"].as_str().unwrap_or_else(|| panic!("{request}"));
        let (trace_id, parent) = parse_traceparent(traceparent);
        assert!(all_traces.contains(&trace_id), "{request}: not an attempt's trace");
        let call = calls.get(parent.as_str()).unwrap_or_else(|| panic!("{request}: no such span"));
        assert_eq!(call.trace_id, trace_id);
        assert_eq!(call.text("http.request.method"), request["method"].as_str(), "{request}");
        assert_eq!(call.text("url.template"), request["route"].as_str(), "{request}");
        parents.insert(parent);
    }
    let call_ids: BTreeSet<String> = calls.keys().map(|id| (*id).to_owned()).collect();
    assert_eq!(parents, call_ids, "every remote-call span is a request the simulator saw");
    let checking: Vec<&&Span> = calls
        .values()
        .filter(|span| {
            span.text("url.template") == Some("/api/v1/mcp/configs/{config_id}/connected_accounts")
        })
        .collect();
    let failed: Vec<&&Span> = checking
        .iter()
        .filter(|span| span.attributes.get("http.response.status_code") == Some(&json!(503)))
        .copied()
        .collect();
    assert_eq!(failed.len(), 2, "{checking:?}");
    // The log lines of an attempt carry its trace id: the retry of the first attempt's call
    // is logged inside it.
    let first = &attempts_of(&spans, "r-trace-retried")[0].trace_id;
    let log_text = std::fs::read_to_string(&log).unwrap();
    let retried: Vec<&str> =
        log_text.lines().filter(|line| line.contains("Remote call failed; retrying.")).collect();
    assert!(!retried.is_empty(), "{log_text}");
    for line in retried {
        let line: Value = serde_json::from_str(line).unwrap();
        let spans = line["spans"].as_array().unwrap();
        assert!(spans.iter().any(|span| span["trace_id"] == first.as_str()), "{line}");
    }
    let resends: BTreeSet<i64> = failed
        .iter()
        .map(|span| span.attributes["http.request.resend_count"].as_i64().unwrap())
        .collect();
    assert_eq!(resends, BTreeSet::from([0, 1]));

    // Per session: each request the simulator saw for it, the event stream's included (its
    // own HTTP client), carries the trace of the attempt that ran it.
    for (run_id, n_attempts) in expected {
        let sessions = app.sessions_of(run_id).await;
        assert_eq!(sessions.len(), 1);
        let last = &attempts_of(&spans, run_id)[n_attempts - 1].trace_id;
        let traced = sessions[0]["traceparents"].as_array().unwrap();
        let routes: BTreeSet<&str> = traced.iter().map(|r| r["route"].as_str().unwrap()).collect();
        assert!(routes.contains("/v1/sessions/{session_id}/events/stream"), "{routes:?}");
        for request in traced {
            let (trace_id, _) = parse_traceparent(request["traceparent"].as_str().unwrap());
            assert_eq!(&trace_id, last, "{request}");
        }
    }

    // No secret in any span.
    for (_, body) in received.lock().unwrap().iter() {
        let text = String::from_utf8_lossy(body);
        for secret in [API_KEY, CLIENT_SECRET] {
            assert!(!text.contains(secret), "a secret in an exported span");
        }
    }
}

/// Off means off: without the variables no request carries a trace context and the record
/// has no trace id; with `http/protobuf` the receiver gets protobuf bodies; with `grpc` the
/// exporter opens HTTP/2 connections, and a collector that never answers holds up neither the
/// runs nor the worker's exit; an unknown protocol stops the process at start, naming it.
#[tokio::test]
async fn without_the_variables_nothing_is_traced_and_protobuf_is_spoken() {
    let app = spawn_app().await;
    let log = app.transcripts.path().join("worker.log");
    let n_before = app.audit().await["traceparents"].as_array().unwrap().len();
    let child = worker(&app, &log, &[]);
    app.enqueue(&[("r-untraced", "untraced@example.com")]).await;
    succeeded(&app, "r-untraced", &log).await;
    stop(child, &log).await;
    let seen = requests_since(&app, n_before).await;
    assert!(seen.len() > 5, "{seen:?}");
    assert!(seen.iter().all(|request| request["traceparent"].is_null()), "{seen:?}");
    assert_eq!(app.record("r-untraced").await.get("trace_id"), None);

    let (endpoint, received) = receiver().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", format!("{endpoint}/v1/traces")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let child = worker(&app, &log, &env);
    app.enqueue(&[("r-protobuf", "protobuf@example.com")]).await;
    succeeded(&app, "r-protobuf", &log).await;
    // The drain flushes what the batch has not sent yet.
    stop(child, &log).await;
    let received = received.lock().unwrap().clone();
    assert!(!received.is_empty(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    for (content_type, body) in received.iter() {
        assert_eq!(content_type, "application/x-protobuf");
        assert!(!body.is_empty());
    }
    assert_eq!(app.record("r-protobuf").await.get("trace_id").map(str::len), Some(32));

    // gRPC: the exporter speaks HTTP/2 to the endpoint (this one reads the connection
    // preface and answers nothing), and the runs and the SIGTERM exit do not wait on it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_url = format!("http://{}", listener.local_addr().unwrap());
    let prefaces: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let kept = Arc::clone(&prefaces);
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let kept = Arc::clone(&kept);
            tokio::spawn(async move {
                let mut preface = vec![0; H2_PREFACE.len()];
                if tokio::io::AsyncReadExt::read_exact(&mut socket, &mut preface).await.is_ok() {
                    kept.lock().unwrap().push(preface);
                }
                // Held open, unanswered, until the client gives up.
                tokio::time::sleep(Duration::from_secs(60)).await;
            });
        }
    });
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", grpc_url.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let child = worker(&app, &log, &env);
    app.enqueue(&[("r-grpc", "grpc@example.com")]).await;
    succeeded(&app, "r-grpc", &log).await;
    poll_until("a gRPC export", Duration::from_secs(20), || async {
        let seen = prefaces.lock().unwrap().clone();
        if seen.iter().any(|preface| preface == H2_PREFACE) { Ok(()) } else { Err(seen) }
    })
    .await;
    stop(child, &log).await;
    assert_eq!(app.record("r-grpc").await.get("trace_id").map(str::len), Some(32));

    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"),
    ];
    let output = crate::common::agentcron(&["status"], &env, &crate::common::repo_root());
    let (_, stderr) = crate::common::text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL=carrier-pigeon"), "{stderr}");
}
