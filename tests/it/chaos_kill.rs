//! Chaos, kills, freezes and faults: 300 runs for 300 users across three real `agentcron
//! worker` processes while the simulator fails about a tenth of the API calls with 5xx,
//! answers 429 with `Retry-After`, cuts event streams, loses the answer to 5 % of vault,
//! credential and session creates after carrying them out, and a killer every 2–4 s either
//! SIGKILLs a random worker and starts a new one or freezes one (SIGSTOP) for 1.5–3.5 s, past
//! its 2 s lease, then thaws it. Every run must end terminal (all succeeded: attempts are
//! raised to 10), and the simulator's audit must show exactly one session and one
//! `user.message` per run that reached the session phase, one vault per user with one
//! credential, sessions only for known runs, and no token used for another user. The counts
//! are printed (`--no-capture`). All of it on a test-owned `redis-server` whose writes are
//! paused for 0.5–1 s every 3–5 s (a pause on the shared Redis would stall every other test).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use agentcron::config::RedisConn;
use agentcron::keys::Keys;
use agentcron::outcome::RunState;
use agentcron::queue::{NewRun, Queue};
use agentcron::records;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::app::{TestApp, spawn_app};
use crate::common::poll::poll_until_else;
use crate::common::private_redis::{PrivateRedis, setup_on};
use crate::common::procs::{child_env, kill9, set_env, spawn_worker};

const N_RUNS: usize = 300;
const N_WORKERS: usize = 3;
/// Runs in flight per worker: few enough that the run lasts long enough for several kills.
/// This test found `FailPoint::TurnEndRecorded` (see `run/turn.rs` `resume`):
/// a killed attempt had recorded the final `session.status_idle` before acting on it.
const CONCURRENCY: &str = "8";
/// The killer stops at this point even if runs are still open; the survivors then finish.
const KILLING_FOR: Duration = Duration::from_secs(45);
/// Everything must be terminal by then.
const DEADLINE: Duration = Duration::from_secs(100);

/// The fault mix. The simulator applies only the first rule applicable to a request, so each
/// rule owns a disjoint set of requests: sends are slowed, stream GETs are cut, other Anthropic
/// calls get 503s, session, vault and credential creates lose 5 % of their answers, Scalekit
/// calls get 429 with `Retry-After: 1`.
fn faults() -> Vec<Value> {
    vec![
        // Slow agent events (and few runs per worker) keep runs in flight long enough for
        // every kill to hit some mid-stream; this rule owns the sends, so they get no 503.
        json!({"method": "POST", "path": "/v1/sessions/*/events", "event_delay_ms": 150}),
        json!({"method": "GET", "path": "/v1/sessions/*/events/stream", "stream_cut_after": 2, "rate": 0.25}),
        json!({"method": "POST", "path": "/v1/sessions", "lose_response": true, "rate": 0.05}),
        json!({"method": "POST", "path": "/v1/vaults", "lose_response": true, "rate": 0.05}),
        json!({"path": "/v1/", "status": 503, "rate": 0.10}),
        json!({"path": "/api/", "status": 429, "retry_after": 1, "rate": 0.05}),
        json!({"path": "/oauth", "status": 503, "rate": 0.10}),
    ]
}

