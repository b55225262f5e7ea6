//! `agentcron authorize` as a user being onboarded meets it: the real binary against the
//! simulator, its stdout read line by line as it comes. Links show at once, one per pending
//! connection however long `--wait` waits, users are followed at once, a timeout says what is
//! still pending; and an unreachable service fails an interactive command within its budget.
// See: issue 25 ("Onboarding that answers at once", "Interactive commands fail fast").

use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentcron::keys::Keys;
use serde_json::{Value, json};

use crate::common::sim::{SimClient, spawn_sim};
use crate::common::{TestRedis, agentcron_command, poll_until, repo_root};
use crate::ops_setup::{env, run};

const MAGIC_LINK: &str = "POST /api/v1/connected_accounts/magic_link";
/// The simulator's client secret, which no output may show.
const CLIENT_SECRET: &str = "sim-client-secret";

/// An `agentcron` child whose stdout lines are collected as they come, each with when it
/// came, and its stderr too; SIGKILLed when dropped, so a failing test leaves no child behind.
struct Live {
    child: Child,
    started: Instant,
    lines: Arc<Mutex<Vec<(String, Duration)>>>,
    errors: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Live {
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = agentcron_command(args, env, &repo_root());
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = command.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let sink = Arc::clone(&lines);
        // Each reader ends when its pipe closes, which the kill on drop ensures.
        let stdout = std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                sink.lock().unwrap().push((line, started.elapsed()));
            }
        });
        let errors = Arc::new(Mutex::new(String::new()));
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let sink = Arc::clone(&errors);
        let stderr = std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        Self { child, started, lines, errors, readers: vec![stdout, stderr] }
    }

    fn lines(&self) -> Vec<(String, Duration)> {
        self.lines.lock().unwrap().clone()
    }

    fn errors(&self) -> String {
        self.errors.lock().unwrap().clone()
    }

    /// Waits (at most `limit`) for the child to exit; its status, stdout and stderr.
    async fn exit(&mut self, limit: Duration) -> (ExitStatus, String, String) {
        let child = Mutex::new(&mut self.child);
        let status = poll_until("the command to exit", limit, || async {
            child.lock().unwrap().try_wait().unwrap()
        })
        .await;
        // The child has exited, so its pipes are closed: the readers end after the last line.
        self.readers.drain(..).for_each(|reader| reader.join().unwrap());
        let stdout = self.lines().into_iter().map(|(line, _)| line + "\n").collect::<String>();
        (status, stdout, self.errors())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // Best effort in a destructor: the child may have exited and been reaped already.
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// The lines that carry an auth link.
fn links(lines: &[(String, Duration)]) -> Vec<(String, Duration)> {
    lines.iter().filter(|(line, _)| line.contains("needs auth: http")).cloned().collect()
}

/// How many times the simulator saw a request whose `METHOD /path` satisfies `matches`.
async fn requests(sim: &crate::common::sim::SimHandle, matches: impl Fn(&str) -> bool) -> u64 {
    let audit = SimClient::new(sim).audit().await;
    let requests = audit["requests"].as_object().unwrap();
    requests.iter().filter(|(name, _)| matches(name)).map(|(_, n)| n.as_u64().unwrap()).sum()
}

/// The kinds of event on the notices stream, oldest first.
async fn notice_events(redis: &TestRedis) -> Vec<String> {
    let mut conn = redis.conn.clone();
    let events: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(Keys::new(redis.prefix.as_str()).notices())
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    events
        .iter()
        .map(|(_, fields)| fields.iter().find(|(k, _)| k == "event").unwrap().1.clone())
        .collect()
}

/// Measured before: nothing printed until the command ended (the first link after the whole
/// `--timeout`), a new link and a notice event on every 2-second poll, exit 1 with no word of
/// a timeout. Now the links come at once, each pending connection gets one link and one
/// notice however many polls pass, and the timeout names what is pending, with exit 4.
#[tokio::test]
async fn authorize_wait_shows_links_at_once_mints_one_per_connection_and_names_a_timeout() {
    let sim = spawn_sim().await;
    let redis = TestRedis::new().await;
    let env = env(&sim, &redis);
    assert_eq!(run(&["setup"], &env).await.status.code(), Some(0));
    // A new user: no account on either connection.
    let user = "newcomer@example.com";
    for connection in ["gmail", "googlecalendar"] {
        SimClient::new(&sim).set_connection(user, connection, None).await;
    }
    let mut child = Live::spawn(&["authorize", user, "--wait", "--timeout", "8s"], &env);

    let first = poll_until("a link on stdout", Duration::from_secs(30), || async {
        links(&child.lines()).first().cloned()
    })
    .await;
    assert!(child.child.try_wait().unwrap().is_none(), "shown while it waits: {first:?}");
    assert!(first.1 < Duration::from_secs(5), "shown at once, not at the timeout: {first:?}");

    let (status, stdout, stderr) = child.exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(4), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!(
            "timed out after 8s; still pending: {user}/gmail, {user}/googlecalendar"
        )),
        "{stderr}"
    );
    assert_eq!(links(&child.lines()).len(), 2, "one line per link: {stdout}");
    // Several polls happened, yet each pending connection got one link and one notice.
    let polls = requests(&sim, |r| r.starts_with("POST ") && r.ends_with("/connected_accounts"));
    assert!(polls.await >= 3, "it polled while it waited");
    assert_eq!(requests(&sim, |r| r == MAGIC_LINK).await, 2, "one link per pending connection");
    assert_eq!(notice_events(&redis).await, ["opened", "opened"]);
    assert!(!stdout.contains(CLIENT_SECRET) && !stderr.contains(CLIENT_SECRET));
    assert!(child.started.elapsed() < Duration::from_secs(60));
}

