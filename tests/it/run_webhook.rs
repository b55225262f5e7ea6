//! The run webhook: a local receiver verifies each message's Standard Webhooks signature with
//! the secret, a tampered body fails verification, retries after two 500s carry the same
//! message id, and the delivery's state is on the run record; an endpoint that never answers
//! 2xx is recorded as failed after `webhook.max_attempts`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::common::TestRedis;
use crate::common::poll_until;
use crate::common::worker::{TestHandler, config, enqueue_n, record, spawn};

/// What the receiver saw: each request's id, timestamp, signature and body.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// How the test receiver answers its requests.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// 500 to the first this many, then 200.
    FailFirst(usize),
    /// Never to the first (the delivery is under way when its worker dies), 200 to the others.
    HoldFirst,
}

/// A receiver that answers 500 to its first `n_failures` requests, then 200.
async fn receiver(n_failures: usize) -> (String, Log) {
    receiver_answering(Answer::FailFirst(n_failures)).await
}

/// A receiver that never answers its first request and answers 200 to the others.
async fn holding_receiver() -> (String, Log) {
    receiver_answering(Answer::HoldFirst).await
}

/// A receiver that records every request and answers as `answer` says.
async fn receiver_answering(answer: Answer) -> (String, Log) {
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let seen = Arc::clone(&seen);
            async move {
                let header = |name: &str| {
                    headers.get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
                };
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(Seen {
                        id: header("webhook-id"),
                        timestamp: header("webhook-timestamp"),
                        signature: header("webhook-signature"),
                        body: body.to_vec(),
                    });
                    seen.len()
                };
                match answer {
                    Answer::FailFirst(n_failures) if n <= n_failures => {
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR
                    }
                    Answer::HoldFirst if n == 1 => std::future::pending().await,
                    _ => axum::http::StatusCode::OK,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), log)
}

/// The receiver's check, written from the spec rather than from agentcron's code: the key is
/// the base64 after `whsec_`, the signed content `{id}.{timestamp}.{body}`.
fn verifies(secret: &str, seen: &Seen, body: &[u8]) -> bool {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let mut signed = format!("{}.{}.", seen.id, seen.timestamp).into_bytes();
    signed.extend_from_slice(body);
    let expect = STANDARD.encode(ring::hmac::sign(&key, &signed).as_ref());
    seen.signature.split(' ').any(|candidate| candidate == format!("v1,{expect}"))
}

const SECRET: &str = "whsec_c2VjcmV0LWZvci10aGUtcnVuLXdlYmhvb2s=";

#[tokio::test]
async fn a_run_webhook_is_signed_retried_after_two_500s_and_recorded_as_delivered() {
    let redis = TestRedis::new().await;
    let (url, log) = receiver(2).await;
    let mut config = config(&redis);
    config.webhook.url = Some(url.parse().unwrap());
    config.webhook.secret = Some(secrecy::SecretString::from(SECRET));
    let worker = spawn(&config, TestHandler::succeeding());
    let ids = enqueue_n(&config, "hooked", 1).await;
    let done = poll_until("the webhook delivered", Duration::from_secs(20), || async {
        let record = record(&redis, &ids[0]).await;
        if record.get("webhook_succeeded").is_some_and(|state| state == "delivered") {
            Ok(record)
        } else {
            Err(record)
        }
    })
    .await;
    worker.stop().await;
    assert_eq!(done["webhook_succeeded_attempts"], "3", "{done:?}");

    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "two 500s, then the delivery: {seen:?}");
    assert!(seen.iter().all(|request| request.id == seen[0].id), "one message id across retries");
    assert!(seen[0].id.starts_with("msg_"));
    for request in &seen {
        assert!(verifies(SECRET, request, &request.body), "{request:?}");
        request.timestamp.parse::<i64>().unwrap();
    }
    let mut tampered = seen[2].body.clone();
    tampered[0] = b' ';
    assert!(!verifies(SECRET, &seen[2], &tampered), "a tampered body fails verification");

    let body: serde_json::Value = serde_json::from_slice(&seen[2].body).unwrap();
    assert_eq!(body["type"], "run.succeeded");
    assert_eq!(body["data"]["run_id"], ids[0].as_str());
    assert_eq!(body["data"]["state"], "succeeded");
    assert_eq!(body["data"]["attempts"], "1");
    let text = String::from_utf8(seen[2].body.clone()).unwrap();
    assert!(!text.contains("prompt") && !text.contains("session"), "public fields only: {text}");
}

