//! Telemetry: the tracing subscriber (pretty or JSON logs on stderr) and secret redaction.
//!
//! Every log line goes through [`redact::Redactor`] on its way out, so a secret that slips into
//! a field or an error message is still not printed. This module must not decide what to log.

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
    let writer = RedactingWriter { redactor };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let res = match format {
        LogFormat::Pretty => builder.with_ansi(io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
    res.map_err(|_| TelemetryError::AlreadyInitialised)
}

/// Writes log lines to stderr after redaction.
#[derive(Debug, Clone)]
pub struct RedactingWriter {
    redactor: Redactor,
}

impl RedactingWriter {
    /// A writer that redacts with `redactor`.
    pub fn new(redactor: Redactor) -> Self {
        Self { redactor }
    }
}

/// One log event being written. The fmt layer writes each formatted event in one call, so
/// redacting per call sees whole lines.
#[derive(Debug)]
pub struct RedactingGuard<'a> {
    redactor: &'a Redactor,
}

impl Write for RedactingGuard<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        io::stderr().lock().write_all(self.redactor.redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for RedactingWriter {
    type Writer = RedactingGuard<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingGuard { redactor: &self.redactor }
    }
}