/// Users are followed at once: with the first link request of the two users hanging, the other
/// user's link still shows. One after another, as before, the second user waited for the
/// first (and nothing showed before the end anyway).
#[tokio::test]
async fn authorize_follows_users_at_once() {
    let sim = spawn_sim().await;
    let redis = TestRedis::new().await;
    let env = env(&sim, &redis);
    assert_eq!(run(&["setup"], &env).await.status.code(), Some(0));
    let control = SimClient::new(&sim);
    let users = ["ann@example.com", "bob@example.com"];
    for user in users {
        control.set_connection(user, "gmail", Some("ACTIVE")).await;
        control.set_connection(user, "googlecalendar", Some("EXPIRED")).await;
    }
    control
        .add_fault(json!({
            "method": "POST", "path": "/api/v1/connected_accounts/magic_link",
            "hang": true, "count": 1,
        }))
        .await;

    let args = ["authorize", users[0], users[1], "--wait", "--timeout", "5m"];
    let child = Live::spawn(&[&args[..], &["--connect-budget", "5m"]].concat(), &env);
    let shown = poll_until("a link on stdout", Duration::from_secs(30), || async {
        links(&child.lines()).first().cloned()
    })
    .await;
    assert_eq!(requests(&sim, |r| r == MAGIC_LINK).await, 2, "both users asked at once");
    let hung: Vec<_> = users.iter().filter(|user| !shown.0.starts_with(*user)).collect();
    assert_eq!(hung.len(), 1, "{shown:?}");
    assert!(
        !child.lines().iter().any(|(line, _)| line.starts_with(*hung[0])),
        "the user whose link request hangs is not shown yet"
    );
}

