//! Anthropic's rate limits and a 429's `retry-after`, through the real run pipeline against the
//! simulator: every request a run makes takes a turn in its documented class (retries too),
//! the defaults are the vendor's documented limits, an override paces a run, and a 429's
//! `retry-after` is waited out before the next try of the call and before the run's next
//! attempt. Delays are checked as lower bounds only (the simulator's request times, or the
//! test's own clock), never as upper bounds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentcron::api::pace::{Pacer, RateClass, Turn};
use agentcron::queue::{NewRun, Queue};
use agentcron::run::Finish;
use agentcron::worker;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::app::{TestApp, spawn_app, spawn_app_with};
use crate::common::poll_until;

/// Counts the turns taken per class and never waits.
#[derive(Debug, Default)]
struct Counting(Mutex<BTreeMap<&'static str, u64>>);

impl Pacer for Counting {
    fn turn(&self, class: RateClass) -> Turn<'_> {
        *self.0.lock().unwrap().entry(class.as_str()).or_default() += 1;
        Box::pin(async { Ok(()) })
    }
}

/// Anthropic requests per route (`POST /v1/sessions`, …) the simulator saw.
async fn anthropic_requests(app: &TestApp) -> BTreeMap<String, u64> {
    let audit = app.audit().await;
    audit["requests"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(route, _)| {
            route.split_once(' ').is_some_and(|(_, path)| path.starts_with("/v1/"))
        })
        .map(|(route, n)| (route.clone(), n.as_u64().unwrap()))
        .collect()
}

/// Milliseconds between the first and the last call of the route whose name ends with
/// `suffix` and starts with `method`, from the simulator's request times (arrival).
async fn first_to_last_ms(app: &TestApp, method: &str, suffix: &str) -> i64 {
    let audit = app.audit().await;
    let times = audit["request_times"].as_object().expect("the audit has request times");
    let (route, times) = times
        .iter()
        .find(|(route, _)| route.starts_with(&format!("{method} ")) && route.ends_with(suffix))
        .unwrap_or_else(|| panic!("no {method} …{suffix} in {}", audit["request_times"]));
    let at = |key: &str| {
        let text = times[key].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_millis()
    };
    let gap = at("last") - at("first");
    assert!(gap >= 0, "{route}: {times}");
    gap
}

