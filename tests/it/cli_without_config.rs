//! Starting without a configuration file: `config init` writes a `jobs.toml` that passes
//! `config check` as written (and a `.env.example` of placeholders), never over a file that
//! exists unless `--force`; and the commands that only read or change the queue work from the
//! environment alone in a directory with no `jobs.toml`. See: issue 25.

use std::path::Path;

use crate::common::{TestRedis, agentcron, text};

/// Runs the binary in `dir` with `env` only (the machine's agentcron variables removed), off
/// the runtime's threads: (exit code, stdout, stderr).
async fn cli(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let dir = dir.to_path_buf();
    let env: Vec<(String, String)> =
        env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let output = agentcron(&args, &env, &dir);
        let (stdout, stderr) = text(&output);
        (output.status.code().unwrap_or(-1), stdout, stderr)
    })
    .await
    .unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn config_init_writes_a_jobs_toml_that_passes_config_check() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("deploy-here");
    let dir_arg = dir.to_str().unwrap();
    let (code, stdout, stderr) = cli(tmp.path(), &[], &["config", "init", "--dir", dir_arg]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let jobs = read(&dir.join("jobs.toml"));
    assert!(jobs.contains("[[schedule]]") && jobs.contains("users = []"), "{jobs}");
    let env_example = read(&dir.join(".env.example"));
    for var in [
        "SCALEKIT_ENV_URL=",
        "SCALEKIT_CLIENT_ID=",
        "SCALEKIT_CLIENT_SECRET=",
        "ANTHROPIC_API_KEY=",
        "REDIS_URL=",
        "AGENTCRON__REDIS__PREFIX=",
    ] {
        assert!(env_example.contains(var), "{var} missing: {env_example}");
    }

    // As written, with no environment at all: valid, and warning-free under --strict.
    let config = dir.join("jobs.toml");
    let args = ["--config", config.to_str().unwrap(), "config", "check", "--strict"];
    let (code, stdout, stderr) = cli(tmp.path(), &[], &args).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("name = \"morning-triage\""), "{stdout}");
    // From its own directory too, where it is the default file.
    let (code, _, stderr) = cli(&dir, &[], &["config", "check"]).await;
    assert_eq!(code, 0, "{stderr}");

    // Never over a file that exists: nothing is written, and the exit code says so.
    std::fs::write(dir.join("jobs.toml"), "# mine\n").unwrap();
    let (code, _, stderr) = cli(tmp.path(), &[], &["config", "init", "--dir", dir_arg]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("already exist") && stderr.contains("--force"), "{stderr}");
    assert_eq!(read(&dir.join("jobs.toml")), "# mine\n");
    let args = ["config", "init", "--dir", dir_arg, "--force"];
    let (code, _, stderr) = cli(tmp.path(), &[], &args).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(read(&dir.join("jobs.toml")), jobs);

    // The default directory is the working one.
    let here = tempfile::tempdir().unwrap();
    let (code, _, stderr) = cli(here.path(), &[], &["config", "init"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(read(&here.path().join("jobs.toml")), jobs);
}

#[tokio::test]
async fn commands_that_need_no_schedule_work_without_a_jobs_toml() {
    let redis = TestRedis::new().await;
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path();
    let env = [
        ("AGENTCRON__REDIS__URL", redis.url.as_str()),
        ("AGENTCRON__REDIS__PREFIX", redis.prefix.as_str()),
    ];
    let ok = |args: &'static [&'static str]| async move {
        let (code, stdout, stderr) = cli(dir, &env, args).await;
        assert_eq!(code, 0, "{args:?}: {stdout}{stderr}");
        stdout
    };
    let enqueued = ok(&["enqueue", "noconf@example.com", "--run-id", "r-noconf", "--json"]).await;
    assert!(enqueued.contains("r-noconf"), "{enqueued}");
    let runs = ok(&["runs", "--json"]).await;
    assert!(runs.contains("r-noconf"), "enqueue then runs sees the run: {runs}");
    ok(&["status"]).await;
    ok(&["status", "--json"]).await;
    let run = ok(&["run", "r-noconf", "--json"]).await;
    assert!(run.contains("noconf@example.com"), "{run}");
    ok(&["transcript", "r-noconf"]).await;
    ok(&["notices", "--all", "--json"]).await;
    ok(&["cancel", "r-noconf"]).await;
    ok(&["requeue", "r-noconf"]).await;
    ok(&["users", "set", "noconf@example.com", "--tz", "Europe/Berlin"]).await;
    let shown = ok(&["users", "show", "noconf@example.com", "--json"]).await;
    assert!(shown.contains("Europe/Berlin"), "{shown}");
    let listed = ok(&["users", "list", "--json"]).await;
    assert!(listed.contains("noconf@example.com"), "{listed}");

    // A run that does not exist: the documented failure, not a configuration error.
    let (code, _, stderr) = cli(dir, &env, &["run", "r-not-there"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no run") && !stderr.contains("jobs.toml"), "{stderr}");

    // A file named by --config or $AGENTCRON_CONFIG must exist, whatever the command.
    let (code, _, stderr) = cli(dir, &env, &["--config", "missing.toml", "status"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("missing.toml"), "{stderr}");
    let named = [env[0], env[1], ("AGENTCRON_CONFIG", "elsewhere.toml")];
    let (code, _, stderr) = cli(dir, &named, &["runs"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("elsewhere.toml"), "{stderr}");

    // The worker needs the file (its agent, tools and schedules), and says how to get one.
    let (code, _, stderr) = cli(dir, &env, &["worker"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("jobs.toml") && stderr.contains("config init"), "{stderr}");
}
