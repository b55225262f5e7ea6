//! Telemetry: the tracing subscriber (pretty or JSON logs on stderr), secret redaction and,
//! when the `OTEL_*` variables ask for it, the OpenTelemetry trace exporter (`trace.rs`).
//!
//! Every log line goes through [`redact::Redactor`] on its way out, so a secret that slips into
//! a field or an error message is still not printed. Log events never reach the trace
//! exporter: it gets spans only, whose fields are ids, routes and statuses. This module must
//! not decide what to log or which spans exist.

pub mod metrics;
pub mod redact;
pub mod trace;

use std::io::{self, IsTerminal, Write};

use tracing::Level;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use self::redact::{REDACTED, Redactor};
pub use self::trace::{TraceError, Tracing};

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
    /// The trace exporter the `OTEL_*` variables ask for cannot start.
    #[error(transparent)]
    Trace(#[from] TraceError),
}

/// Installs the global subscriber. `RUST_LOG` filters (default `info`) the log lines; with
/// an OTLP endpoint in the environment, agentcron's spans at `info` and above are exported
/// too, whatever `RUST_LOG` says. Call it inside the async runtime: the exporter runs on it.
///
/// # Errors
/// [`TelemetryError`] when the filter or the `OTEL_*` variables are invalid, or a subscriber
/// exists.
pub fn init(format: LogFormat, redactor: Redactor) -> Result<Tracing, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
        _ => EnvFilter::new("info"),
    };
    let writer = RedactingWriter::stderr(redactor);
    let Some(provider) = trace::provider()? else {
        // Without traces the subscriber is what it always was: one global filter.
        let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
        let res = match format {
            LogFormat::Pretty => builder.with_ansi(io::stderr().is_terminal()).try_init(),
            LogFormat::Json => {
                builder.json().flatten_event(true).with_current_span(true).try_init()
            }
        };
        res.map_err(|_| TelemetryError::AlreadyInitialised)?;
        return Ok(Tracing::default());
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    let fmt = match format {
        LogFormat::Pretty => fmt.with_ansi(io::stderr().is_terminal()).with_filter(filter).boxed(),
        LogFormat::Json => {
            fmt.json().flatten_event(true).with_current_span(true).with_filter(filter).boxed()
        }
    };
    // Spans only: log events carry error messages, which the redactor cleans on the way to
    // stderr but nothing would clean on the way to the collector.
    let spans = tracing_subscriber::filter::filter_fn(|meta| {
        meta.is_span() && meta.target().starts_with("agentcron") && *meta.level() <= Level::INFO
    });
    let otel = trace::layer(&provider).with_filter(spans);
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInitialised)?;
    Ok(trace::keep(Some(provider)))
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
