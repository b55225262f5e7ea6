//! The official `anthropic` Python SDK (2.14.0) runs the guide's flow against an in-process
//! simulator: tests/conformance/guide_flow.py. The venv is created by tests/conformance/setup.sh
//! when missing; this test never skips.

use std::process::Command;

use crate::common::repo_root;
use crate::common::sim::spawn_sim;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_runs_the_guide_flow() {
    let root = repo_root();
    let venv = std::env::var("CONFORMANCE_VENV")
        .map_or_else(|_| root.join("target/conformance-venv"), Into::into);
    let python = venv.join("bin/python");
    if !python.exists() {
        let status = Command::new("bash")
            .arg(root.join("tests/conformance/setup.sh"))
            .status()
            .expect("setup.sh runs");
        assert!(status.success(), "tests/conformance/setup.sh failed");
    }
    let sim = spawn_sim().await;
    let config = sim.config().clone();
    let base = sim.base_url().to_owned();
    let script = root.join("tests/conformance/guide_flow.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("ANTHROPIC_BASE_URL", &base)
            .env("ANTHROPIC_API_KEY", &config.anthropic_api_key)
            .env("SCALEKIT_ENV_URL", &base)
            .env("SCALEKIT_CLIENT_ID", &config.scalekit_client_id)
            .env("SCALEKIT_CLIENT_SECRET", &config.scalekit_client_secret)
            .env_remove("ANTHROPIC_AUTH_TOKEN")
            .output()
            .expect("the conformance script runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "conformance failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("→ gmail_fetch_mails") && stdout.contains("→ googlecalendar_create_event"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Action Required:") && stdout.trim_end().ends_with("CONFORMANCE OK"),
        "{stdout}"
    );
    sim.shutdown().await;
}
