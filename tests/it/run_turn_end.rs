//! A run is `succeeded` only when the agent really did the work: a `session.error` goes
//! through the outcome table (the MCP server refusing the user's credentials needs the user; an
//! error a fresh session may get past is retried in a new session; others are recorded with
//! their type), and a connection that lapses while a token is minted, at the start or at the
//! mid-session refresh, makes the run `needs_auth` with a notice and a fresh link.

use std::collections::HashMap;
use std::time::Duration;

use agentcron::outcome::ErrorClass;
use agentcron::run::{Finish, RunError};
use serde_json::json;

use crate::common::app::{TestApp, spawn_app, spawn_app_with, tool_uses};
use crate::common::poll::poll_until;
use crate::common::procs::{child_env, spawn_worker, wait_for};

const SEND: &str = "/v1/sessions/*/events";

async fn session_error(app: &TestApp, error_type: &str) {
    let fault = json!({"method": "POST", "path": SEND, "session_error": error_type, "count": 1});
    app.sim_client.add_fault(fault).await;
}

/// The open notices, as `user:connection`.
async fn open_notices(app: &TestApp) -> Vec<String> {
    let mut conn = app.conn.clone();
    redis::cmd("ZRANGE")
        .arg(app.ctx.keys.notice_index())
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap()
}

async fn notice(app: &TestApp, user: &str, connection: &str) -> HashMap<String, String> {
    let mut conn = app.conn.clone();
    let key = app.ctx.keys.notice(&crate::common::user_id(user), connection);
    redis::cmd("HGETALL").arg(key).query_async(&mut conn).await.unwrap()
}

/// Before, the error was logged and the idle after it read as success.
#[tokio::test]
async fn the_mcp_server_refusing_the_users_credentials_needs_auth_with_one_notice() {
    let app = spawn_app().await;
    let user = "refused@example.com";
    session_error(&app, "mcp_authentication_failed_error").await;
    app.create_run("r-refused", user).await;
    let finish = app.execute("r-refused").await.unwrap();
    let server = app.config.anthropic.agent.mcp_server_name.clone();
    assert_eq!(finish, Finish::NeedsAuth { connections: vec![server.clone()] });
    assert_eq!(open_notices(&app).await, [format!("{user}:{server}")]);
    let opened = notice(&app, user, &server).await;
    assert_eq!(opened["connection_status"], "mcp_authentication_failed_error");

    // The next run's turn works: the notice is resolved.
    app.create_run("r-refused-2", user).await;
    let finish = app.execute("r-refused-2").await.unwrap();
    assert!(matches!(finish, Finish::Succeeded { .. }), "{finish:?}");
    assert!(open_notices(&app).await.is_empty());
    assert_eq!(notice(&app, user, &server).await["status"], "resolved");
}

/// When the refusal comes with a connection Scalekit now reports expired, that connection's
/// notice (with its link) is the one opened.
#[tokio::test]
async fn a_refusal_with_an_expired_connection_notices_that_connection() {
    let app = spawn_app().await;
    let user = "refused-expired@example.com";
    let fault = json!({"method": "POST", "path": SEND, "session_error": "mcp_authentication_failed_error",
        "event_delay_ms": 400, "count": 1});
    app.sim_client.add_fault(fault).await;
    app.create_run("r-refused-expired", user).await;
    let run = app.execute("r-refused-expired");
    let expire = async {
        poll_until("the message sent", Duration::from_secs(20), || async {
            !app.sessions_of("r-refused-expired").await.is_empty()
        })
        .await;
        app.sim_client.set_connection(user, "googlecalendar", Some("EXPIRED")).await;
    };
    let (finish, ()) = tokio::join!(run, expire);
    assert_eq!(finish.unwrap(), Finish::NeedsAuth { connections: vec!["googlecalendar".into()] });
    assert_eq!(open_notices(&app).await, [format!("{user}:googlecalendar")]);
    assert!(notice(&app, user, "googlecalendar").await["auth_link"].starts_with("http"));
}

/// An error a fresh session may get past fails the attempt transiently, and the retry works in
/// a new session rather than re-attaching to the failed one (whose history ends in an idle).
#[tokio::test]
async fn a_model_error_is_retried_in_a_fresh_session() {
    let app = spawn_app().await;
    session_error(&app, "model_overloaded_error").await;
    app.create_run("r-overloaded", "overloaded@example.com").await;
    let error = app.execute("r-overloaded").await.unwrap_err();
    assert!(
        matches!(&error, RunError::SessionFailed { error_type, .. } if error_type == "model_overloaded_error"),
        "{error}"
    );
    assert_eq!(error.class(), ErrorClass::Transient);
    let record = app.record("r-overloaded").await;
    let failed = record.get("abandoned_session_id").unwrap().to_owned();
    assert!(record.get("session_id").is_none() && record.get("message_sent_at_ms").is_none());

    let finish = app.execute("r-overloaded").await.unwrap();
    let Finish::Succeeded { session_id } = finish else { panic!("{finish:?}") };
    assert_ne!(session_id.as_str(), failed);
    let sessions = app.sessions_of("r-overloaded").await;
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let old = sessions.iter().find(|s| s["id"] == failed.as_str()).unwrap();
    assert_eq!(old["archived"], true, "the failed session is archived");
    let lines = app.transcript_lines("r-overloaded").await;
    assert_eq!(tool_uses(&lines), ["gmail_fetch_mails", "googlecalendar_create_event"]);
}

