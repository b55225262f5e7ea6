//! The event stream's own HTTP/1.1 client: one `GET` per stream on its own connection, read
//! straight into the SSE parser.
//!
//! Every session holds its event stream for its whole turn, so a worker at 10,000 sessions
//! holds 10,000 connections. Through reqwest each costs about 27 KB that no option sizes:
//! hyper's dispatch channel (9.6 KB), 8 KB write and read buffers and a connection task,
//! measured with heaptrack; at 10,000 sessions that was three quarters of the worker. Here a
//! connection is its socket, its TLS session for `https`, and a read buffer that starts at
//! 1 KB and grows only for a larger event.
//!
//! It speaks exactly what the stream needs: one `GET` with `Connection: close`, a response head
//! parsed by `httparse`, and a body that is chunked, sized, or ends with the connection. No
//! redirects, compression, pooling or proxies: when the environment sends the URL through a
//! proxy (the variables reqwest honours), [`Streams::for_url`] picks reqwest instead. This
//! module must not parse SSE or know what a session is.

mod response;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper_util::client::proxy::matcher::Matcher;
use reqwest::header::{HeaderName, HeaderValue};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;
use url::{Host, Url};

pub(crate) use self::response::Response;
use self::response::{Body, Framing, Head, read_head, timed_out};
use crate::config::HttpConfig;

/// The TLS side is boxed: inline it would make every plain connection as large as a TLS
/// session's state (1.1 KB).
type Io = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// How event streams reach the API.
#[derive(Clone, Debug)]
pub enum Streams {
    /// This module's client, straight to the host.
    Direct(Direct),
    /// Through the shared reqwest client, which applies the environment's proxy.
    Reqwest,
}

impl Streams {
    /// [`Streams::Reqwest`] when `proxies` sends `url` through a proxy, else a direct client.
    pub fn for_url(url: &Url, proxies: &Matcher, config: &HttpConfig) -> Self {
        // A parsed `Url` is always a valid `Uri`; the check only keeps this free of panics.
        let proxied =
            url.as_str().parse::<http::Uri>().is_ok_and(|uri| proxies.intercept(&uri).is_some());
        if !proxied {
            return Self::Direct(Direct::new(config));
        }
        tracing::info!(
            message = "A proxy applies to the API; event streams go through reqwest, which \
                       costs about 27 KB more per streaming session.",
            host = url.host_str().unwrap_or_default(),
        );
        Self::Reqwest
    }
}

/// The direct client: timeouts and, for `https`, the TLS configuration.
#[derive(Clone)]
pub struct Direct {
    connect_timeout: Duration,
    head_timeout: Duration,
    tls: Option<Arc<ClientConfig>>,
}

impl fmt::Debug for Direct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Direct")
            .field("connect_timeout", &self.connect_timeout)
            .field("head_timeout", &self.head_timeout)
            .field("custom_tls", &self.tls.is_some())
            .finish()
    }
}

impl Direct {
    /// Connects within `connect_timeout` (TLS handshake included) and waits for the response
    /// head up to `stream_idle_timeout`; `https` is verified against the platform's roots, as
    /// reqwest does.
    pub fn new(config: &HttpConfig) -> Self {
        Self {
            connect_timeout: config.connect_timeout,
            head_timeout: config.stream_idle_timeout,
            tls: None,
        }
    }

    /// The same client with its own TLS configuration, such as one trusting a private CA.
    /// Its ALPN list is replaced by `http/1.1`, the only protocol this client speaks.
    #[must_use]
    pub fn with_tls(self, tls: Arc<ClientConfig>) -> Self {
        let mut tls = Arc::unwrap_or_clone(tls);
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self { tls: Some(Arc::new(tls)), ..self }
    }

    /// Sends `GET url` with `headers` and reads the response head. An error for which
    /// [`is_unusable`] holds means the request cannot be made as given; every other is the
    /// transport's.
    pub(crate) async fn get(&self, url: &Url, headers: &[(&str, &str)]) -> io::Result<Response> {
        let request = request(url, headers)?;
        let mut io = self.connect(url).await?;
        let head = async {
            io.write_all(&request).await?;
            io.flush().await?;
            read_head(&mut io).await
        };
        let (head, buf) =
            timeout(self.head_timeout, head).await.map_err(|_| timed_out("no response head"))??;
        let framing = Framing::of(&head)?;
        let Head { status, headers, .. } = head;
        Ok(Response { status, headers, body: Body { io, buf, framing } })
    }

