//! The dashboard to act from (`ops::http` actions, charts and gauges): the POST actions'
//! guards (token, same origin, POST only) and their effect in Redis; retry now; a notice's auth
//! link; the dead gauge falling after a requeue (it reads the state index, not the capped dead
//! log); the charts' counts against the runs created and a schedule's tick; and the dashboard
//! in headless Chromium, driven over WebDriver with the token typed in: a screenshot per view,
//! requeue, cancel, retry and copy-link clicked, the result checked in Redis.

mod webdriver;

use std::path::PathBuf;
use std::time::Duration;

use agentcron::queue::{NewRun, Queue};
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::{Value, json};

use self::webdriver::Browser;
use crate::common::app::{TestApp, spawn_app};
use crate::common::poll_until;
use crate::ops_http::{Server, client, get, ops_config};
use crate::ops_reports::work;

const TOKEN: &str = "SECRET-ops-dash-token-7f3e";

/// POSTs to `url` with the token and `Origin` given; the status and the JSON body.
async fn post(url: &str, token: Option<&str>, origin: Option<&str>) -> (StatusCode, Value) {
    let mut request = client().post(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body:?}")))
}

/// A run that died: its one session creation is refused (400, permanent).
async fn dead_run(app: &TestApp, id: &str, user: &str) {
    app.sim_client
        .add_fault(json!({"method": "POST", "path": "/v1/sessions", "status": 400, "count": 1}))
        .await;
    work(app, &[(id, user)]).await;
    assert_eq!(app.record(id).await.get("state"), Some("dead"));
}

async fn state_of(app: &TestApp, id: &str) -> String {
    app.record(id).await.get("state").unwrap_or("missing").to_owned()
}

#[tokio::test]
async fn actions_take_post_with_the_token_from_no_foreign_origin_and_change_the_run() {
    let app = spawn_app().await;
    dead_run(&app, "r-act-dead", "dora@example.com").await;
    let mut config = ops_config(&app);
    config.ops.token = Some(TOKEN.to_owned().into());
    let server = Server::start(config).await;
    let url = format!("{}/api/runs/r-act-dead/requeue", server.base);

    for wrong in [None, Some("SECRET-ops-dash-token-7f3f"), Some("short")] {
        let (status, body) = post(&url, wrong, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong:?}: {body}");
    }
    // Another site's page (a form or a fetch) sends its own Origin.
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1", "https://localhost"] {
        let (status, body) = post(&url, Some(TOKEN), Some(origin)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}: {body}");
        assert!(body["error"].as_str().unwrap().contains("cross-origin"), "{body}");
    }
    let (status, body) = get(&url, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(state_of(&app, "r-act-dead").await, "dead", "no refused request acted");

    // The dashboard's own page: the Origin is this server.
    let (status, body) = post(&url, Some(TOKEN), Some(&server.base)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"run_id": "r-act-dead", "found": "dead", "applied": true}));
    assert_eq!(state_of(&app, "r-act-dead").await, "queued");
    // Not twice: a queued run is not requeued.
    let (status, body) = post(&url, Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["found"], "queued");

    let cancel = format!("{}/api/runs/r-act-dead/cancel", server.base);
    let (status, body) = post(&cancel, Some(TOKEN), None).await;
    assert_eq!((status, &body["found"]), (StatusCode::OK, &json!("queued")), "{body}");
    assert_eq!(state_of(&app, "r-act-dead").await, "cancelled");

    let missing = format!("{}/api/runs/r-no-such-run/requeue", server.base);
    assert_eq!(post(&missing, Some(TOKEN), None).await.0, StatusCode::NOT_FOUND);
    server.stop().await;
}