#[tokio::test]
async fn a_webhook_that_never_accepts_is_recorded_as_failed_after_its_attempts() {
    let redis = TestRedis::new().await;
    let (url, log) = receiver(usize::MAX).await;
    let mut config = config(&redis);
    config.webhook.url = Some(url.parse().unwrap());
    config.webhook.max_attempts = 2;
    let worker = spawn(&config, TestHandler::succeeding());
    let ids = enqueue_n(&config, "unhooked", 1).await;
    let done = poll_until("the webhook failed", Duration::from_secs(20), || async {
        let record = record(&redis, &ids[0]).await;
        if record.get("webhook_succeeded").is_some_and(|state| state == "failed") {
            Ok(record)
        } else {
            Err(record)
        }
    })
    .await;
    worker.stop().await;
    assert_eq!(done["webhook_succeeded_attempts"], "2", "{done:?}");
    assert_eq!(log.lock().unwrap().len(), 2);
    // Without a secret the message is not signed.
    assert!(log.lock().unwrap().iter().all(|request| request.signature.is_empty()));
}

/// Before, a worker that died mid-delivery left the message `pending` for ever. Now it is in
/// the outbox from the moment the state was recorded, and another worker takes it over once
/// its claim runs out, with the same message id.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_whose_worker_died_mid_delivery_is_delivered_by_another_with_the_same_id() {
    let redis = TestRedis::new().await;
    let (url, log) = holding_receiver().await;
    let mut config = config(&redis);
    config.webhook.url = Some(url.parse().unwrap());
    config.webhook.max_attempts = 1;
    // The claim is the longest a delivery may take: 2 s + 100 ms + the margin.
    config.http.request_timeout = Duration::from_secs(2);
    config.retry.max_elapsed = Duration::from_millis(100);
    // The first worker runs on its own runtime; shutting that down drops every task of it at
    // once, mid-delivery, as a kill -9 would (no drain, no record of how the delivery ended).
    let doomed =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    doomed.spawn({
        let (config, shutdown) = (config.clone(), tokio_util::sync::CancellationToken::new());
        async move { agentcron::worker::run(&config, TestHandler::succeeding(), shutdown).await }
    });
    let ids = enqueue_n(&config, "orphaned", 1).await;
    poll_until("the first delivery under way", Duration::from_secs(20), || async {
        if log.lock().unwrap().is_empty() { Err(()) } else { Ok(()) }
    })
    .await;
    doomed.shutdown_background();
    let orphaned = record(&redis, &ids[0]).await;
    assert_eq!(orphaned["webhook_succeeded"], "pending", "{orphaned:?}");

    let worker = spawn(&config, TestHandler::succeeding());
    let done = poll_until("the message delivered again", Duration::from_secs(30), || async {
        let record = record(&redis, &ids[0]).await;
        if record.get("webhook_succeeded").is_some_and(|state| state == "delivered") {
            Ok(record)
        } else {
            Err(record)
        }
    })
    .await;
    worker.stop().await;
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].id, seen[0].id, "the same message id");
    assert_eq!(done["webhook_succeeded_id"], seen[0].id);
    let mut conn = redis.conn.clone();
    let left: usize =
        redis::AsyncCommands::zcard(&mut conn, format!("{}:webhooks:outbox", redis.prefix))
            .await
            .unwrap();
    assert_eq!(left, 0, "the delivered message left the outbox");
}
