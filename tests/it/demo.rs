//! `agentcron demo` end to end, as a user runs it: the real binary, the in-process simulator,
//! a real Redis (the shared one, or a private `redis-server` the demo starts itself), and the
//! three outcomes in its output. See: issue 10.

use std::net::TcpListener;
use std::path::Path;

use crate::common::{agentcron, repo_root, text};

/// The shared test Redis, as `REDIS_URL` for the demo.
fn redis_url() -> String {
    std::env::var("AGENTCRON_TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
}

/// The part of the output about `user`: after its header line, up to the next header or the
/// notices.
fn section<'a>(stdout: &'a str, user: &str) -> &'a str {
    let header = format!("━━ {user} ");
    let start = stdout.find(&header).unwrap_or_else(|| panic!("no section for {user}:\n{stdout}"));
    let body = &stdout[start..];
    let body = &body[body.find('\n').map_or(body.len(), |i| i + 1)..];
    let end = ["━━ ", "\nOpen notices"].iter().filter_map(|mark| body.find(mark)).min();
    &body[..end.unwrap_or(body.len())]
}

/// Asserts the three outcomes of a successful demo.
fn assert_three_outcomes(stdout: &str) {
    for user in ["alice@example.com", "bob@example.com"] {
        let part = section(stdout, user);
        assert!(part.contains("→ gmail_fetch_mails"), "{user}:\n{part}");
        assert!(part.contains("→ googlecalendar_create_event"), "{user}:\n{part}");
        assert!(part.contains("outcome: succeeded"), "{user}:\n{part}");
    }
    let carol = section(stdout, "carol@example.com");
    assert!(carol.contains("outcome: needs_auth"), "carol:\n{carol}");
    assert!(
        stdout.contains("carol@example.com · googlecalendar is EXPIRED · auth link: http://"),
        "{stdout}"
    );
    assert!(stdout.contains("Runs by state"), "no status screen:\n{stdout}");
    assert!(stdout.contains("Demo OK"), "{stdout}");
}

fn run_demo(redis: &str, extra: &[(&str, &str)], dir: &Path) -> (Option<i32>, String, String) {
    // The demo keeps its jobs.toml and transcripts for the user to read; a test's go in a
    // directory of its own that is removed when the test ends.
    let tmp = tempfile::tempdir().unwrap();
    let tmp_path = tmp.path().to_str().unwrap().to_owned();
    let mut env = vec![("REDIS_URL", redis), ("NO_COLOR", "1"), ("TMPDIR", tmp_path.as_str())];
    env.extend_from_slice(extra);
    let output = agentcron(&["demo"], &env, dir);
    let (stdout, stderr) = text(&output);
    (output.status.code(), stdout, stderr)
}

#[test]
fn demo_runs_three_users_to_their_outcomes() {
    let (code, stdout, stderr) = run_demo(&redis_url(), &[], &repo_root());
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_three_outcomes(&stdout);
    assert!(stdout.contains("(it answers; the demo uses its own key prefix)"), "{stdout}");
}

#[test]
fn demo_starts_a_private_redis_when_none_answers() {
    // A port that was free a moment ago: nothing answers there.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let closed = format!("redis://127.0.0.1:{port}");
    // Outside the repository, so the demo falls back to its built-in jobs.toml.
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run_demo(&closed, &[], dir.path());
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("starting a private redis-server"), "{stdout}");
    assert_three_outcomes(&stdout);
    let private = stdout
        .lines()
        .find_map(|line| line.strip_prefix("Redis      redis://127.0.0.1:")?.split(' ').next())
        .and_then(|port| port.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no private Redis port in:\n{stdout}"));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", private)).is_err(),
        "the private redis-server on port {private} outlived the demo"
    );
}

#[test]
fn demo_explains_how_to_install_a_missing_redis_server() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let closed = format!("redis://127.0.0.1:{port}");
    let empty = tempfile::tempdir().unwrap();
    let path = empty.path().to_str().unwrap();
    let (code, _, stderr) = run_demo(&closed, &[("PATH", path)], &repo_root());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("redis-server not found"), "{stderr}");
    assert!(stderr.contains("sudo apt-get install redis-server"), "{stderr}");
    assert!(stderr.contains("brew install redis"), "{stderr}");
}
