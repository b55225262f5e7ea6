//! What a run produced and used, on its record: the agent's final text, the stop reason, the
//! tool calls, and the model usage summed with a cost estimate, compared with what the
//! simulator's audit says it sent; `agentcron result <id>` prints the text alone.

use std::collections::BTreeMap;

use agentcron::api::anthropic::ModelUsage;
use agentcron::records::Fields;
use agentcron::run::turn::result::price_of;
use agentcron::run::{FailPoint, Finish};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use crate::common::app::{TestApp, cli, spawn_app};

fn count(record: &Fields, field: &str) -> u64 {
    record.get(field).unwrap_or_else(|| panic!("no {field}")).parse().unwrap()
}

/// Checks the record of `run_id` against the simulator's one session of it.
async fn check_against_the_audit(app: &TestApp, run_id: &str) -> Value {
    let sessions = app.sessions_of(run_id).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let session = &sessions[0];
    let record = app.record(run_id).await;
    let sent = &session["usage"];
    assert_eq!(record.get("result_text"), session["final_text"].as_str(), "{record:?}");
    assert_eq!(record.get("result_truncated"), Some("false"));
    assert_eq!(record.get("stop_reason"), Some("end_turn"));
    assert_eq!(record.get("model"), session["model"].as_str());
    for (field, key) in [
        ("model_requests", "model_requests"),
        ("tokens_input", "input_tokens"),
        ("tokens_output", "output_tokens"),
        ("tokens_cache_write", "cache_creation_input_tokens"),
        ("tokens_cache_read", "cache_read_input_tokens"),
    ] {
        assert_eq!(count(&record, field), sent[key].as_u64().unwrap(), "{field}: {record:?}");
    }
    let tools: Value = serde_json::from_str(record.get("tool_calls").unwrap()).unwrap();
    let audited = session["tool_calls"].as_array().unwrap();
    for call in audited {
        let name = call["name"].as_str().unwrap();
        let n = audited.iter().filter(|c| c["name"] == name).count() as u64;
        assert_eq!(tools[name].as_u64(), Some(n), "{tools}");
    }
    assert_eq!(count(&record, "n_tool_calls"), audited.len() as u64);
    // The cost follows the price table.
    let usage = ModelUsage {
        input_tokens: count(&record, "tokens_input"),
        output_tokens: count(&record, "tokens_output"),
        cache_creation_input_tokens: count(&record, "tokens_cache_write"),
        cache_read_input_tokens: count(&record, "tokens_cache_read"),
    };
    let price = price_of(&[], record.get("model").unwrap()).expect("the shipped model is priced");
    let cost: f64 = record.get("cost_usd").unwrap().parse().unwrap();
    assert!((cost - price.cost(&usage)).abs() < 1e-6, "{cost} vs {usage:?}");
    assert!(cost > 0.0);
    sent.clone()
}

/// Before, the result and the usage were only in the transcript, and the simulator reported a
/// constant usage, so a sum could not be told from a copy.
#[tokio::test]
async fn a_runs_result_and_usage_equal_what_the_simulator_sent() {
    let metrics = agentcron::telemetry::metrics::install();
    let app = spawn_app().await;
    let mut sent = Vec::new();
    for (run_id, user) in [("r-res-a", "res-a@example.com"), ("r-res-b", "res-b@example.com")] {
        app.create_run(run_id, user).await;
        let finish = app.execute(run_id).await.unwrap();
        assert!(matches!(finish, Finish::Succeeded { .. }), "{finish:?}");
        sent.push(check_against_the_audit(&app, run_id).await);
    }
    assert_ne!(sent[0], sent[1], "the simulator's usage differs per session");
    let input: u64 = sent.iter().map(|usage| usage["input_tokens"].as_u64().unwrap()).sum();
    assert_eq!(tokens_metric(&metrics.render(), "input"), input);

    // A second attempt of a finished run recomputes the same sums and counts nothing again.
    let record = app.record("r-res-a").await;
    app.execute("r-res-a").await.unwrap();
    assert_eq!(app.record("r-res-a").await.get("tokens_input"), record.get("tokens_input"));
    assert_eq!(tokens_metric(&metrics.render(), "input"), input);
}