/// Once a user has links, `--wait` outlasts a Scalekit that fails for longer than a call's
/// budget: the failed poll is logged and the next one tried; the user then authorizing ends
/// the command with exit 0. Before, the first failed poll ended it with exit 1.
#[tokio::test]
async fn authorize_wait_outlasts_a_failed_poll() {
    let sim = spawn_sim().await;
    let redis = TestRedis::new().await;
    let env = env(&sim, &redis);
    assert_eq!(run(&["setup"], &env).await.status.code(), Some(0));
    let control = SimClient::new(&sim);
    let user = "kai@example.com";
    control.set_connection(user, "googlecalendar", Some("EXPIRED")).await;
    let args = ["authorize", user, "--wait", "--timeout", "2m", "--connect-budget", "1s"];
    let mut child = Live::spawn(&args, &env);
    let link = poll_until("a link on stdout", Duration::from_secs(30), || async {
        links(&child.lines()).first().cloned()
    })
    .await;

    let listing = "/api/v1/mcp/configs/*/connected_accounts";
    control.add_fault(json!({"method": "POST", "path": listing, "status": 503})).await;
    poll_until("a poll to fail", Duration::from_secs(30), || async {
        child.errors().contains("Polling a user's connections failed")
    })
    .await;
    assert!(child.child.try_wait().unwrap().is_none(), "still waiting: {}", child.errors());
    control.control(reqwest::Method::DELETE, "/faults", None).await;
    let link = link.0.rsplit("needs auth: ").next().unwrap().to_owned();
    control.http.get(&link).send().await.unwrap();

    let (status, stdout, stderr) = child.exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("✓ googlecalendar — ACTIVE (authorized)"), "{stdout}");
    assert!(stdout.ends_with("all connections active\n"), "{stdout}");
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Measured before: an unreachable Scalekit kept `authorize` retrying for 325 s (each call's
/// retries around the token's own), and the message did not name the host. Now each call has
/// the command's budget and the failure names the service, its host and the last error.
#[tokio::test]
async fn an_unreachable_service_fails_an_interactive_command_within_its_budget() {
    let sim = spawn_sim().await;
    let redis = TestRedis::new().await;
    let env = env(&sim, &redis);
    assert_eq!(run(&["setup"], &env).await.status.code(), Some(0));
    let closed = format!("http://127.0.0.1:{}", closed_port());

    for (command, var, service) in [
        ("authorize", "SCALEKIT_ENV_URL", "Scalekit"),
        ("setup", "ANTHROPIC_BASE_URL", "Anthropic"),
    ] {
        let mut env = env.clone();
        env.retain(|(name, _)| *name != var);
        env.push((var, closed.as_str()));
        let mut args = vec![command, "--connect-budget", "2s"];
        if command == "authorize" {
            args.push("someone@example.com");
        }
        let mut child = Live::spawn(&args, &env);
        let (status, stdout, stderr) = child.exit(Duration::from_secs(120)).await;
        let took = child.started.elapsed();
        assert_eq!(status.code(), Some(1), "{command}: {stdout}{stderr}");
        assert!(took < Duration::from_secs(30), "{command} within its budget: {took:?}");
        let named = format!("cannot reach {service} at {closed} after ");
        assert!(stderr.contains(&named), "{command}: {stderr}");
        assert!(stderr.contains("connection failed"), "{command}, the last error: {stderr}");
        assert!(!stdout.contains(CLIENT_SECRET) && !stderr.contains(CLIENT_SECRET));
        assert!(!stderr.contains("sim-anthropic-key"), "{stderr}");
    }
}

/// `--json` prints one line per user without `--wait`, each as soon as it is known.
#[tokio::test]
async fn authorize_json_prints_a_line_per_user() {
    let sim = spawn_sim().await;
    let redis = TestRedis::new().await;
    let env = env(&sim, &redis);
    assert_eq!(run(&["setup"], &env).await.status.code(), Some(0));
    SimClient::new(&sim).set_connection("lee@example.com", "googlecalendar", None).await;
    let output = run(&["authorize", "kim@example.com", "lee@example.com", "--json"], &env).await;
    assert_eq!(output.status.code(), Some(0));
    let lines: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let kim = lines.iter().find(|l| l["user"] == "kim@example.com").unwrap();
    assert_eq!(kim["all_active"], true);
    let lee = lines.iter().find(|l| l["user"] == "lee@example.com").unwrap();
    assert_eq!(lee["all_active"], false);
    let calendar = lee["connections"].as_array().unwrap().iter();
    let calendar = calendar.clone().find(|c| c["connection"] == "googlecalendar").unwrap();
    assert_eq!(calendar["status"], "none");
    assert!(calendar["auth_link"].as_str().unwrap().starts_with("http"));
}
