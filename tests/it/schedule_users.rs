//! Per-user scheduling: each user's own zone (`timezone = "user"`) across daylight-saving
//! changes, pauses, skip dates, prompt templates with profile values, profiles written with
//! redis-cli that cannot be used, and runs that carry their scheduler's instructions to a
//! worker whose configuration says otherwise. Against a real Redis; the fan-out is called at
//! chosen instants (the scheduler's clock, settable in tests only), the binary for the CLI.

use std::collections::BTreeSet;

use agentcron::config::ScheduleConfig;
use agentcron::ids::RunId;
use agentcron::schedule::{self, TickReport};
use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde_json::Value;

use crate::common::{TestRedis, app};
use crate::common::{agentcron, text};
use crate::schedule_fan_out::{Fixture, env_for, fixture};

const NY: &str = "ny@example.com";
const BERLIN: &str = "berlin@example.com";
const KOLKATA: &str = "kolkata@example.com";

const PER_USER: &str = r#"
name = "triage"
cron = "0 8 * * *"
timezone = "user"
users = ["ny@example.com", "berlin@example.com", "kolkata@example.com"]
prompt = "Triage {name|your}'s inbox at {local_time} for {user}"
overlap = "queue"
"#;

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

/// The environment of the binary for `redis`, as strings.
fn env(redis: &TestRedis) -> Vec<(String, String)> {
    env_for(redis).into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Runs the binary with a `jobs.toml` holding `schedule_toml`; exit code, stdout, stderr.
fn cli(redis: &TestRedis, schedule_toml: &str, args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jobs.toml"), format!("[[schedule]]\n{schedule_toml}")).unwrap();
    let env = env(redis);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let output = agentcron(args, &env, dir.path());
    let (stdout, stderr) = text(&output);
    (output.status.code().unwrap_or(-1), stdout, stderr)
}

fn cli_ok(redis: &TestRedis, schedule_toml: &str, args: &[&str]) -> String {
    let (code, stdout, stderr) = cli(redis, schedule_toml, args);
    assert_eq!(code, 0, "{args:?}: {stdout} {stderr}");
    stdout
}

/// The three users in their zones, set through the CLI.
fn set_zones(redis: &TestRedis) {
    for (user, zone) in
        [(NY, "America/New_York"), (BERLIN, "Europe/Berlin"), (KOLKATA, "Asia/Kolkata")]
    {
        cli_ok(redis, PER_USER, &["users", "set", user, "--tz", zone]);
    }
}

fn preview(redis: &TestRedis, from: &str, count: &str) -> Vec<Value> {
    let out = cli_ok(
        redis,
        PER_USER,
        &["schedules", "preview", "triage", "--from", from, "--count", count, "--json"],
    );
    serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().clone()
}

fn locals_of(fires: &[Value], user: &str) -> Vec<String> {
    fires
        .iter()
        .filter(|f| f["user"] == user)
        .map(|f| f["local"].as_str().unwrap().to_owned())
        .collect()
}

async fn fan_out_at(fixture: &Fixture, at: DateTime<Utc>) -> TickReport {
    schedule::fan_out(&fixture.queue, &fixture.schedule, at).await.unwrap()
}

async fn record(
    fixture: &Fixture,
    user: &str,
    at: DateTime<Utc>,
) -> std::collections::HashMap<String, String> {
    let id = RunId::scheduled(&fixture.schedule.name, user, at.timestamp()).unwrap();
    let mut conn = fixture.redis.conn.clone();
    conn.hgetall(fixture.queue.keys().run(&id)).await.unwrap()
}

#[tokio::test]
async fn preview_gives_eight_local_in_each_users_zone_across_dst_changes() {
    let redis = TestRedis::new().await;
    set_zones(&redis);
    let fires = preview(&redis, "2027-03-13T00:00:00Z", "3");
    assert_eq!(fires.len(), 9, "{fires:?}");
    // The US changes on 14 March 2027: 08:00 stays 08:00, the offset moves.
    assert_eq!(
        locals_of(&fires, NY),
        ["2027-03-13T08:00:00-05:00", "2027-03-14T08:00:00-04:00", "2027-03-15T08:00:00-04:00"]
    );
    assert_eq!(
        locals_of(&fires, BERLIN),
        ["2027-03-13T08:00:00+01:00", "2027-03-14T08:00:00+01:00", "2027-03-15T08:00:00+01:00"]
    );
    assert_eq!(
        locals_of(&fires, KOLKATA),
        ["2027-03-13T08:00:00+05:30", "2027-03-14T08:00:00+05:30", "2027-03-15T08:00:00+05:30"]
    );
    let ny_utc: Vec<&str> =
        fires.iter().filter(|f| f["user"] == NY).map(|f| f["utc"].as_str().unwrap()).collect();
    assert_eq!(
        ny_utc,
        ["2027-03-13T13:00:00+00:00", "2027-03-14T12:00:00+00:00", "2027-03-15T12:00:00+00:00"]
    );
    // The EU changes on 28 March 2027.
    let fires = preview(&redis, "2027-03-27T00:00:00Z", "3");
    assert_eq!(
        locals_of(&fires, BERLIN),
        ["2027-03-27T08:00:00+01:00", "2027-03-28T08:00:00+02:00", "2027-03-29T08:00:00+02:00"]
    );
    assert!(fires.iter().all(|f| f["local"].as_str().unwrap().contains("T08:00:00")), "{fires:?}");
}

#[tokio::test]
async fn each_user_is_enqueued_once_at_eight_local_with_a_rendered_prompt() {
    let fixture = fixture(PER_USER).await;
    set_zones(&fixture.redis);
    let from = time("2027-03-13T00:00:00Z");
    let fires = preview(&fixture.redis, "2027-03-13T00:00:00Z", "3");
    let due: BTreeSet<DateTime<Utc>> =
        fires.iter().map(|f| time(f["utc"].as_str().unwrap())).collect();
    // The daemon's wake-ups cover every user's fire time, and fire nothing else for them.
    let ticks: Vec<DateTime<Utc>> = schedule::next_ticks(&fixture.schedule, from, 300)
        .into_iter()
        .take_while(|tick| *tick <= time("2027-03-15T13:00:00Z"))
        .collect();
    assert!(due.iter().all(|fire| ticks.contains(fire)), "{due:?} not all in {ticks:?}");
    let mut created = 0;
    for tick in &ticks {
        let report = fan_out_at(&fixture, *tick).await;
        let expected = usize::from(due.contains(tick));
        assert_eq!((report.users, report.enqueued), (expected, expected), "{tick}: {report:?}");
        created += report.enqueued;
        // A second scheduler at the same tick creates nothing.
        assert_eq!(fan_out_at(&fixture, *tick).await.enqueued, 0, "{tick}");
    }
    assert_eq!(created, 9);
    let at = time("2027-03-14T12:00:00Z");
    let run = record(&fixture, NY, at).await;
    assert_eq!(run["timezone"], "America/New_York");
    assert_eq!(run["local_time"], "2027-03-14T08:00:00-04:00");
    assert_eq!(run["rendered"], "1");
    assert_eq!(
        run["prompt"],
        "Triage your's inbox at Sunday 14 March 2027, 08:00 EDT for ny@example.com"
    );
    assert_eq!(run["schedule"], "triage");
}

#[tokio::test]
async fn a_paused_user_is_skipped_and_resumes_and_skip_dates_hold_in_the_users_zone() {
    let toml = format!("{PER_USER}skip_dates = [\"2027-03-15\"]\n");
    let fixture = fixture(&toml).await;
    set_zones(&fixture.redis);
    let kolkata_13 = time("2027-03-13T02:30:00Z");
    cli_ok(&fixture.redis, &toml, &["users", "set", KOLKATA, "--pause", "2027-03-14T00:00:00Z"]);
    let report = fan_out_at(&fixture, kolkata_13).await;
    assert_eq!((report.users, report.paused, report.enqueued), (1, 1, 0), "{report:?}");
    assert!(record(&fixture, KOLKATA, kolkata_13).await.is_empty());
    // The pause ended: the next day fires.
    let report = fan_out_at(&fixture, time("2027-03-14T02:30:00Z")).await;
    assert_eq!((report.paused, report.enqueued), (0, 1), "{report:?}");
    // Paused until --resume, then resumed.
    cli_ok(&fixture.redis, &toml, &["users", "set", NY, "--pause"]);
    let ny_14 = time("2027-03-14T12:00:00Z");
    assert_eq!(fan_out_at(&fixture, ny_14).await.paused, 1);
    let shown = cli_ok(&fixture.redis, &toml, &["users", "show", NY, "--json"]);
    assert!(shown.contains("\"forever\""), "{shown}");
    cli_ok(&fixture.redis, &toml, &["users", "set", NY, "--resume"]);
    let ny_16 = time("2027-03-16T12:00:00Z");
    assert_eq!(fan_out_at(&fixture, ny_16).await.enqueued, 1);
    // 15 March is a skip date, in each user's zone.
    let report = fan_out_at(&fixture, time("2027-03-15T02:30:00Z")).await;
    assert_eq!((report.skip_dates, report.enqueued), (1, 0), "{report:?}");
    let schedules = cli_ok(&fixture.redis, &toml, &["schedules", "--json"]);
    let schedules: Value = serde_json::from_str(&schedules).unwrap();
    assert_eq!(schedules[0]["timezone"], "user (default UTC)", "{schedules}");
    // `status` shows the scheduler's own next tick: with per-user zones, the first zone's.
    let before = schedule::next_tick(&fixture.schedule, Utc::now()).unwrap();
    let status = cli_ok(&fixture.redis, &toml, &["status", "--json"]);
    let after = schedule::next_tick(&fixture.schedule, Utc::now()).unwrap();
    let status: Value = serde_json::from_str(&status).unwrap();
    let shown = time(status["next_ticks"][0]["utc"].as_str().unwrap());
    assert!(shown == before || shown == after, "{shown} is neither {before} nor {after}");
}

#[tokio::test]
async fn profile_values_written_with_redis_cli_are_checked_when_read() {
    let fixture = fixture(PER_USER).await;
    set_zones(&fixture.redis);
    let mut conn = fixture.redis.conn.clone();
    let berlin = agentcron::ids::UserId::parse(BERLIN).unwrap();
    let key = fixture.queue.keys().profile(&berlin);
    let () = conn.hset(&key, "timezone", "Mars/Olympus_Mons").await.unwrap();
    // Berlin's 08:00 on the 13th: the user cannot be placed, so is not fired at any time.
    let report = fan_out_at(&fixture, time("2027-03-13T07:00:00Z")).await;
    assert_eq!((report.bad_profile, report.enqueued), (1, 0), "{report:?}");
    let report = fan_out_at(&fixture, time("2027-03-13T08:00:00Z")).await;
    assert_eq!((report.bad_profile, report.enqueued), (1, 0), "{report:?}");
    let schedules = cli_ok(&fixture.redis, PER_USER, &["schedules", "--json"]);
    let schedules: Value = serde_json::from_str(&schedules).unwrap();
    assert_eq!(schedules[0]["last_tick"]["bad_profile"], 1, "{schedules}");
    let shown = cli_ok(&fixture.redis, PER_USER, &["users", "show", BERLIN, "--json"]);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown[0]["problems"][0]["field"], "timezone", "{shown}");
    assert!(shown[0]["problems"][0]["reason"].as_str().unwrap().contains("Mars/Olympus_Mons"));
    let (code, _, stderr) = cli(
        &fixture.redis,
        PER_USER,
        &["schedules", "preview", "triage", "--user", BERLIN, "--json"],
    );
    assert_eq!(code, 0);
    assert!(stderr.contains("berlin@example.com is left out: timezone"), "{stderr}");
    // The CLI refuses what redis-cli could write, and changes nothing.
    for (args, reason) in [
        (vec!["--tz", "Mars/Olympus_Mons"], "unknown time zone"),
        (vec!["--pause", "next tuesday"], "--pause"),
        (vec!["--var", "no-dashes=x"], "not a template value's name"),
        (vec!["--var", "timezone=UTC"], "--tz"),
    ] {
        let mut all = vec!["users", "set", NY];
        all.extend(args.iter().copied());
        let (code, _, stderr) = cli(&fixture.redis, PER_USER, &all);
        assert_eq!(code, 2, "{all:?}: {stderr}");
        assert!(stderr.contains(reason), "{all:?}: {stderr}");
    }
    let shown = cli_ok(&fixture.redis, PER_USER, &["users", "show", NY, "--json"]);
    assert!(shown.contains("America/New_York"), "{shown}");
}