/// Puts a queued run where `finish.lua` leaves a failed attempt: state `failed`, due in an
/// hour in the delayed set, in the `failed` index.
async fn make_failed(app: &TestApp, id: &str) {
    let run_id = crate::common::run_id(id);
    let keys = app.config.redis.keys();
    let keys = keys.for_run(&run_id);
    let mut conn = app.conn.clone();
    let created: i64 = conn.hget(keys.run(&run_id), "created_at_ms").await.unwrap();
    let due = agentcron::records::now_ms() + 3_600_000;
    let mut pipe = redis::pipe();
    pipe.lrem(keys.ready(), 0, id).ignore();
    pipe.hset(keys.run(&run_id), "state", "failed").ignore();
    pipe.hset(keys.run(&run_id), "next_attempt_at_ms", due).ignore();
    pipe.zadd(keys.delayed(), id, due).ignore();
    pipe.zrem(keys.runs_by_state("queued"), id).ignore();
    pipe.zadd(keys.runs_by_state("failed"), id, created).ignore();
    let () = pipe.query_async(&mut conn).await.unwrap();
}

#[tokio::test]
async fn retry_now_makes_a_waiting_failed_run_due_and_a_notice_gives_its_link() {
    let app = spawn_app().await;
    app.sim_client.set_connection("carol@example.com", "googlecalendar", Some("EXPIRED")).await;
    work(&app, &[("r-act-carol", "carol@example.com")]).await;
    app.enqueue(&[("r-act-retry", "rita@example.com")]).await;
    make_failed(&app, "r-act-retry").await;
    let server = Server::start(ops_config(&app)).await;

    let url = format!("{}/api/runs/r-act-retry/retry", server.base);
    let (status, body) = post(&url, None, Some(&server.base)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"run_id": "r-act-retry", "found": "failed", "applied": true}));
    let run_id = crate::common::run_id("r-act-retry");
    let keys = app.config.redis.keys();
    let keys = keys.for_run(&run_id);
    let mut conn = app.conn.clone();
    let delayed: Option<f64> = conn.zscore(keys.delayed(), "r-act-retry").await.unwrap();
    assert_eq!(delayed, None, "no longer waiting");
    let ready: Vec<String> = conn.lrange(keys.ready(), 0, -1).await.unwrap();
    assert!(ready.contains(&"r-act-retry".to_owned()), "due now: {ready:?}");
    let (status, body) = post(&url, None, None).await;
    assert_eq!((status, &body["found"]), (StatusCode::CONFLICT, &json!("due")), "{body}");
    // A succeeded or needs_auth run has nothing to retry.
    let other = format!("{}/api/runs/r-act-carol/retry", server.base);
    assert_eq!(post(&other, None, None).await.0, StatusCode::CONFLICT);

    let link = format!("{}/api/notices/carol@example.com/googlecalendar/link", server.base);
    let (status, body) = post(&link, None, Some(&server.base)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["auth_link"].as_str().unwrap().starts_with("http"), "{body}");
    assert_eq!(body["user"], "carol@example.com");
    let (status, _) = post(&link, None, Some("http://evil.example")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(get(&link, None).await.0, StatusCode::METHOD_NOT_ALLOWED);
    let none = format!("{}/api/notices/nobody@example.com/gmail/link", server.base);
    assert_eq!(post(&none, None, None).await.0, StatusCode::NOT_FOUND);
    server.stop().await;
}

/// `agentcron_queue_depth{state="<state>"}` as scraped now.
async fn depth_gauge(server: &Server, state: &str) -> f64 {
    let (status, text) = get(&format!("{}/metrics", server.base), None).await;
    assert_eq!(status, StatusCode::OK);
    let prefix = format!("agentcron_queue_depth{{state=\"{state}\"}} ");
    let line = text.lines().find(|line| line.starts_with(&prefix));
    line.and_then(|line| line[prefix.len()..].trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix}: {text}"))
}

