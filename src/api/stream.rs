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

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::Stream;
use hyper_util::client::proxy::matcher::Matcher;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;
use url::{Host, Url};

use crate::config::HttpConfig;

/// What a read asks room for; the buffer starts at this and grows only for a larger event.
const READ_CHUNK: usize = 1024;
/// A response head (or one chunk-size line) larger than this is refused.
const MAX_HEAD: usize = 64 * 1024;
/// How much of an error response's body is kept for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// As many header lines as hyper accepts.
const MAX_HEADERS: usize = 100;

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
    out.push_str(
        "\r\naccept: text/event-stream\r\naccept-encoding: identity\r\nconnection: close\r\n",
    );
    for (name, value) in headers {
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| unusable("bad header name"))?;
        HeaderValue::from_str(value).map_err(|_| unusable("bad header value"))?;
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    Ok(out.into_bytes())
}

/// A response head.
struct Head {
    status: StatusCode,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    version: u8,
    headers: HeaderMap,
}

/// The final response's head and the bytes read after it. Interim responses (`100`, `103
/// Early Hints`) are skipped, as a client must (RFC 9110 §15.2).
async fn read_head<R: AsyncRead + Unpin>(io: &mut R) -> io::Result<(Head, BytesMut)> {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        if let Some((head, len)) = parse_head(&buf)? {
            buf.advance(len);
            if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
                continue;
            }
            return Ok((head, buf));
        }
        if buf.len() >= MAX_HEAD {
            return Err(invalid_data("the response head is over 64 KB"));
        }
        if read_more(io, &mut buf).await? == 0 {
            let eof = io::ErrorKind::UnexpectedEof;
            return Err(io::Error::new(eof, "the connection closed before the response head"));
        }
    }
}

fn parse_head(buf: &[u8]) -> io::Result<Option<(Head, usize)>> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    let httparse::Status::Complete(len) = response.parse(buf).map_err(invalid_data)? else {
        return Ok(None);
    };
    let code = response.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(invalid_data)?;
    let mut headers = HeaderMap::with_capacity(response.headers.len());
    for header in response.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(invalid_data)?;
        headers.append(name, HeaderValue::from_bytes(header.value).map_err(invalid_data)?);
    }
    let version = response.version.unwrap_or_default();
    Ok(Some((Head { status, version, headers }, len)))
}

async fn read_more<R: AsyncRead + Unpin>(io: &mut R, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
    io.read_buf(buf).await
}

/// A response whose head has been read.
pub(crate) struct Response {
    /// The status.
    pub(crate) status: StatusCode,
    /// The headers.
    pub(crate) headers: HeaderMap,
    body: Body,
}

impl Response {
    /// The body as it arrives, de-chunked.
    pub(crate) fn into_stream(self) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        futures::stream::try_unfold(self.body, |mut body| async move {
            Ok(body.next().await?.map(|data| (data, body)))
        })
    }

    /// Up to 64 KB of the body as text, for an error's message; waits at most `wait`.
    pub(crate) async fn text(self, wait: Duration) -> String {
        let mut body = self.body;
        let mut text = Vec::new();
        let read = async {
            while let Ok(Some(data)) = body.next().await {
                text.extend_from_slice(&data);
                if text.len() >= MAX_ERROR_BODY {
                    break;
                }
            }
        };
        // A body that does not end in time still gives what came of it.
        if timeout(wait, read).await.is_err() {
            text.extend_from_slice(b" [body cut: timed out]");
        }
        String::from_utf8_lossy(&text).into_owned()
    }
}

struct Body<R = Io> {
    io: R,
    buf: BytesMut,
    framing: Framing,
}

impl<R: AsyncRead + Unpin> Body<R> {
    async fn next(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            match self.framing.step(&mut self.buf)? {
                Step::Data(data) => return Ok(Some(data)),
                Step::End => return Ok(None),
                Step::More => {}
            }
            if read_more(&mut self.io, &mut self.buf).await? == 0 {
                return match self.framing {
                    Framing::Close => Ok(None),
                    _ => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the connection closed inside the body",
                    )),
                };
            }
        }
    }
}

/// How the body's end is known (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunk),
    /// `Content-Length`: the bytes still to come.
    Length(u64),
    /// Neither: the body ends with the connection.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Data(Bytes),
    More,
    End,
}

impl Framing {
    /// RFC 9112 §6.3: no body for 204 and 304; `chunked` when it is the only transfer coding
    /// of an HTTP/1.1 response (any other coding is refused: this client decodes none);
    /// otherwise one `Content-Length`, repeated values equal; otherwise to the connection's end.
    fn of(head: &Head) -> io::Result<Self> {
        if matches!(head.status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED) {
            return Ok(Self::Length(0));
        }
        let codings: Vec<_> = list(&head.headers, "transfer-encoding").collect();
        if !codings.is_empty() {
            let chunked = matches!(codings[..], [coding] if coding.eq_ignore_ascii_case("chunked"));
            return if chunked && head.version >= 1 {
                Ok(Self::Chunked(Chunk::Size))
            } else {
                Err(invalid_data("unsupported transfer-encoding"))
            };
        }
        let mut lengths = list(&head.headers, "content-length").map(|value| {
            let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
            let length = digits.then(|| value.parse::<u64>().ok()).flatten();
            length.ok_or_else(|| invalid_data("invalid content-length"))
        });
        let Some(length) = lengths.next().transpose()? else { return Ok(Self::Close) };
        for other in lengths {
            if other? != length {
                return Err(invalid_data("conflicting content-length values"));
            }
        }
        Ok(Self::Length(length))
    }

