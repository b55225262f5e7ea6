//! Unit tests of the event stream client: body framing, response heads, request bytes and the
//! choice between the direct client and reqwest. They must not open network connections.

use std::time::Duration;

use bytes::BytesMut;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::response::*;
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

const CHUNKED: &[u8] = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\nleft over";

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
    let error = request(&url, &[("authorization", "Bearer sk-secret\r\nx-evil: 1")]).unwrap_err();
    assert!(is_unusable(&error), "{error:?}");
    assert!(!error.to_string().contains("sk-secret"));
    let bytes =
        request(&url, &[("accept", "application/json"), ("authorization", "Bearer sk-1")]).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.starts_with("GET /v1/x?beta=true HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n"));
    let tail =
        "connection: close\r\naccept: application/json\r\nauthorization: Bearer sk-1\r\n\r\n";
    assert!(text.ends_with(tail), "{text}");
    assert_eq!(text.matches("accept:").count(), 1, "only the caller's accept: {text}");
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
        max_event_bytes: 1024,
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
