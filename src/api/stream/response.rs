//! Reading the event stream's HTTP/1.1 response: the head, parsed by `httparse`, and a body
//! that is chunked, sized, or ends with the connection.
//!
//! Owns the response's framing and its size limits. It must not open connections, write
//! requests, or parse SSE.

use std::io;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::Stream;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::timeout;

use super::Io;

/// What a read asks room for; the buffer starts at this and grows only for a larger event.
const READ_CHUNK: usize = 1024;
/// A response head (or one chunk-size line) larger than this is refused.
pub(super) const MAX_HEAD: usize = 64 * 1024;
/// How much of an error response's body is kept for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// As many header lines as hyper accepts.
const MAX_HEADERS: usize = 100;

/// A response head.
pub(super) struct Head {
    pub(super) status: StatusCode,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(super) version: u8,
    pub(super) headers: HeaderMap,
}

/// The final response's head and the bytes read after it. Interim responses (`100`, `103
/// Early Hints`) are skipped, as HTTP requires of a client: a 1xx other than `101` is
/// interim and the final response follows it.
pub(super) async fn read_head<R: AsyncRead + Unpin>(io: &mut R) -> io::Result<(Head, BytesMut)> {
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

pub(super) fn parse_head(buf: &[u8]) -> io::Result<Option<(Head, usize)>> {
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
    pub(super) body: Body,
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

pub(super) struct Body<R = Io> {
    pub(super) io: R,
    pub(super) buf: BytesMut,
    pub(super) framing: Framing,
}

impl<R: AsyncRead + Unpin> Body<R> {
    pub(super) async fn next(&mut self) -> io::Result<Option<Bytes>> {
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

/// How an HTTP/1.1 response body's end is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunk),
    /// `Content-Length`: the bytes still to come.
    Length(u64),
    /// Neither: the body ends with the connection.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    Data(Bytes),
    More,
    End,
}

impl Framing {
    /// As HTTP/1.1 frames a message body: no body for 204 and 304; `chunked` when it is the only transfer coding
    /// of an HTTP/1.1 response (any other coding is refused: this client decodes none);
    /// otherwise one `Content-Length`, repeated values equal; otherwise to the connection's end.
    pub(super) fn of(head: &Head) -> io::Result<Self> {
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
    pub(super) fn step(&mut self, buf: &mut BytesMut) -> io::Result<Step> {
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

pub(super) fn timed_out(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what}: timed out"))
}