    /// The next piece of body in `buf`, or what is needed to get one.
    fn step(&mut self, buf: &mut BytesMut) -> io::Result<Step> {
        match self {
            Self::Close => {
                let mut unbounded = u64::MAX;
                Ok(take(buf, &mut unbounded))
            }
            Self::Length(0) => Ok(Step::End),
            Self::Length(left) => Ok(take(buf, left)),
            Self::Chunked(chunk) => chunk.step(buf),
        }
    }
}

/// The comma-separated elements of every `name` header, trimmed; a value that is not text
/// reads as one element that no rule accepts.
fn list<'a>(headers: &'a HeaderMap, name: &'static str) -> impl Iterator<Item = &'a str> {
    let values = headers.get_all(name).into_iter();
    values.flat_map(|value| value.to_str().unwrap_or("\u{fffd}").split(',')).map(str::trim)
}

impl Chunk {
    fn step(&mut self, buf: &mut BytesMut) -> io::Result<Step> {
        loop {
            match self {
                Self::Size => {
                    // httparse reads an empty size as 0, which would end the body quietly.
                    match buf.first() {
                        None => return Ok(Step::More),
                        Some(b) if !b.is_ascii_hexdigit() => return Err(bad_chunk()),
                        Some(_) => {}
                    }
                    let httparse::Status::Complete((len, size)) =
                        httparse::parse_chunk_size(buf).map_err(|_| bad_chunk())?
                    else {
                        return more_within(buf);
                    };
                    buf.advance(len);
                    *self = if size == 0 { Self::Trailers } else { Self::Data(size) };
                }
                Self::Data(left) => {
                    let step = take(buf, left);
                    if *left == 0 {
                        *self = Self::DataEnd;
                    }
                    return Ok(step);
                }
                Self::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(bad_chunk());
                    }
                    buf.advance(2);
                    *self = Self::Size;
                }
                Self::Trailers => {
                    let Some(end) = buf.windows(2).position(|pair| pair == b"\r\n") else {
                        return more_within(buf);
                    };
                    buf.advance(end + 2);
                    if end == 0 {
                        *self = Self::Done;
                    }
                }
                Self::Done => return Ok(Step::End),
            }
        }
    }
}

/// Up to `left` bytes of `buf`.
fn take(buf: &mut BytesMut, left: &mut u64) -> Step {
    if buf.is_empty() {
        return Step::More;
    }
    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
    *left -= n as u64;
    Step::Data(buf.split_to(n).freeze())
}

/// More bytes are needed to finish a line, unless the line is already too long.
fn more_within(buf: &BytesMut) -> io::Result<Step> {
    if buf.len() > MAX_HEAD { Err(bad_chunk()) } else { Ok(Step::More) }
}

fn bad_chunk() -> io::Error {
    invalid_data("malformed chunked body")
}