#[tokio::test]
async fn the_dead_gauge_falls_after_a_requeue() {
    let app = spawn_app().await;
    dead_run(&app, "r-gauge-dead", "gina@example.com").await;
    let server = Server::start(ops_config(&app)).await;
    assert_eq!(depth_gauge(&server, "dead").await, 1.0);
    assert_eq!(depth_gauge(&server, "queued").await, 0.0);
    assert_eq!(depth_gauge(&server, "needs_auth").await, 0.0);

    let url = format!("{}/api/runs/r-gauge-dead/requeue", server.base);
    assert_eq!(post(&url, None, None).await.0, StatusCode::OK);
    // See: issue 27 ("the dead count never drops after a requeue": the gauge read the capped
    // dead log, which keeps the entry).
    assert_eq!(depth_gauge(&server, "dead").await, 0.0, "the dead gauge falls");
    assert_eq!(depth_gauge(&server, "queued").await, 1.0);
    server.stop().await;
}

#[tokio::test]
async fn the_charts_count_the_runs_created_per_hour_and_state() {
    let app = spawn_app().await;
    let queue = Queue::connect(&app.config.redis).await.unwrap();
    let ids = ["r-chart-1", "r-chart-2", "r-chart-3"];
    let runs: Vec<NewRun> = ids
        .iter()
        .map(|id| NewRun {
            run_id: crate::common::run_id(id),
            ..NewRun::now(crate::common::user_id("charlie@example.com"))
        })
        .collect();
    queue.enqueue(&runs, "test").await.unwrap();
    queue.cancel(&crate::common::run_id("r-chart-3")).await.unwrap();
    // Older runs, as the index holds them: scored by creation time.
    let now = agentcron::records::now_ms();
    let old = [("r-chart-old-5h", now - 5 * 3_600_000), ("r-chart-old-3d", now - 3 * 86_400_000)];
    let keys = app.config.redis.keys();
    let mut conn = app.conn.clone();
    for (id, at) in old {
        let index = keys.for_run(&crate::common::run_id(id)).runs_by_state("dead");
        let () = conn.zadd(index, id, at).await.unwrap();
    }
    let server = Server::start(ops_config(&app)).await;

    let charts: Value = poll_until("a depth sample", Duration::from_secs(10), || async {
        let (status, body) = get(&format!("{}/api/charts", server.base), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let charts: Value = serde_json::from_str(&body).unwrap();
        if charts["depth"].as_array().is_some_and(|d| !d.is_empty()) {
            Ok(charts)
        } else {
            Err(body)
        }
    })
    .await;
    let series = |window: &str, state: &str| -> Vec<u64> {
        let values =
            charts[window]["series"][state].as_array().unwrap_or_else(|| panic!("{charts}"));
        values.iter().map(|n| n.as_u64().unwrap()).collect()
    };
    let bucket = |window: &str, at: i64| -> usize {
        let start = charts[window]["start_ms"].as_i64().unwrap();
        usize::try_from((at - start) / 3_600_000).unwrap()
    };
    for (window, n_hours) in [("hours_24", 24), ("days_7", 168)] {
        let (queued, cancelled) = (series(window, "queued"), series(window, "cancelled"));
        assert_eq!(queued.len(), n_hours);
        assert_eq!(queued.iter().sum::<u64>(), 2, "{window}: {queued:?}");
        assert_eq!(queued[bucket(window, now)], 2, "{window}: this hour");
        assert_eq!(cancelled.iter().sum::<u64>(), 1, "{window}");
        assert_eq!(series(window, "succeeded").iter().sum::<u64>(), 0, "{window}");
        let dead = series(window, "dead");
        assert_eq!(dead[bucket(window, old[0].1)], 1, "{window}: {dead:?}");
    }
    let dead_24h = series("hours_24", "dead");
    assert_eq!(dead_24h.iter().sum::<u64>(), 1, "three days ago is outside 24 h");
    let dead_7d = series("days_7", "dead");
    assert_eq!((dead_7d.iter().sum::<u64>(), dead_7d[bucket("days_7", old[1].1)]), (2, 1));
    // The depth the sampler saw at start: two runs ready, none in flight.
    let sample = &charts["depth"][0];
    assert_eq!((sample["pending"].as_u64(), sample["running"].as_u64()), (Some(2), Some(0)));
    server.stop().await;
}

#[tokio::test]
async fn the_charts_show_a_schedules_tick_with_its_users_and_outcomes() {
    let redis = crate::common::TestRedis::new().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.toml");
    let schedule = "name = \"triage\"\ncron = \"0 8 * * *\"\nusers = [\"a@x\", \"b@x\", \"c@x\"]\n";
    std::fs::write(&path, format!("[[schedule]]\n{schedule}")).unwrap();
    let env = crate::schedule_fan_out::env_for(&redis);
    let mut config =
        agentcron::config::load(&path, &agentcron::config::Env::from_pairs(env)).unwrap();
    config.ops.bind = Some("127.0.0.1:0".parse().unwrap());
    let queue = Queue::connect(&config.redis).await.unwrap();
    let tick = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    agentcron::schedule::fan_out(&queue, &config.schedules[0], tick).await.unwrap();
    // Two of the tick's runs ended: one succeeded, one needs the user's authorization.
    let mut conn = queue.connection();
    for (user, state) in [("a@x", "succeeded"), ("b@x", "needs_auth")] {
        let id = agentcron::ids::RunId::scheduled("triage", user, tick.timestamp()).unwrap();
        let () = conn.hset(queue.keys().run(&id), "state", state).await.unwrap();
    }
    let server = Server::start(config).await;

    let ticks: Value = poll_until("the tick sampled", Duration::from_secs(10), || async {
        let (status, body) = get(&format!("{}/api/charts", server.base), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let charts: Value = serde_json::from_str(&body).unwrap();
        let ticks = charts["ticks"]["triage"].clone();
        if ticks.as_array().is_some_and(|t| !t.is_empty()) { Ok(ticks) } else { Err(body) }
    })
    .await;
    assert_eq!(ticks.as_array().unwrap().len(), 1, "{ticks}");
    let last = &ticks[0];
    assert_eq!(last["at"], tick.to_rfc3339(), "{ticks}");
    let counts = ["users", "enqueued", "succeeded", "needs_auth"].map(|k| last[k].as_u64());
    assert_eq!(counts, [Some(3), Some(3), Some(1), Some(1)], "{ticks}");
    assert_eq!(last["states"]["queued"], 1, "{ticks}");
    server.stop().await;
}

/// Where the screenshots go: `<target>/test-artefacts/`, created if missing.
fn artefacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| crate::common::repo_root().join("target"), PathBuf::from);
    let dir = target.join("test-artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until `run_id`'s state is `want` (what a click asked for).
async fn state_becomes(app: &TestApp, run_id: &str, want: &str) {
    poll_until(&format!("{run_id} {want} in Redis"), Duration::from_secs(20), || async {
        let state = state_of(app, run_id).await;
        if state == want { Ok(()) } else { Err(state) }
    })
    .await;
}

#[tokio::test]
async fn the_dashboard_acts_in_chromium_and_every_view_is_screenshotted() {
    let app = spawn_app().await;
    dead_run(&app, "r-click-dead", "dave@example.com").await;
    app.sim_client.set_connection("carol@example.com", "googlecalendar", Some("EXPIRED")).await;
    work(&app, &[("r-click-carol", "carol@example.com"), ("r-click-ok", "olga@example.com")]).await;
    app.enqueue(&[("r-click-failed", "fred@example.com")]).await;
    make_failed(&app, "r-click-failed").await;
    let mut config = ops_config(&app);
    config.ops.token = Some(TOKEN.to_owned().into());
    let server = Server::start(config).await;
    let profile = tempfile::tempdir().unwrap();
    let browser = Browser::start(profile.path()).await;
    let dir = artefacts();

    // With a token set, the server shows its sign-in page; the session cookie it sets is
    // beyond the page's script, and every request then carries it.
    browser.goto(&format!("{}/?view=runs", server.base)).await;
    browser.type_into("#token", TOKEN).await;
    browser.screenshot(&dir.join("dashboard-signin.png")).await;
    browser.click("#login button[type=\"submit\"]").await;
    // Signed in, back at the URL asked for.
    browser.find("#view-runs").await;
    assert_eq!(browser.script("return location.search").await, "?view=runs");
    assert_eq!(browser.script("return document.cookie").await, "");
    // The runs list: the dead run's requeue button, clicked.
    browser.find("#runs tr[data-run=\"r-click-ok\"]").await;
    // Human times, the exact time on hover.
    let created = browser.text("#runs tr[data-run=\"r-click-ok\"] time").await;
    assert!(created.ends_with("ago") || created == "just now", "{created}");
    let exact = browser.attribute("#runs tr[data-run=\"r-click-ok\"] time", "title").await;
    assert!(chrono::DateTime::parse_from_rfc3339(&exact).is_ok(), "{exact}");
    browser.screenshot(&dir.join("dashboard-runs.png")).await;
    browser.click("#runs button[data-action=\"requeue\"][data-run=\"r-click-dead\"]").await;
    state_becomes(&app, "r-click-dead", "queued").await;

    // The run page: cancel, clicked.
    browser.goto(&format!("{}/?run=r-click-dead", server.base)).await;
    browser.find("#detail-actions button[data-action=\"cancel\"]").await;
    browser.screenshot(&dir.join("dashboard-run.png")).await;
    browser.click("#detail-actions button[data-action=\"cancel\"]").await;
    state_becomes(&app, "r-click-dead", "cancelled").await;

    // A failed run waiting for its retry: retry now, clicked on its page.
    browser.goto(&format!("{}/?run=r-click-failed", server.base)).await;
    browser.click("#detail-actions button[data-action=\"retry\"]").await;
    poll_until("the clicked retry in Redis", Duration::from_secs(20), || async {
        let run_id = crate::common::run_id("r-click-failed");
        let delayed = app.config.redis.keys().for_run(&run_id).delayed();
        let score: Option<f64> = app.conn.clone().zscore(delayed, "r-click-failed").await.unwrap();
        if score.is_none() { Ok(()) } else { Err(score) }
    })
    .await;
    let flash = browser.text("#flash").await;
    assert!(flash.starts_with("retry: r-click-failed was failed"), "{flash}");

    // The notices: a table with a link to open and one to copy.
    browser.goto(&format!("{}/?view=notices", server.base)).await;
    browser.find("#notices a[rel=\"noopener noreferrer\"][href^=\"http\"]").await;
    browser.screenshot(&dir.join("dashboard-notices.png")).await;
    browser.click("#notices button.act-link").await;
    poll_until("the copied link's message", Duration::from_secs(20), || async {
        let flash = browser.text("#flash").await;
        if flash.starts_with("Auth link for carol@example.com / googlecalendar") {
            Ok(())
        } else {
            Err(flash)
        }
    })
    .await;

    browser.goto(&format!("{}/", server.base)).await;
    browser.find("#status .card").await;
    browser.screenshot(&dir.join("dashboard-overview.png")).await;
    browser.goto(&format!("{}/?view=charts", server.base)).await;
    browser.find("#chart-24h svg rect").await;
    browser.screenshot(&dir.join("dashboard-charts.png")).await;
    // Signing out ends the session: the sign-in page again, at any URL.
    browser.click("#signout button").await;
    browser.find("#login input[name=\"token\"]").await;
    browser.goto(&format!("{}/?view=runs", server.base)).await;
    browser.find("#login input[name=\"token\"]").await;
    browser.stop().await;
    for view in ["signin", "runs", "run", "notices", "overview", "charts"] {
        let png = dir.join(format!("dashboard-{view}.png"));
        assert!(std::fs::metadata(&png).unwrap().len() > 1000, "{}", png.display());
    }
    server.stop().await;
}