/// An error no retry can help fails the run with its type on record.
#[tokio::test]
async fn a_billing_error_fails_with_its_type() {
    let app = spawn_app().await;
    session_error(&app, "billing_error").await;
    app.create_run("r-billing", "billing@example.com").await;
    let error = app.execute("r-billing").await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert!(error.to_string().contains("billing_error"), "{error}");
    let sessions = app.sessions_of("r-billing").await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["tool_calls"], json!([]), "the agent did nothing: {sessions:?}");
}

/// A crash after the idle that follows the error was recorded: the resumed attempt reads the
/// history and fails the same way, rather than taking the idle for the end of a good turn.
#[tokio::test]
async fn a_resumed_attempt_sees_the_recorded_error() {
    use agentcron::run::FailPoint;
    let app = spawn_app().await;
    session_error(&app, "billing_error").await;
    app.create_run("r-billing-crash", "billing-crash@example.com").await;
    let mut crashing = app.ctx.clone();
    crashing.fail_point = Some(FailPoint::TurnEndRecorded);
    let error = app.execute_with(&crashing, "r-billing-crash").await.unwrap_err();
    assert!(matches!(error, RunError::FailPoint(_)), "{error}");
    let error = app.execute("r-billing-crash").await.unwrap_err();
    assert!(error.to_string().contains("billing_error"), "{error}");
}

async fn mints(app: &TestApp) -> u64 {
    let audit = app.audit().await;
    audit["requests"]["POST /api/v1/mcp/configs/{config_id}/tokens"].as_u64().unwrap_or(0)
}

/// The connection is active when checked and expires while the token is being minted: the
/// mint is refused with `FAILED_PRECONDITION`. Before, the run went `dead` with no notice.
#[tokio::test]
async fn a_connection_lapsing_while_the_token_is_minted_needs_auth() {
    let app = spawn_app().await;
    let user = "lapsed@example.com";
    let mint = "/api/v1/mcp/configs/*/tokens";
    app.sim_client.add_fault(json!({"path": mint, "latency_ms": 1500, "count": 1})).await;
    app.create_run("r-lapsed", user).await;
    let run = app.execute("r-lapsed");
    let expire = async {
        poll_until("the mint in flight", Duration::from_secs(20), || async {
            mints(&app).await == 1
        })
        .await;
        app.sim_client.set_connection(user, "gmail", Some("EXPIRED")).await;
    };
    let (finish, ()) = tokio::join!(run, expire);
    assert_eq!(finish.unwrap(), Finish::NeedsAuth { connections: vec!["gmail".into()] });
    assert_eq!(open_notices(&app).await, [format!("{user}:gmail")]);
    let opened = notice(&app, user, "gmail").await;
    assert_eq!(opened["connection_status"], "EXPIRED");
    assert!(opened["auth_link"].starts_with("http"), "{opened:?}");
    assert!(app.sessions_of("r-lapsed").await.is_empty(), "no session without a token");
}

/// The same at the mid-session refresh: the run ends `needs_auth` with one notice, and the
/// session is stopped rather than left working on the user's behalf.
#[tokio::test]
async fn a_connection_lapsing_at_the_mid_session_refresh_needs_auth() {
    let app = spawn_app_with(|config| {
        // Every heartbeat (200 ms) is within the margin: each one refreshes the token.
        config.scalekit.token_expiry = Duration::from_secs(60);
        config.scalekit.token_refresh_margin = Duration::from_secs(59);
    })
    .await;
    let user = "lapsed-mid@example.com";
    let slow = json!({"method": "POST", "path": SEND, "event_delay_ms": 400, "count": 1});
    app.sim_client.add_fault(slow).await;
    app.create_run("r-lapsed-mid", user).await;
    let run = app.execute("r-lapsed-mid");
    let expire = async {
        poll_until("a refresh mid-session", Duration::from_secs(20), || async {
            mints(&app).await >= 2
        })
        .await;
        app.sim_client.set_connection(user, "googlecalendar", Some("EXPIRED")).await;
    };
    let (finish, ()) = tokio::join!(run, expire);
    assert_eq!(finish.unwrap(), Finish::NeedsAuth { connections: vec!["googlecalendar".into()] });
    assert_eq!(open_notices(&app).await, [format!("{user}:googlecalendar")]);
    let sessions = app.sessions_of("r-lapsed-mid").await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["archived"], true, "the session was stopped: {sessions:?}");
}

/// Through a real worker process: the overloaded model's session is given up, the second
/// attempt succeeds in a new one; the billing error's run is `dead` with its type recorded.
#[tokio::test]
async fn a_worker_records_what_the_session_errors_mean() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let env = child_env(&app, dir.path());
    let log = dir.path().join("worker.log");
    let mut worker = spawn_worker(&env, &log);
    for (run_id, error_type, ends) in [
        ("r-w-overloaded", "model_overloaded_error", "succeeded"),
        ("r-w-billing", "billing_error", "dead"),
    ] {
        session_error(&app, error_type).await;
        app.enqueue(&[(run_id, &format!("{run_id}@example.com"))]).await;
        wait_for(&app, run_id, &log, |(state, _)| state.as_deref() == Some(ends)).await;
    }
    worker.kill().unwrap();
    worker.wait().unwrap();

    let overloaded = app.record("r-w-overloaded").await;
    assert_eq!(overloaded.get("attempts"), Some("2"));
    assert_eq!(app.sessions_of("r-w-overloaded").await.len(), 2);
    let billing = app.record("r-w-billing").await;
    assert_eq!(billing.get("error_class"), Some("permanent"));
    assert!(billing.get("last_error").is_some_and(|e| e.contains("billing_error")), "{billing:?}");
    assert_eq!(billing.get("attempts"), Some("1"), "not retried");
}