#[tokio::test]
async fn the_schedulers_prompt_and_profile_values_reach_the_agent_and_a_missing_value_fails_the_run()
 {
    let app = app::spawn_app().await;
    // The worker's configuration has its own `morning-triage` prompt; the scheduler's says
    // something else, and only the run record carries it.
    let scheduler: ScheduleConfig = ScheduleConfig {
        prompt: "SCHEDULER: triage for {name} in {language|English}".to_owned(),
        users: vec![
            agentcron::ids::UserId::parse("alice@example.com").unwrap(),
            agentcron::ids::UserId::parse("bob@example.com").unwrap(),
        ],
        ..app.config.schedules[0].clone()
    };
    assert_ne!(app.config.schedules[0].prompt, scheduler.prompt);
    let queue = agentcron::queue::Queue::connect(&app.config.redis).await.unwrap();
    let alice = agentcron::ids::UserId::parse("alice@example.com").unwrap();
    let () = app.conn.clone().hset(app.ctx.keys.profile(&alice), "name", "Alice").await.unwrap();
    let tick = time("2027-03-15T12:00:00Z");
    let report = schedule::fan_out(&queue, &scheduler, tick).await.unwrap();
    assert_eq!(report.enqueued, 2, "{report:?}");
    let alice_run =
        RunId::scheduled(&scheduler.name, "alice@example.com", tick.timestamp()).unwrap();
    app.execute(alice_run.as_str()).await.unwrap();
    assert_eq!(
        sent_messages(&app, alice_run.as_str()).await,
        ["SCHEDULER: triage for Alice in English"]
    );
    // Bob has no `name` and the template no default: the run fails before any session.
    let bob_run = RunId::scheduled(&scheduler.name, "bob@example.com", tick.timestamp()).unwrap();
    let record = app.record(bob_run.as_str()).await;
    assert_eq!(record.get("rendered"), None, "kept as a template: {record:?}");
    let error = app.execute(bob_run.as_str()).await.unwrap_err();
    assert!(error.to_string().starts_with("missing_value:name"), "{error}");
    assert!(app.sessions_of(bob_run.as_str()).await.is_empty());
}