/// `agentcron_tokens_total{kind="<kind>",schedule="adhoc"}` in a Prometheus text.
fn tokens_metric(rendered: &str, kind: &str) -> u64 {
    let line = rendered
        .lines()
        .find(|line| {
            line.starts_with("agentcron_tokens_total{")
                && line.contains(&format!("kind=\"{kind}\""))
                && line.contains("schedule=\"adhoc\"")
        })
        .unwrap_or_else(|| panic!("no {kind} tokens in {rendered}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// A crash right after the turn's end was recorded: the resumed attempt records the result,
/// and the usage counts each model request once.
#[tokio::test]
async fn a_resumed_attempt_records_the_usage_once() {
    let app = spawn_app().await;
    app.create_run("r-res-crash", "res-crash@example.com").await;
    let mut crashing = app.ctx.clone();
    crashing.fail_point = Some(FailPoint::TurnEndRecorded);
    app.execute_with(&crashing, "r-res-crash").await.unwrap_err();
    let finish = app.execute("r-res-crash").await.unwrap();
    assert!(matches!(finish, Finish::Succeeded { .. }), "{finish:?}");
    check_against_the_audit(&app, "r-res-crash").await;
}

#[tokio::test]
async fn result_prints_the_text_only() {
    let app = spawn_app().await;
    app.create_run("r-res-cli", "res-cli@example.com").await;
    app.execute("r-res-cli").await.unwrap();
    let text = app.record("r-res-cli").await.get("result_text").unwrap().to_owned();
    assert!(!text.is_empty());
    let (code, stdout, stderr) = cli(&app, &["result", "r-res-cli"]).await;
    assert_eq!((code, stdout), (0, format!("{text}\n")), "{stderr}");

    let (code, stdout, stderr) = cli(&app, &["result", "r-res-cli", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((json["text"].as_str(), json["truncated"].as_bool()), (Some(&*text), Some(false)));

    let (code, stdout, _) = cli(&app, &["run", "r-res-cli"]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("Result\n") && stdout.contains(&text), "{stdout}");
    assert!(stdout.contains("tokens_input"), "{stdout}");

    // A run that has not run has no result: exit 1, with a message and nothing on stdout.
    app.create_run("r-res-none", "res-none@example.com").await;
    let (code, stdout, stderr) = cli(&app, &["result", "r-res-none"]).await;
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert!(stderr.contains("has no result"), "{stderr}");
}

/// Writes a queued run record created at `at`, of `schedule` when given.
async fn create_run_at(app: &TestApp, run_id: &str, user: &str, at: DateTime<Utc>, schedule: &str) {
    let mut conn = app.conn.clone();
    let mut fields = vec![
        ("run_id", run_id.to_owned()),
        ("user", user.to_owned()),
        ("state", "queued".to_owned()),
        ("created_at_ms", at.timestamp_millis().to_string()),
    ];
    if !schedule.is_empty() {
        fields.push(("schedule", schedule.to_owned()));
    }
    let id = crate::common::run_id(run_id);
    agentcron::records::set_run(&mut conn, &app.ctx.keys, &id, None, &fields).await.unwrap();
}

/// `usage` over runs of two users, two schedules and two days adds up to their records.
#[tokio::test]
async fn usage_adds_up_by_user_schedule_and_day() {
    let app = spawn_app().await;
    let today = Utc::now();
    let before = today - TimeDelta::days(2);
    let runs = [
        ("r-use-1", "use-a@example.com", before, "morning"),
        ("r-use-2", "use-a@example.com", today, ""),
        ("r-use-3", "use-b@example.com", today, "morning"),
    ];
    let mut expect: BTreeMap<String, u64> = BTreeMap::new();
    for (run_id, user, at, schedule) in runs {
        create_run_at(&app, run_id, user, at, schedule).await;
        app.execute(run_id).await.unwrap();
        let input = count(&app.record(run_id).await, "tokens_input");
        let schedule = if schedule.is_empty() { "adhoc" } else { schedule };
        for key in [user.to_owned(), schedule.to_owned(), at.format("%Y-%m-%d").to_string()] {
            *expect.entry(key).or_default() += input;
        }
    }
    let usage = |by: &'static str, since: &'static str| {
        let app = &app;
        async move {
            let (code, stdout, stderr) =
                cli(app, &["usage", "--since", since, "--by", by, "--json"]).await;
            assert_eq!(code, 0, "{stderr}");
            let rows: Vec<Value> = serde_json::from_str(&stdout).unwrap();
            rows.iter()
                .map(|row| {
                    (row["key"].as_str().unwrap().to_owned(), row["input"].as_u64().unwrap())
                })
                .collect::<BTreeMap<String, u64>>()
        }
    };
    let users = usage("user", "7d").await;
    assert_eq!(users.len(), 2, "{users:?}");
    for (user, input) in &users {
        assert_eq!(expect[user], *input, "{user}");
    }
    let schedules = usage("schedule", "7d").await;
    assert_eq!(schedules.keys().collect::<Vec<_>>(), ["adhoc", "morning"]);
    for (schedule, input) in &schedules {
        assert_eq!(expect[schedule], *input, "{schedule}");
    }
    let days = usage("day", "7d").await;
    assert_eq!(days.len(), 2, "{days:?}");
    for (day, input) in &days {
        assert_eq!(expect[day], *input, "{day}");
    }
    // Yesterday onwards leaves out the run of two days ago.
    let recent = usage("user", "1d").await;
    assert_eq!(recent["use-a@example.com"], count(&app.record("r-use-2").await, "tokens_input"));

    // A second attempt of a finished run adds nothing to the day.
    app.execute("r-use-3").await.unwrap();
    assert_eq!(usage("user", "7d").await, users);

    let (code, stdout, _) = cli(&app, &["usage", "--by", "user", "--top", "1"]).await;
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().filter(|line| line.contains("@example.com")).count(), 1, "{stdout}");
}
