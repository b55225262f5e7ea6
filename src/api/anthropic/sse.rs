//! A Server-Sent Events decoder whose cost is linear in the bytes: each byte is looked at once
//! for a line end, a finished line is never copied again, and an event larger than the limit
//! is counted, not kept (its lines are dropped as they arrive), so one agent event holding a
//! 2 MB email neither stalls the thread that drives every run nor grows memory past the limit.
//! (The `eventsource-stream` parser re-read its whole buffer for each chunk: quadratic in an
//! event's size, 7 s of CPU for 2 MB.) Lines end with LF, CRLF or CR; `event:` and `data:` are
//! kept, comments and other fields ignored, as the WHATWG spec says. This module must not read
//! what an event means.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SseFrame {
    /// `event:` (empty when absent) and the joined `data:` lines.
    Event {
        /// The `event:` field.
        name: String,
        /// The data, lines joined with `\n`.
        data: String,
    },
    /// An event whose data passed the limit: only its name and size are kept.
    Oversize {
        /// The `event:` field.
        name: String,
        /// The bytes of data it carried.
        bytes: usize,
    },
}

/// The decoder's state between chunks.
#[derive(Debug)]
pub(crate) struct SseDecoder {
    max_event_bytes: usize,
    /// Bytes of the line being read (never more than the limit).
    line: Vec<u8>,
    /// The line being read passed the limit: its bytes are counted, not kept.
    line_dropped: usize,
    /// The last byte was a CR: an LF right after it ends nothing.
    after_cr: bool,
    name: String,
    data: Vec<u8>,
    /// Bytes of data beyond the limit, once the event passed it.
    dropped: Option<usize>,
}

impl SseDecoder {
    /// A decoder that keeps events of up to `max_event_bytes` of data.
    pub(crate) fn new(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            line: Vec::new(),
            line_dropped: 0,
            after_cr: false,
            name: String::new(),
            data: Vec::new(),
            dropped: None,
        }
    }

    /// Takes in `chunk`, pushing the events it completes onto `out`.
    pub(crate) fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseFrame>) {
        let mut rest = chunk;
        while !rest.is_empty() {
            if std::mem::take(&mut self.after_cr) && rest[0] == b'\n' {
                rest = &rest[1..];
                continue;
            }
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(end) => {
                    self.keep(&rest[..end]);
                    self.after_cr = rest[end] == b'\r';
                    rest = &rest[end + 1..];
                    self.end_line(out);
                }
                None => {
                    self.keep(rest);
                    rest = &[];
                }
            }
        }
    }

    /// Adds bytes to the current line, or counts them once it passed the limit.
    fn keep(&mut self, bytes: &[u8]) {
        let room = (self.max_event_bytes + 8).saturating_sub(self.line.len());
        if self.line_dropped > 0 || bytes.len() > room {
            let kept = bytes.len().min(room);
            self.line.extend_from_slice(&bytes[..kept]);
            self.line_dropped += bytes.len() - kept;
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    fn end_line(&mut self, out: &mut Vec<SseFrame>) {
        let line = std::mem::take(&mut self.line);
        let dropped = std::mem::take(&mut self.line_dropped);
        if line.is_empty() && dropped == 0 {
            self.dispatch(out);
            return;
        }
        if line.first() == Some(&b':') {
            return;
        }
        let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
        let (field, mut value) = (&line[..colon], line.get(colon + 1..).unwrap_or_default());
        if value.first() == Some(&b' ') {
            value = &value[1..];
        }
        match field {
            b"event" => self.name = String::from_utf8_lossy(value).into_owned(),
            b"data" => self.add_data(value, dropped),
            _ => {}
        }
    }

    fn add_data(&mut self, value: &[u8], dropped: usize) {
        let size = self.data.len() + value.len() + dropped + 1;
        match &mut self.dropped {
            Some(total) => *total += value.len() + dropped + 1,
            None if size > self.max_event_bytes + 1 => {
                self.dropped = Some(size);
                self.data = Vec::new();
            }
            None => {
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseFrame>) {
        let name = std::mem::take(&mut self.name);
        let mut data = std::mem::take(&mut self.data);
        if let Some(total) = self.dropped.take() {
            out.push(SseFrame::Oversize { name, bytes: total.saturating_sub(1) });
            return;
        }
        if data.is_empty() {
            return;
        }
        data.pop();
        let data = String::from_utf8(data)
            .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned());
        out.push(SseFrame::Event { name, data });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]], max: usize) -> Vec<SseFrame> {
        let mut decoder = SseDecoder::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk, &mut out);
        }
        out
    }

    fn event(name: &str, data: &str) -> SseFrame {
        SseFrame::Event { name: name.into(), data: data.into() }
    }

    #[test]
    fn fields_comments_and_line_ends_as_the_spec_says() {
        let body: &[u8] =
            b": keep-alive\n\nevent: a\ndata: one\ndata:two\n\nid: 7\r\ndata: three\r\n\r\nevent: b\rdata: x\r\r";
        assert_eq!(
            decode(&[body], 100),
            [event("a", "one\ntwo"), event("", "three"), event("b", "x")]
        );
    }

    #[test]
    fn any_split_of_the_bytes_gives_the_same_events() {
        let body: &[u8] = b"event: a\r\ndata: {\"k\": 1}\r\n\r\ndata: b\n\n";
        let whole = decode(&[body], 100);
        for at in 0..body.len() {
            assert_eq!(decode(&[&body[..at], &body[at..]], 100), whole, "split at {at}");
        }
        let bytewise: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(decode(&bytewise, 100), whole);
    }

    #[test]
    fn an_event_over_the_limit_is_counted_not_kept_and_the_next_one_is_whole() {
        let big = vec![b'x'; 5_000];
        let mut body = b"event: agent.message\ndata: ".to_vec();
        body.extend_from_slice(&big);
        body.extend_from_slice(b"\n\ndata: small\n\n");
        let chunks: Vec<&[u8]> = body.chunks(64).collect();
        let frames = decode(&chunks, 1_000);
        assert_eq!(
            frames,
            [SseFrame::Oversize { name: "agent.message".into(), bytes: 5_000 }, event("", "small")]
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        assert_eq!(decode(&[b"data: a\xffb\n\n"], 100), [event("", "a\u{fffd}b")]);
    }
}