/// The text of every `user.message` of `run_id`'s sessions.
async fn sent_messages(app: &app::TestApp, run_id: &str) -> Vec<String> {
    let mut sent = Vec::new();
    for session in app.sessions_of(run_id).await {
        let events =
            app.ctx.anthropic.list_all_events(session["id"].as_str().unwrap()).await.unwrap();
        sent.extend(
            events
                .iter()
                .filter(|e| e.raw["type"] == "user.message")
                .map(|e| e.raw["content"][0]["text"].as_str().unwrap_or_default().to_owned()),
        );
    }
    sent
}

#[tokio::test]
async fn a_run_enqueued_by_hand_renders_its_template_from_the_profile_when_it_starts() {
    let app = app::spawn_app().await;
    let user = agentcron::ids::UserId::parse("alice@example.com").unwrap();
    let () = app.conn.clone().hset(app.ctx.keys.profile(&user), "name", "Zed").await.unwrap();
    let run = agentcron::queue::NewRun {
        prompt: Some("Hello {name|friend}, {{literally}} {user}; {\"json\": 1}".to_owned()),
        ..agentcron::queue::NewRun::now(user)
    };
    let queue = agentcron::queue::Queue::connect(&app.config.redis).await.unwrap();
    queue.enqueue(std::slice::from_ref(&run), "test").await.unwrap();
    app.execute(run.run_id.as_str()).await.unwrap();
    assert_eq!(
        sent_messages(&app, run.run_id.as_str()).await,
        ["Hello Zed, {literally} alice@example.com; {\"json\": 1}"]
    );
}

#[tokio::test]
async fn config_check_names_listed_users_that_lack_a_templates_value() {
    let redis = TestRedis::new().await;
    let toml = r#"
name = "greet"
cron = "0 8 * * *"
users = ["ann@example.com", "ben@example.com"]
prompt = "Hello {name}, in {language|English}"
"#;
    cli_ok(&redis, toml, &["users", "set", "ann@example.com", "--var", "name=Ann"]);
    let (code, _, stderr) = cli(&redis, toml, &["config", "check", "--redis", "--strict"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("user ben@example.com has no value \"name\""), "{stderr}");
    assert!(!stderr.contains("user ann@example.com"), "{stderr}");
    cli_ok(&redis, toml, &["users", "set", "ben@example.com", "--var", "name=Ben"]);
    let (code, _, stderr) = cli(&redis, toml, &["config", "check", "--redis", "--strict"]);
    assert_eq!(code, 0, "{stderr}");
}