fn invalid_data(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

fn timed_out(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what}: timed out"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(framing: Framing, pieces: &[&[u8]]) -> (Vec<u8>, bool) {
        let (mut framing, mut buf, mut out) = (framing, BytesMut::new(), Vec::new());
        for piece in pieces {
            buf.extend_from_slice(piece);
            loop {
                match framing.step(&mut buf).unwrap() {
                    Step::Data(data) => out.extend_from_slice(&data),
                    Step::More => break,
                    Step::End => return (out, true),
                }
            }
        }
        (out, false)
    }

    const CHUNKED: &[u8] =
        b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\nleft over";

    #[test]
    fn a_chunked_body_decodes_however_it_is_split() {
        for at in 0..CHUNKED.len() {
            let (head, tail) = CHUNKED.split_at(at);
            let (out, ended) = decode(Framing::Chunked(Chunk::Size), &[head, tail]);
            assert_eq!(out, b"hello, world", "split at {at}");
            assert!(ended, "split at {at}");
        }
        let bytes: Vec<&[u8]> = CHUNKED.chunks(1).collect();
        assert_eq!(decode(Framing::Chunked(Chunk::Size), &bytes), (b"hello, world".to_vec(), true));
    }

    #[test]
    fn a_sized_body_ends_at_its_length_and_an_unsized_one_never() {
        assert_eq!(decode(Framing::Length(5), &[b"hel", b"lo, extra"]), (b"hello".to_vec(), true));
        assert_eq!(decode(Framing::Close, &[b"a", b"b"]), (b"ab".to_vec(), false));
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for body in [&b"zz\r\nhello\r\n"[..], b"2\r\nhello\r\n"] {
            let (mut framing, mut buf) = (Framing::Chunked(Chunk::Size), BytesMut::from(body));
            let result = (0..4).try_for_each(|_| framing.step(&mut buf).map(drop));
            assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidData, "{body:?}");
        }
    }

    fn head(status: u16, version: u8, pairs: &[(&'static str, &'static str)]) -> Head {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        Head { status: StatusCode::from_u16(status).unwrap(), version, headers }
    }

    #[test]
    fn the_framing_follows_rfc_9112() {
        let framing = |version, pairs: &[_]| Framing::of(&head(200, version, pairs));
        let chunked = [("transfer-encoding", "Chunked"), ("content-length", "3")];
        assert_eq!(framing(1, &chunked).unwrap(), Framing::Chunked(Chunk::Size));
        assert_eq!(framing(1, &[("content-length", " 42")]).unwrap(), Framing::Length(42));
        let repeated = [("content-length", "5, 5"), ("content-length", "5")];
        assert_eq!(framing(1, &repeated).unwrap(), Framing::Length(5));
        assert_eq!(framing(1, &[]).unwrap(), Framing::Close);
        let no_content = Framing::of(&head(204, 1, &[("content-length", "7")])).unwrap();
        assert_eq!(no_content, Framing::Length(0));
        for bad in [
            &[("transfer-encoding", "gzip, chunked")][..],
            &[("transfer-encoding", "chunked"), ("transfer-encoding", "gzip")],
            &[("transfer-encoding", "gzip")],
            &[("content-length", "5, 6")],
            &[("content-length", "5"), ("content-length", "6")],
            &[("content-length", "+5")],
            &[("content-length", "")],
        ] {
            let error = framing(1, bad).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{bad:?}");
        }
        assert!(framing(0, &[("transfer-encoding", "chunked")]).is_err(), "HTTP/1.0 cannot chunk");
    }

    /// The body after the head in `bytes`, read as the stream reads it.
    async fn body_of(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut io = bytes;
        let (head, buf) = read_head(&mut io).await?;
        let mut body = Body { io, buf, framing: Framing::of(&head)? };
        let mut out = Vec::new();
        while let Some(data) = body.next().await? {
            out.extend_from_slice(&data);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn bodies_end_where_their_framing_says_and_a_cut_one_is_an_error() {
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(body_of(chunked).await.unwrap(), b"abc");
        let interim = b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n\r\nall";
        assert_eq!(body_of(interim).await.unwrap(), b"all", "a 1xx is skipped");
        let no_content = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(body_of(no_content).await.unwrap(), b"");
        for cut in [
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\ncontent-le",
        ] {
            let error = body_of(cut).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{cut:?}");
        }
        let empty_size = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\r\nabc";
        assert_eq!(body_of(empty_size).await.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn a_head_over_64_kb_is_refused() {
        let mut bytes = b"HTTP/1.1 200 OK\r\nx-long: ".to_vec();
        bytes.resize(MAX_HEAD + 10, b'a');
        let error = body_of(&bytes).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("64 KB"), "{error}");
    }

    #[test]
    fn a_header_value_cannot_add_a_header_and_the_error_does_not_repeat_it() {
        let url: Url = "http://127.0.0.1:8080/v1/x?beta=true".parse().unwrap();
        let error = request(&url, &[("x-api-key", "sk-secret\r\nx-evil: 1")]).unwrap_err();
        assert!(is_unusable(&error), "{error:?}");
        assert!(!error.to_string().contains("sk-secret"));
        let bytes = request(&url, &[("x-api-key", "sk-1")]).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("GET /v1/x?beta=true HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n"));
        assert!(text.ends_with("connection: close\r\nx-api-key: sk-1\r\n\r\n"), "{text}");
        assert!(text.contains("\r\naccept-encoding: identity\r\n"), "{text}");
    }

    #[test]
    fn a_head_is_parsed_once_complete() {
        let bytes = b"HTTP/1.1 529 Overloaded\r\nretry-after: 2\r\ncontent-length: 0\r\n\r\nrest";
        assert!(parse_head(&bytes[..20]).unwrap().is_none());
        let (head, len) = parse_head(bytes).unwrap().unwrap();
        assert_eq!((head.status.as_u16(), head.version, &bytes[len..]), (529, 1, &b"rest"[..]));
        assert_eq!(head.headers["retry-after"], "2");
        assert!(parse_head(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }

    #[test]
    fn a_proxy_for_the_url_sends_streams_through_reqwest() {
        let config = HttpConfig {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            stream_idle_timeout: Duration::from_secs(1),
        };
        let url: Url = "https://api.anthropic.com".parse().unwrap();
        let via = |matcher: Matcher| Streams::for_url(&url, &matcher, &config);
        let proxied = Matcher::builder().https("http://proxy.internal:3128").build();
        assert!(matches!(via(proxied), Streams::Reqwest));
        let http_only = Matcher::builder().http("http://proxy.internal:3128").build();
        assert!(matches!(via(http_only), Streams::Direct(_)));
        let excluded =
            Matcher::builder().https("http://proxy.internal:3128").no("api.anthropic.com").build();
        assert!(matches!(via(excluded), Streams::Direct(_)));
        assert!(matches!(via(Matcher::builder().build()), Streams::Direct(_)));
    }
}
