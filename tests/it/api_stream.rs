//! The event stream's own client ([`agentcron::api::stream`]) against the simulator over real
//! HTTP, and over real TLS through a front that terminates it: the same events as the
//! session's history, error statuses classified and retried like any call, a server that never
//! answers timed out, an untrusted certificate refused, and reqwest still used behind a proxy.

use std::sync::Arc;
use std::time::Duration;

use agentcron::api::anthropic::{self, OutgoingEvent};
use agentcron::api::stream::{Direct, Streams};
use agentcron::outcome::ErrorClass;
use futures::StreamExt;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::api_clients::{Fixture, KEY, http, http_config, policy, session_for};

/// The stream's route as the simulator's audit counts it, and as its faults match it.
const STREAM_ROUTE: &str = "GET /v1/sessions/{session_id}/events/stream";
const STREAM_PATH: &str = "/v1/sessions/*/events/stream";

/// Sends one message and reads `client`'s stream to the turn's end; returns the event ids.
async fn one_turn(
    client: &anthropic::Client,
    sender: &anthropic::Client,
    session: &str,
) -> Vec<String> {
    let mut stream = Box::pin(client.stream_events(session).await.unwrap());
    sender.send_events(session, &[OutgoingEvent::user_text("Go.")]).await.unwrap();
    let mut ids = Vec::new();
    while let Some(event) = stream.next().await {
        let event = event.unwrap();
        ids.extend(event.id().map(str::to_owned));
        if event.is_turn_end() {
            return ids;
        }
    }
    panic!("the stream ended before the turn did: {ids:?}");
}

async fn history(client: &anthropic::Client, session: &str) -> Vec<String> {
    let events = client.list_all_events(session).await.unwrap();
    events.iter().filter_map(|e| e.id().map(str::to_owned)).collect()
}

/// A TLS front for `upstream` with a fresh self-signed certificate for `localhost`; returns its
/// `https` base URL and a client configuration that trusts that certificate.
async fn tls_front(upstream: String) -> (url::Url, Arc<ClientConfig>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], PrivateKeyDer::Pkcs8(key))
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut plain = TcpStream::connect(upstream).await.unwrap();
                let _copied = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (format!("https://localhost:{port}").parse().unwrap(), Arc::new(client))
}

fn client_at(base: &url::Url, streams: Streams) -> anthropic::Client {
    client_with(base, KEY, 1, streams)
}

fn client_with(base: &url::Url, key: &str, attempts: u32, streams: Streams) -> anthropic::Client {
    let config = http_config(Duration::from_secs(10));
    let http = http(Duration::from_secs(10));
    anthropic::Client::new(http, base, &key.into(), policy(attempts), &config).with_streams(streams)
}

/// The direct client, whatever proxy variables the environment running the tests has.
fn direct() -> Streams {
    Streams::Direct(Direct::new(&http_config(Duration::from_secs(10))))
}

#[tokio::test]
async fn a_stream_over_tls_delivers_the_whole_turn() {
    let fx = Fixture::start().await;
    let (plain, session) = session_for(&fx, "tls@example.com").await;
    let upstream = fx.base().socket_addrs(|| None).unwrap()[0].to_string();
    let (base, trusting) = tls_front(upstream).await;
    let direct = Direct::new(&http_config(Duration::from_secs(10))).with_tls(trusting);
    let over_tls = client_at(&base, Streams::Direct(direct));

    let ids = one_turn(&over_tls, &plain, &session).await;
    assert!(ids.len() > 5, "{ids:?}");
    assert_eq!(ids, history(&plain, &session).await, "every event once, in order");
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_without_the_key_in_the_error() {
    let fx = Fixture::start().await;
    let (_, session) = session_for(&fx, "untrusted@example.com").await;
    let upstream = fx.base().socket_addrs(|| None).unwrap()[0].to_string();
    let (base, _) = tls_front(upstream).await;
    // The platform's roots, as in production: they do not know the test's certificate.
    let client = client_at(&base, direct());
    let Err(error) = client.stream_events(&session).await else {
        panic!("a self-signed certificate was accepted")
    };
    let shown = format!("{error} {error:?}");
    assert!(
        shown.contains("sessions.events.stream: transport error: invalid peer certificate"),
        "{shown}"
    );
    assert!(!shown.contains(KEY), "{shown}");
    assert_eq!(fx.requests(STREAM_ROUTE).await, 0, "no request got through");
}

#[tokio::test]
async fn error_statuses_on_open_are_classified_and_retried() {
    let fx = Fixture::start().await;
    let (client, session) = session_for(&fx, "status@example.com").await;
    fx.fault(json!({"method": "GET", "path": STREAM_PATH, "status": 529, "count": 2})).await;
    let direct_client = client_with(&fx.base(), KEY, 3, direct());
    let ids = one_turn(&direct_client, &client, &session).await;
    assert!(!ids.is_empty());
    assert_eq!(fx.requests(STREAM_ROUTE).await, 3, "two overloaded answers, then the stream");

    let wrong = client_with(&fx.base(), "SECRET-wrong-key", 3, direct());
    let Err(error) = wrong.stream_events(&session).await else { panic!("a wrong key streamed") };
    assert_eq!((error.status(), error.class()), (Some(401), ErrorClass::Auth), "{error}");
    assert!(!format!("{error} {error:?}").contains("SECRET"), "{error:?}");
    assert_eq!(fx.requests(STREAM_ROUTE).await, 4, "an auth failure is not retried");
}

#[tokio::test]
async fn a_stream_that_never_answers_times_out_as_transient() {
    let fx = Fixture::start().await;
    let (_, session) = session_for(&fx, "hang@example.com").await;
    fx.fault(json!({"method": "GET", "path": STREAM_PATH, "hang": true, "count": 1})).await;
    let mut config = http_config(Duration::from_secs(10));
    config.stream_idle_timeout = Duration::from_millis(500);
    let client = client_at(&fx.base(), Streams::Direct(Direct::new(&config)));
    // The test's own bound: a lost head timeout fails here instead of hanging.
    let opened = tokio::time::timeout(Duration::from_secs(10), client.stream_events(&session));
    let Err(error) = opened.await.expect("the head timeout ended the open") else {
        panic!("a hung open streamed")
    };
    assert_eq!(error.class(), ErrorClass::Transient, "{error}");
    assert!(error.to_string().contains("timed out"), "{error}");
}

#[tokio::test]
async fn through_reqwest_the_stream_is_the_same() {
    let fx = Fixture::start().await;
    let (plain, session) = session_for(&fx, "reqwest@example.com").await;
    let through_reqwest = client_at(&fx.base(), Streams::Reqwest);
    let ids = one_turn(&through_reqwest, &plain, &session).await;
    assert_eq!(ids, history(&plain, &session).await);
}