/// Every Anthropic request of a run, a retried one included, takes a turn in its class:
/// creates (vault, credential, session) in `creates`, the rest in `requests`; none is an
/// environment call.
#[tokio::test]
async fn every_anthropic_request_of_a_run_takes_a_turn_in_its_class() {
    let app = spawn_app().await;
    let counting = Arc::new(Counting::default());
    let mut ctx = app.ctx.clone();
    ctx.anthropic = ctx.anthropic.clone().with_pacer(counting.clone());
    // One retried request: a 503 on the stream's opening.
    let stream =
        json!({"method": "GET", "path": "/v1/sessions/*/events/stream", "status": 503, "count": 1});
    app.sim_client.add_fault(stream).await;
    let before = anthropic_requests(&app).await;
    app.create_run("r-counted", "counted@example.com").await;
    let finish = app.execute_with(&ctx, "r-counted").await.unwrap();
    assert!(matches!(finish, Finish::Succeeded { .. }), "{finish:?}");

    let after = anthropic_requests(&app).await;
    let made: BTreeMap<&String, u64> = after
        .iter()
        .map(|(route, n)| (route, n - before.get(route).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let creates: u64 = made
        .iter()
        .filter(|(route, _)| {
            ["POST /v1/sessions", "POST /v1/vaults", "POST /v1/vaults/{vault_id}/credentials"]
                .contains(&route.as_str())
        })
        .map(|(_, n)| n)
        .sum();
    let total: u64 = made.values().sum();
    let taken = counting.0.lock().unwrap().clone();
    assert_eq!(creates, 3, "a vault, a credential and a session: {made:?}");
    assert_eq!(
        taken,
        BTreeMap::from([("creates", creates), ("requests", total - creates)]),
        "turns taken against requests made: {made:?}"
    );
}

/// Without any `[limits]` setting, a run takes from the buckets of Anthropic's documented
/// limits, shared in Redis by every worker of the prefix. Before, there was no default limit.
#[tokio::test]
async fn the_vendors_limits_are_in_effect_by_default() {
    let app = spawn_app().await;
    let limits = &app.config.limits;
    assert_eq!(
        (limits.creates_per_minute, limits.requests_per_minute, limits.environments_per_minute),
        (Some(300.0), Some(600.0), Some(60.0))
    );
    app.create_run("r-default", "default@example.com").await;
    let finish = app.execute("r-default").await.unwrap();
    assert!(matches!(finish, Finish::Succeeded { .. }), "{finish:?}");
    for (name, exists) in [("creates", true), ("requests", true), ("environments", false)] {
        let bucket = app.ctx.keys.ratelimit(name);
        let found: bool =
            redis::cmd("EXISTS").arg(&bucket).query_async(&mut app.conn.clone()).await.unwrap();
        assert_eq!(found, exists, "bucket {bucket}");
    }
}

/// `limits.creates_per_minute = 60` (one a second, a burst of one) paces a user's first run:
/// its three creates (vault, credential, session) take at least two seconds.
#[tokio::test]
async fn a_lower_creates_limit_paces_the_creates_of_a_run() {
    let app = spawn_app_with(|config| config.limits.creates_per_minute = Some(60.0)).await;
    app.create_run("r-paced", "paced@example.com").await;
    let started = Instant::now();
    let finish = app.execute("r-paced").await.unwrap();
    let elapsed = started.elapsed();
    assert!(matches!(finish, Finish::Succeeded { .. }), "{finish:?}");
    assert!(elapsed >= Duration::from_millis(1_950), "three creates at 1/s took {elapsed:?}");
}

/// A 429 on the session create (a single attempt, looked up before the next) is waited out:
/// the next create arrives no sooner than its `retry-after`.
#[tokio::test]
async fn a_429s_retry_after_is_waited_before_the_next_create() {
    let app = spawn_app().await;
    let fault = json!({"method": "POST", "path": "/v1/sessions", "status": 429, "retry_after": 2, "count": 1});
    app.sim_client.add_fault(fault).await;
    app.create_run("r-429", "429@example.com").await;
    let finish = app.execute("r-429").await.unwrap();
    assert!(matches!(finish, Finish::Succeeded { .. }), "{finish:?}");
    let gap = first_to_last_ms(&app, "POST", "/v1/sessions").await;
    assert!(gap >= 1_999, "the create was tried again after {gap} ms");
    assert_eq!(app.sessions_of("r-429").await.len(), 1);
}

/// A 429 on opening the event stream (a call retried in the client's loop) is waited out too.
#[tokio::test]
async fn a_429s_retry_after_is_waited_before_the_next_try_of_a_call() {
    let app = spawn_app().await;
    let stream = "/v1/sessions/*/events/stream";
    let fault =
        json!({"method": "GET", "path": stream, "status": 429, "retry_after": 2, "count": 1});
    app.sim_client.add_fault(fault).await;
    app.create_run("r-429-stream", "429-stream@example.com").await;
    let finish = app.execute("r-429-stream").await.unwrap();
    assert!(matches!(finish, Finish::Succeeded { .. }), "{finish:?}");
    let gap = first_to_last_ms(&app, "GET", "/events/stream").await;
    assert!(gap >= 1_999, "the stream was opened again after {gap} ms");
}

/// When the call gives up on a 429 (one attempt per call here), the run's next attempt waits
/// for the `retry-after`, not the much shorter backoff.
#[tokio::test]
async fn a_run_failed_by_a_429_is_retried_no_sooner_than_its_retry_after() {
    let app = spawn_app_with(|config| config.retry.max_attempts = 1).await;
    let fault = json!({"method": "POST", "path": "/v1/sessions", "status": 429, "retry_after": 2, "count": 1});
    app.sim_client.add_fault(fault).await;
    let queue = Queue::connect(&app.config.redis).await.unwrap();
    let run = NewRun {
        run_id: crate::common::run_id("r-429-run"),
        ..NewRun::now(crate::common::user_id("429-run@example.com"))
    };
    queue.enqueue(&[run], "test").await.unwrap();
    let shutdown = CancellationToken::new();
    let (config, ctx, token) = (app.config.clone(), app.ctx.clone(), shutdown.clone());
    let running = tokio::spawn(async move { worker::run(&config, ctx, token).await });
    let record = poll_until("r-429-run succeeded", Duration::from_secs(30), || async {
        let record = app.record("r-429-run").await;
        if record.get("state") == Some("succeeded") { Ok(record) } else { Err(record) }
    })
    .await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), running).await.unwrap().unwrap().unwrap();
    assert_eq!(record.get("attempts"), Some("2"), "{record:?}");
    let gap = first_to_last_ms(&app, "POST", "/v1/sessions").await;
    assert!(gap >= 1_999, "the run's next attempt created its session after {gap} ms");
    let audit: Value = app.audit().await;
    assert_eq!(audit["requests"]["POST /v1/sessions"], 2, "{}", audit["requests"]);
}

/// A 429 holds the whole fleet back, not only the request that got it: the client drains its
/// class's shared bucket for the `retry-after`, so another worker (here a limiter on its own
/// connection) would wait before its next create instead of drawing a 429 of its own.
#[tokio::test]
async fn a_429_holds_every_worker_of_the_fleet_back() {
    let app = spawn_app().await;
    let fault = json!({"method": "POST", "path": "/v1/sessions", "status": 429, "retry_after": 3, "count": 1});
    app.sim_client.add_fault(fault).await;
    app.create_run("r-429-fleet", "429-fleet@example.com").await;
    let queue = Queue::connect(&app.config.redis).await.unwrap();
    let other = agentcron::ratelimit::RateLimiter::new(queue.connection(), queue.keys().clone());
    let per_second = app.config.limits.creates_per_minute.unwrap() / 60.0;
    let held = async {
        poll_until("the fleet's create bucket drained", Duration::from_secs(10), || async {
            let wait = other.wait_now("creates", per_second).await.unwrap();
            (wait >= Duration::from_secs(1)).then_some(wait)
        })
        .await
    };
    let (finish, wait) = tokio::join!(app.execute("r-429-fleet"), held);
    assert!(matches!(finish.unwrap(), Finish::Succeeded { .. }));
    println!("another worker's next create would wait {wait:?}");
    assert_eq!(app.sessions_of("r-429-fleet").await.len(), 1);
}
