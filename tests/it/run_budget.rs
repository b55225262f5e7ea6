//! Token budgets: a user over their daily budget gets `skipped` runs (no session, the attempt
//! refunded, a `skipped` event) and one notice however many runs are skipped; the run that
//! crossed the budget finished and has the overrun on its record; the user's own budget in
//! their profile overrides the default, and a requeued skipped run then succeeds and resolves
//! the notice; a schedule's budget counts all its users; a monthly budget sums the month's days.

use std::time::Duration;

use agentcron::run::Finish;
use chrono::{Datelike, Utc};
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use crate::common::app::{TestApp, cli, spawn_app_with};
use crate::common::{poll_until, run_id};

const USER: &str = "budget@example.com";

/// Waits until `run` is in `state`.
async fn until_state(app: &TestApp, run: &str, state: &str) -> agentcron::records::Fields {
    poll_until(&format!("{run} {state}"), Duration::from_secs(30), || async {
        let record = app.record(run).await;
        if record.get("state") == Some(state) { Ok(record) } else { Err(record) }
    })
    .await
}

fn tokens(record: &agentcron::records::Fields) -> u64 {
    ["tokens_input", "tokens_output", "tokens_cache_write", "tokens_cache_read"]
        .iter()
        .map(|field| record.get(field).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
        .sum()
}

/// The events of `run` on the shard's lifecycle stream, by name.
async fn events_of(app: &TestApp, run: &str) -> Vec<String> {
    let mut conn = app.conn.clone();
    let stream = app.ctx.keys.for_run(&run_id(run)).events();
    let reply: redis::streams::StreamRangeReply = conn.xrange_all(stream).await.unwrap();
    reply
        .ids
        .into_iter()
        .filter(|entry| entry.get::<String>("run_id").as_deref() == Some(run))
        .filter_map(|entry| entry.get::<String>("event"))
        .collect()
}

#[tokio::test]
async fn a_user_over_budget_is_skipped_with_one_notice_and_their_own_budget_lets_the_run_go() {
    let metrics = agentcron::telemetry::metrics::install();
    let app = spawn_app_with(|config| config.budget.daily_tokens = Some(1)).await;
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn({
        let (config, ctx, shutdown) = (app.config.clone(), app.ctx.clone(), shutdown.clone());
        async move { agentcron::worker::run(&config, ctx, shutdown).await }
    });
    // Within the budget when it starts (nothing used today), over it when its turn ends.
    app.enqueue(&[("r-bud-1", USER)]).await;
    let first = until_state(&app, "r-bud-1", "succeeded").await;
    let used = tokens(&first);
    assert!(used > 1, "{first:?}");
    let overrun = format!("user_daily: {used} of 1 tokens used");
    assert_eq!(first.get("budget_overrun"), Some(overrun.as_str()), "{first:?}");

    app.enqueue(&[("r-bud-2", USER), ("r-bud-3", USER)]).await;
    for run in ["r-bud-2", "r-bud-3"] {
        let record = until_state(&app, run, "skipped").await;
        assert_eq!(record.get("skip_reason"), Some("budget"), "{record:?}");
        assert_eq!(record.get("skip_detail"), Some(overrun.as_str()), "{record:?}");
        assert_eq!(record.get("attempts"), Some("0"), "the attempt is refunded: {record:?}");
        assert!(app.sessions_of(run).await.is_empty(), "{run} must not start a session");
        // A start that found the user's lease held (the other run) is deferred without an event
        // of its own, and starts again.
        let mut events = events_of(&app, run).await;
        events.dedup();
        assert_eq!(events, ["created", "started", "skipped"]);
    }
    let mut conn = app.conn.clone();
    let skipped: Vec<String> =
        conn.zrange(app.ctx.keys.runs_by_state("skipped"), 0, -1).await.unwrap();
    assert_eq!(skipped, ["r-bud-2", "r-bud-3"]);

    // One notice, opened once, refreshed by the second skip.
    let user = crate::common::user_id(USER);
    let notice: std::collections::HashMap<String, String> =
        conn.hgetall(app.ctx.keys.notice(&user, "budget")).await.unwrap();
    assert_eq!(notice.get("status").map(String::as_str), Some("open"), "{notice:?}");
    assert_eq!(notice.get("count").map(String::as_str), Some("2"), "{notice:?}");
    let (code, stdout, stderr) = cli(&app, &["notices", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    let notices: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    let budget: Vec<_> = notices.iter().filter(|n| n["connection"] == "budget").collect();
    assert_eq!(budget.len(), 1, "{stdout}");
    // Opened once: the second skip refreshed it.
    let reply: redis::streams::StreamRangeReply =
        conn.xrange_all(app.ctx.keys.notices()).await.unwrap();
    let events: Vec<String> = reply.ids.iter().filter_map(|e| e.get("event")).collect();
    assert_eq!(events.iter().filter(|e| *e == "opened").count(), 1, "{events:?}");
    let rendered = metrics.render();
    let line = "agentcron_runs_skipped_total{reason=\"budget\",limit=\"user_daily\"} 2";
    assert!(rendered.contains(line), "{rendered}");

    // The user's own budget (0: none) overrides the default; the requeued run goes.
    let (code, _, stderr) =
        cli(&app, &["users", "set", USER, "--var", "budget_daily_tokens=0"]).await;
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = cli(&app, &["requeue", "r-bud-3"]).await;
    assert_eq!(code, 0, "{stderr}");
    let third = until_state(&app, "r-bud-3", "succeeded").await;
    assert_eq!(third.get("skip_reason"), None, "{third:?}");
    assert_eq!(third.get("budget_overrun"), None, "{third:?}");
    let status: Option<String> =
        conn.hget(app.ctx.keys.notice(&user, "budget"), "status").await.unwrap();
    assert_eq!(status.as_deref(), Some("resolved"));
    shutdown.cancel();
    worker.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_bad_budget_in_a_profile_is_refused_by_users_set() {
    let app = spawn_app_with(|_| {}).await;
    let (code, _, stderr) =
        cli(&app, &["users", "set", USER, "--var", "budget_daily_tokens=lots"]).await;
    assert_ne!(code, 0);
    assert!(stderr.contains("budget_daily_tokens") && stderr.contains("lots"), "{stderr}");
}

#[tokio::test]
async fn a_schedules_budget_counts_all_its_users_and_a_monthly_one_sums_the_month() {
    let app = spawn_app_with(|config| {
        config.schedules[0].budget_daily_tokens = Some(1);
    })
    .await;
    let schedule = app.config.schedules[0].name.clone();
    let mut conn = app.conn.clone();
    for (run, user) in [("r-bs-1", "bs-a@example.com"), ("r-bs-2", "bs-b@example.com")] {
        app.create_run(run, user).await;
        let () = conn.hset(app.ctx.keys.run(&run_id(run)), "schedule", &schedule).await.unwrap();
    }
    let finish = app.execute("r-bs-1").await.unwrap();
    assert!(matches!(finish, Finish::Succeeded { .. }), "{finish:?}");
    let finish = app.execute("r-bs-2").await.unwrap();
    let Finish::Skipped { reason, detail } = finish else { panic!("{finish:?}") };
    assert_eq!(reason, "budget");
    assert!(detail.starts_with("schedule_daily: "), "{detail}");

    // A monthly budget counts the month's first day too (today, on the 1st).
    let first = Utc::now().date_naive().with_day(1).unwrap().format("%Y-%m-%d").to_string();
    let user = crate::common::user_id("bm@example.com");
    let key = app.ctx.keys.tokens_day(&first);
    let () = conn.hincr(&key, format!("user:{user}:output"), 700).await.unwrap();
    let () = conn.hincr(&key, format!("user:{user}:cache_read"), 300).await.unwrap();
    let () = conn.hset(app.ctx.keys.profile(&user), "budget_monthly_tokens", "1000").await.unwrap();
    app.create_run("r-bm-1", user.as_str()).await;
    let finish = app.execute("r-bm-1").await.unwrap();
    let Finish::Skipped { detail, .. } = finish else { panic!("{finish:?}") };
    assert_eq!(detail, "user_monthly: 1000 of 1000 tokens used");
    let () = conn.hset(app.ctx.keys.profile(&user), "budget_monthly_tokens", "1001").await.unwrap();
    let finish = app.execute("r-bm-1").await.unwrap();
    assert!(matches!(finish, Finish::Succeeded { .. }), "{finish:?}");
}
