//! Telemetry: the tracing subscriber (pretty or JSON logs on stderr) and secret redaction.
//!
//! Every log line goes through [`redact::Redactor`] on its way out, so a secret that slips into
//! a field or an error message is still not printed. This module must not decide what to log.

pub mod metrics;
pub mod redact;

use std::io::{self, IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

pub use self::redact::{REDACTED, Redactor};

/// Log output format, chosen with `--log-format` or `AGENTCRON_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` is not a valid filter.
    #[error("invalid RUST_LOG filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// A global subscriber was already installed.
    #[error("logging was already initialised")]
    AlreadyInitialised,
}

/// Installs the global subscriber. `RUST_LOG` filters (default `info`).
///
/// # Errors
/// [`TelemetryError`] when the filter is invalid or a subscriber exists.
pub fn init(format: LogFormat, redactor: Redactor) -> Result<(), TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
        _ => EnvFilter::new("info"),
    };
    let writer = RedactingWriter::stderr(redactor);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let res = match format {
        LogFormat::Pretty => builder.with_ansi(io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
    res.map_err(|_| TelemetryError::AlreadyInitialised)
}

/// Wraps a writer factory (stderr in the binary, a buffer in tests) so that every log line
/// is redacted before it is written.
#[derive(Debug, Clone)]
pub struct RedactingWriter<W = fn() -> io::Stderr> {
    redactor: Redactor,
    inner: W,
}

impl RedactingWriter {
    /// Redacts with `redactor` on the way to stderr.
    pub fn stderr(redactor: Redactor) -> Self {
        Self { redactor, inner: io::stderr }
    }
}

impl<W> RedactingWriter<W> {
    /// Redacts with `redactor` on the way to `inner`.
    pub fn new(redactor: Redactor, inner: W) -> Self {
        Self { redactor, inner }
    }
}

/// One log event being written. The fmt layer formats each event into one buffer and writes it
/// in one call, so redacting per call sees whole lines.
#[derive(Debug)]
pub struct RedactingGuard<'a, W> {
    redactor: &'a Redactor,
    inner: W,
}

impl<W: Write> Write for RedactingGuard<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.inner.write_all(self.redactor.redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for RedactingWriter<W> {
    type Writer = RedactingGuard<'a, W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingGuard { redactor: &self.redactor, inner: self.inner.make_writer() }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_lines_are_redacted_in_both_formats() {
        for json in [false, true] {
            let buffer = Buffer::default();
            let sink = buffer.clone();
            let redactor = Redactor::new(["client-secret-value"]);
            let writer = RedactingWriter::new(redactor, move || sink.clone());
            let builder = tracing_subscriber::fmt().with_writer(writer).with_ansi(false);
            let log = || {
                tracing::warn!(
                    secret = "client-secret-value",
                    "Token eyJhbGciOi.eyJzdWIiOiJh.c2ln minted."
                );
            };
            if json {
                tracing::subscriber::with_default(builder.json().finish(), log);
            } else {
                tracing::subscriber::with_default(builder.finish(), log);
            }
            let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
            assert!(out.contains("minted"), "{out}");
            assert!(!out.contains("client-secret-value"), "{out}");
            assert!(!out.contains("eyJzdWIiOiJh"), "{out}");
        }
    }
}