/// The workers' log lines (at most 300) of the runs whose sessions the audit reports a
/// violation for, with their records, so that a rare failure can be read after the fact.
fn violation_logs(audit: &Value, records: &HashMap<String, records::Fields>, log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out = String::new();
    for violation in audit["violations"].as_array().into_iter().flatten() {
        let session_id = violation["session_id"].as_str().unwrap_or_default();
        let sessions = audit["sessions"].as_array().into_iter().flatten();
        let session = sessions.into_iter().find(|s| s["id"] == session_id);
        let Some(run_id) = session.and_then(|s| s["run_id"].as_str()) else { continue };
        out.push_str(&format!("{run_id}: {:?}\n", records.get(run_id)));
        for line in text.lines().filter(|line| line.contains(run_id)).take(300) {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

/// The test's private Redis, where the workers, the runs and the pauses are.
struct Store {
    server: PrivateRedis,
    conn: RedisConn,
    keys: Keys,
}

/// Runs per state, from the state indexes in one round trip; `None` when the query fails
/// (the machine is loaded and the connection's response timeout is short): poll again.
async fn count_states(store: &Store) -> Option<BTreeMap<&'static str, usize>> {
    let mut conn = store.conn.clone();
    let mut pipe = redis::pipe();
    for run_state in RunState::ALL {
        pipe.zcard(store.keys.runs_by_state(run_state.as_str()));
    }
    let counts: Vec<usize> = pipe.query_async(&mut conn).await.ok()?;
    Some(RunState::ALL.iter().map(|s| s.as_str()).zip(counts).collect())
}

fn n_terminal(counts: &BTreeMap<&'static str, usize>) -> usize {
    RunState::ALL.iter().filter(|s| s.is_terminal()).filter_map(|s| counts.get(s.as_str())).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_and_faults_lose_nothing_and_duplicate_nothing() {
    let app = spawn_app().await;
    let server = PrivateRedis::start(false).await;
    let config = setup_on(&app, &server).await;
    let conn = config.redis.connect(Default::default()).await.unwrap();
    let store = Store { conn, keys: config.redis.keys(), server };
    let dir = tempfile::tempdir().unwrap();
    let mut env = child_env(&app, dir.path());
    set_env(&mut env, "REDIS_URL", &store.server.url());
    set_env(&mut env, "AGENTCRON__WORKER__MAX_ATTEMPTS", "10");
    set_env(&mut env, "AGENTCRON__WORKER__CONCURRENCY", CONCURRENCY);
    set_env(&mut env, "AGENTCRON__RETRY__INITIAL", "50ms");
    set_env(&mut env, "AGENTCRON__RETRY__MAX_INTERVAL", "1s");
    for fault in faults() {
        app.sim_client.add_fault(fault).await;
    }
    let runs: Vec<NewRun> = (0..N_RUNS)
        .map(|i| NewRun {
            run_id: crate::common::run_id(&format!("chaos-{i:03}")),
            ..NewRun::now(crate::common::user_id(&format!("u{i}@chaos.test")))
        })
        .collect();
    Queue::connect(&config.redis).await.unwrap().enqueue(&runs, "test").await.unwrap();

    let log = dir.path().join("workers.log");
    let mut workers: Vec<crate::common::procs::Worker> =
        (0..N_WORKERS).map(|_| spawn_worker(&env, &log)).collect();
    let started = Instant::now();
    let (mut n_kills, mut n_freezes, mut n_pauses) = (0, 0, 0);
    let killer = async {
        while started.elapsed() < KILLING_FOR {
            // The chaos schedule (a SIGKILL or a freeze every 2–4 s), not a wait for a state.
            tokio::time::sleep(Duration::from_millis(fastrand::u64(2000..4000))).await;
            let victim = fastrand::usize(..workers.len());
            if fastrand::bool() {
                kill9(&mut workers[victim]);
                workers[victim] = spawn_worker(&env, &log);
                n_kills += 1;
            } else {
                signal(&workers[victim], "-STOP");
                tokio::time::sleep(Duration::from_millis(fastrand::u64(1500..3500))).await;
                signal(&workers[victim], "-CONT");
                n_freezes += 1;
            }
        }
    };
    let all_ended = poll_until_else(
        "every run terminal",
        DEADLINE,
        || async {
            // `None` (a failed query on a loaded machine) is polled again.
            match count_states(&store).await {
                Some(counts) if n_terminal(&counts) == N_RUNS => Ok(counts),
                other => Err(other),
            }
        },
        || stuck(&store, &log),
    );
    tokio::pin!(all_ended);
    // The killer stops when every run has ended, or after KILLING_FOR; the poll goes on.
    // Writes paused for 0.5–1 s every 3–5 s, as a failover or a slow fork does.
    let pauser = async {
        while started.elapsed() < KILLING_FOR {
            tokio::time::sleep(Duration::from_millis(fastrand::u64(3000..5000))).await;
            let pause_ms = fastrand::u64(500..1000);
            let mut conn = store.conn.clone();
            let paused: redis::RedisResult<()> = redis::cmd("CLIENT")
                .arg("PAUSE")
                .arg(pause_ms)
                .arg("WRITE")
                .query_async(&mut conn)
                .await;
            n_pauses += usize::from(paused.is_ok());
        }
    };
    let chaos = async { tokio::join!(killer, pauser) };
    let counts = tokio::select! {
        counts = &mut all_ended => counts,
        _ = chaos => all_ended.await,
    };
    let elapsed = started.elapsed();
    for worker in &mut workers {
        kill9(worker);
    }

    let records = load_records(&store).await;
    let audit = app.audit().await;
    let (fault_hits, n_sessions, n_messages) = summary(&app, &audit).await;
    println!(
        "chaos kill run: {N_RUNS} runs, {N_WORKERS} workers, {n_kills} SIGKILLs, {n_freezes} \
         freezes, {n_pauses} write pauses, {:.1} s; \
         states {counts:?}; sessions {n_sessions}, user.messages {n_messages}; fault hits {fault_hits:?}; \
         attempts {:?}; violations {}",
        elapsed.as_secs_f64(),
        attempts_histogram(&records),
        audit["violations"]
    );
    // How many kills fit depends on how fast the runs go; what matters is that kills landed
    // on runs in flight, which shows as runs that needed a second attempt.
    assert!(n_kills + n_freezes >= 2, "the killer ran: {n_kills} kills, {n_freezes} freezes");
    assert!(n_pauses >= 2, "writes were paused: {n_pauses} times");
    let retried = records
        .values()
        .filter(|r| r.get("attempts").and_then(|a| a.parse::<u32>().ok()).unwrap_or(0) >= 2)
        .count();
    assert!(retried > 0, "kills hit runs in flight: {retried} runs needed another attempt");
    assert_every_run_succeeded(&records);
    assert_audit(&records, &audit, &log);
    assert_one_vault_and_credential_per_user(&app, &records).await;
}

/// Sends `signal` (`-STOP`, `-CONT`) to `child`.
fn signal(child: &Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(signal)
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {}", child.id());
}

/// Every user of the runs has exactly one vault, holding exactly one credential.
async fn assert_one_vault_and_credential_per_user(
    app: &TestApp,
    records: &HashMap<String, records::Fields>,
) {
    // The faults would hit these reads too.
    let (status, _) = app.sim_client.control(Method::DELETE, "/faults", None).await;
    assert!(status.is_success(), "{status}");
    let mut vaults: HashMap<String, Vec<String>> = HashMap::new();
    let mut page: Option<String> = None;
    loop {
        let query = page.as_ref().map_or(String::new(), |p| format!("&page={p}"));
        let path = format!("/v1/vaults?limit=100{query}");
        let (_, listed) = app.sim_client.anthropic(Method::GET, &path, None).await;
        for vault in listed["data"].as_array().unwrap() {
            let user = vault["metadata"]["user"].as_str().unwrap_or_default().to_owned();
            vaults.entry(user).or_default().push(vault["id"].as_str().unwrap().to_owned());
        }
        match listed["next_page"].as_str() {
            Some(next) if !next.is_empty() => page = Some(next.to_owned()),
            _ => break,
        }
    }
    let users: HashSet<&str> = records.values().filter_map(|r| r.get("user")).collect();
    assert_eq!(vaults.len(), users.len(), "one vault per user");
    for (user, ids) in &vaults {
        assert_eq!(ids.len(), 1, "{user}: one vault, got {ids:?}");
        let path = format!("/v1/vaults/{}/credentials?limit=100", ids[0]);
        let (_, credentials) = app.sim_client.anthropic(Method::GET, &path, None).await;
        let n = credentials["data"].as_array().unwrap().len();
        assert_eq!(n, 1, "{user}: one credential, got {credentials}");
    }
}

async fn load_records(store: &Store) -> HashMap<String, records::Fields> {
    let mut conn = store.conn.clone();
    let mut out = HashMap::new();
    for i in 0..N_RUNS {
        let run_id = format!("chaos-{i:03}");
        let id = crate::common::run_id(&run_id);
        let record = records::load_run(&mut conn, &store.keys, &id).await.unwrap();
        out.insert(run_id.clone(), record.unwrap_or_else(|| panic!("{run_id} lost")));
    }
    out
}

async fn summary(app: &TestApp, audit: &Value) -> (Vec<(String, u64)>, usize, u64) {
    let (_, faults) = app.sim_client.control(Method::GET, "/faults", None).await;
    let fault_hits = faults["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["rule"]["path"].as_str().unwrap().to_owned(), f["hits"].as_u64().unwrap()))
        .collect();
    let totals = &audit["totals"];
    (
        fault_hits,
        totals["sessions"].as_u64().unwrap() as usize,
        totals["user_messages"].as_u64().unwrap(),
    )
}

fn attempts_histogram(records: &HashMap<String, records::Fields>) -> BTreeMap<String, usize> {
    let mut histogram = BTreeMap::new();
    for record in records.values() {
        *histogram.entry(record.get("attempts").unwrap_or("?").to_owned()).or_default() += 1;
    }
    histogram
}

fn assert_every_run_succeeded(records: &HashMap<String, records::Fields>) {
    for (run_id, record) in records {
        let run_state = record.get("state").unwrap_or_default();
        assert!(
            RunState::parse(run_state).is_some_and(RunState::is_terminal),
            "{run_id} not terminal: {record:?}"
        );
        if run_state == "dead" {
            assert!(!record.get("last_error").unwrap_or_default().is_empty(), "{record:?}");
        }
        assert_eq!(run_state, "succeeded", "{run_id} with 10 attempts: {record:?}");
    }
}

fn assert_audit(records: &HashMap<String, records::Fields>, audit: &Value, log: &Path) {
    assert_eq!(
        audit["violations"],
        json!([]),
        "no token for another user, no second message; the workers' log of each run involved:\n{}",
        violation_logs(audit, records, log)
    );
    let mut sessions: HashMap<String, Vec<&Value>> = HashMap::new();
    for session in audit["sessions"].as_array().unwrap() {
        let run_id = session["run_id"].as_str().unwrap_or_default().to_owned();
        assert!(records.contains_key(&run_id), "a session of no run: {session}");
        let user = session["user"].as_str().unwrap();
        assert_eq!(records[&run_id].get("user"), Some(user), "{session}");
        let subjects: HashSet<&str> = session["token_subjects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert!(subjects.iter().all(|s| *s == user), "cross-user token use: {session}");
        sessions.entry(run_id).or_default().push(session);
    }
    for (run_id, record) in records {
        let Some(session_id) = record.get("session_id") else { continue };
        let of_run = sessions.get(run_id).map_or(&[][..], Vec::as_slice);
        assert_eq!(of_run.len(), 1, "{run_id}: one session, got {of_run:?}");
        assert_eq!(of_run[0]["id"], session_id, "{run_id}");
        assert_eq!(of_run[0]["user_messages"], 1, "{run_id}: one user.message");
    }
}

/// What the open runs look like: a few records, the queue lists, and their log lines.
async fn stuck(store: &Store, log: &std::path::Path) -> String {
    let mut conn = store.conn.clone();
    let running: Vec<String> = redis::cmd("ZRANGE")
        .arg(store.keys.runs_by_state("running"))
        .arg(0)
        .arg(2)
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out = String::new();
    for run_id in &running {
        let id = crate::common::run_id(run_id);
        let record = records::load_run(&mut conn, &store.keys, &id).await;
        out.push_str(&format!("{run_id}: {record:?}\n"));
        let lines = agentcron::records::transcript::lines(&mut conn, &store.keys, &id)
            .await
            .unwrap_or_default();
        let types: Vec<&str> = lines.iter().filter_map(|line| line["type"].as_str()).collect();
        out.push_str(&format!("  transcript event types: {types:?}\n"));
        for line in text.lines().filter(|line| line.contains(run_id.as_str())) {
            out.push_str(&format!("  {line}\n"));
        }
    }
    let lists: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:q:*", store.keys.prefix()))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    out.push_str(&format!("queue keys: {lists:?}\n"));
    out
}