    async fn connect(&self, url: &Url) -> io::Result<Io> {
        let host = match url.host() {
            Some(Host::Domain(domain)) => domain.to_owned(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(unusable("the URL has no host")),
        };
        let port = url.port_or_known_default().ok_or_else(|| unusable("the URL has no port"))?;
        let tcp = self.connect_tcp(&host, port).await?;
        tcp.set_nodelay(true)?;
        match url.scheme() {
            "http" => Ok(Either::Left(tcp)),
            "https" => {
                let tls = timeout(self.connect_timeout, self.handshake(host, tcp));
                let tls = tls.await.map_err(|_| timed_out("TLS handshake"))??;
                Ok(Either::Right(Box::new(tls)))
            }
            _ => Err(unusable("only http and https are supported")),
        }
    }

    /// Tries each address the host resolves to, each within its share of `connect_timeout`
    /// (as hyper does), so one unreachable address does not use up the whole timeout.
    async fn connect_tcp(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let resolve = timeout(self.connect_timeout, tokio::net::lookup_host((host, port)));
        let addrs: Vec<SocketAddr> =
            resolve.await.map_err(|_| timed_out("name resolution"))??.collect();
        let n = u32::try_from(addrs.len()).unwrap_or(u32::MAX).max(1);
        let each = self.connect_timeout / n;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
        for addr in addrs {
            match timeout(each, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => return Ok(tcp),
                Ok(Err(error)) => last = error,
                Err(_) => last = timed_out("connect"),
            }
        }
        Err(last)
    }

    async fn handshake(&self, host: String, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        let tls = match &self.tls {
            Some(tls) => tls.clone(),
            None => platform_tls()?,
        };
        let name = ServerName::try_from(host).map_err(|_| unusable("not a TLS server name"))?;
        TlsConnector::from(tls).connect(name, tcp).await
    }
}

/// Says that a request cannot be made as given (a bad URL or header value, or TLS that
/// cannot start), so retrying cannot help. The network's own errors never carry it, even of
/// kind `InvalidInput` (tokio's "could not resolve to any address").
#[derive(Debug)]
struct Unusable(String);

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unusable {}

/// Whether `error` says the request cannot be made as given.
pub(crate) fn is_unusable(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|inner| inner.is::<Unusable>())
}

pub(crate) fn unusable(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, Unusable(message.into()))
}

/// One TLS configuration for the process, verified by the platform as reqwest's is.
fn platform_tls() -> io::Result<Arc<ClientConfig>> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls_platform_verifier::Verifier::new(provider.clone()).map_err(|e| e.to_string())?;
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    });
    config.clone().map_err(|error| unusable(format!("TLS cannot start: {error}")))
}

/// The request's bytes. Header values are checked as reqwest checks them, so a value with a
/// line break cannot add a header; the error never repeats the value (it may be a key).
fn request(url: &Url, headers: &[(&str, &str)]) -> io::Result<Vec<u8>> {
    let host = url.host_str().ok_or_else(|| unusable("the URL has no host"))?;
    let mut out = format!("GET {}", url.path());
    if let Some(query) = url.query() {
        out.push('?');
        out.push_str(query);
    }
    out.push_str(" HTTP/1.1\r\nhost: ");
    out.push_str(host);
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str("\r\nuser-agent: ");
    out.push_str(crate::api::USER_AGENT);
    // The caller's headers say what it accepts; the body is read as it comes, uncompressed.
    out.push_str("\r\naccept-encoding: identity\r\nconnection: close\r\n");
    // The current span's trace context (`traceparent`), written here as reqwest's requests
    // carry it: this client is not reqwest, so no middleware would.
    let context = crate::telemetry::trace::context_headers();
    let context = context.iter().map(|(name, value)| (name.as_str(), value.as_str()));
    for (name, value) in headers.iter().copied().chain(context) {
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| unusable("bad header name"))?;
        HeaderValue::from_str(value).map_err(|_| unusable("bad header value"))?;
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests;
