//! OpenTelemetry traces: the OTLP exporter the standard `OTEL_*` variables ask for, the
//! `tracing` layer that turns spans into OpenTelemetry spans, and the W3C trace context the
//! HTTP clients send (`traceparent`).
//!
//! Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set:
//! then no layer is installed, [`enabled`] is false, callers create no spans of their own and
//! send no header. This module owns the exporter and the propagator; it must not decide which
//! spans exist (the rooms that do the work name them) and never reads a request's body.
//!
//! See: <https://opentelemetry.io/docs/specs/otel/protocol/exporter/>

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether a tracer provider is installed. Set once, at start-up, before any span exists.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// The name the spans' resource carries when `OTEL_SERVICE_NAME` does not say one.
const DEFAULT_SERVICE_NAME: &str = "agentcron";

/// How long an export request may take unless `OTEL_EXPORTER_OTLP_TIMEOUT` says (the spec's
/// default).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the exporter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` names no protocol this build speaks.
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL={0} is not one of grpc, http/protobuf, http/json")]
    Protocol(String),
    /// The OTLP exporter refused its configuration.
    #[error("the OTLP trace exporter cannot start: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// The exporter's HTTP client could not be built.
    #[error("the OTLP trace exporter's HTTP client cannot start: {0}")]
    Client(#[from] reqwest::Error),
    /// Tracing needs the async runtime the exporter runs on, and there was none.
    #[error("tracing must be set up inside the async runtime")]
    NoRuntime,
}

/// Whether traces are exported (the `OTEL_*` variables asked for it at start-up).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether the environment asks for traces: an OTLP endpoint is set and the SDK is not
/// disabled (`OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none`).
pub(crate) fn wanted() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
    let is = |name: &str, value: &str| {
        std::env::var(name).is_ok_and(|set| set.trim().eq_ignore_ascii_case(value))
    };
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !is("OTEL_SDK_DISABLED", "true")
        && !is("OTEL_TRACES_EXPORTER", "none")
}

/// The protocol the environment names, `http/protobuf` when it names none (the spec's
/// default). The traces-only variable wins over the general one.
fn protocol() -> Result<Protocol, TraceError> {
    let named = ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.trim().is_empty()));
    match named.as_deref().map(str::trim) {
        None | Some("http/protobuf") => Ok(Protocol::HttpBinary),
        Some("http/json") => Ok(Protocol::HttpJson),
        Some("grpc") => Ok(Protocol::Grpc),
        Some(other) => Err(TraceError::Protocol(other.to_owned())),
    }
}

/// The export timeout the environment names (milliseconds, the traces-only variable first),
/// as the exporter reads it: the HTTP client enforces it.
fn export_timeout() -> Duration {
    ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"]
        .iter()
        .find_map(|name| std::env::var(name).ok()?.trim().parse().ok())
        .map_or(EXPORT_TIMEOUT, Duration::from_millis)
}

/// The installed provider: flushed and shut down by [`Tracing::shutdown`], so the spans of
/// the last runs reach the collector when the process ends.
#[derive(Debug, Default)]
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
}

impl Tracing {
    /// Exports what is still queued and stops the exporter. Call it outside the runtime's
    /// tasks (the exporter's requests run on the runtime, which must still be alive).
    pub fn shutdown(&mut self) {
        let Some(provider) = self.provider.take() else { return };
        if let Err(error) = provider.shutdown() {
            tracing::warn!(message = "Could not export the last spans.", %error);
        }
    }
}

/// The exporter and its tracer provider, when the environment asks for traces; the tracer
/// for the `tracing` layer comes with it. The global propagator is set to W3C trace context.
///
/// # Errors
/// [`TraceError`] when the variables are wrong or no runtime is current.
pub(crate) fn provider() -> Result<Option<SdkTracerProvider>, TraceError> {
    if !wanted() {
        return Ok(None);
    }
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| TraceError::NoRuntime)?;
    let exporter = match protocol()? {
        Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?,
        protocol => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .with_http_client(ExportClient::new(export_timeout())?)
            .build()?,
    };
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(DEFAULT_SERVICE_NAME);
    }
    // The batch processor reads `OTEL_BSP_SCHEDULE_DELAY` and its siblings itself.
    let exporter = OnRuntime { inner: Arc::new(exporter), runtime };
    let processor = BatchSpanProcessor::builder(exporter).build();
    let provider = SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_span_processor(processor)
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some(provider))
}

/// The `tracing` layer of `provider`'s tracer.
pub(crate) fn layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer(DEFAULT_SERVICE_NAME))
}

/// Keeps `provider` for [`Tracing::shutdown`].
pub(crate) fn keep(provider: Option<SdkTracerProvider>) -> Tracing {
    Tracing { provider }
}

/// The trace id of `span`, 32 hex digits, when traces are exported.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = span.context();
    let span_ref = context.span();
    let span_context = span_ref.span_context();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

/// The trace-context headers (`traceparent`, and `tracestate` when there is one) of the
/// current span, to send on a remote call; none when traces are off.
pub fn context_headers() -> Vec<(String, String)> {
    if !enabled() {
        return Vec::new();
    }
    let context = tracing::Span::current().context();
    let mut headers = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut headers);
    });
    let mut headers: Vec<(String, String)> = headers.into_iter().collect();
    headers.sort();
    headers
}

/// An exporter whose exports run on the application's tokio runtime. The batch processor
/// calls exporters from its own thread, where neither reqwest nor tonic can do I/O.
#[derive(Debug)]
struct OnRuntime<E> {
    inner: Arc<E>,
    runtime: tokio::runtime::Handle,
}

impl<E: SpanExporter + 'static> SpanExporter for OnRuntime<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let inner = self.inner.clone();
        let task = self.runtime.spawn(async move { inner.export(batch).await });
        task.await.map_err(|error| {
            opentelemetry_sdk::error::OTelSdkError::InternalFailure(error.to_string())
        })?
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called once, while the provider is built and before any export holds a clone.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

/// The exporter's HTTP client: reqwest on rustls (ring), as the API clients, not the
/// exporter's default blocking client (which would bring a second TLS stack).
#[derive(Debug)]
struct ExportClient {
    http: reqwest::Client,
}

impl ExportClient {
    fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        // A provider installed by someone else first is just as good.
        let _installed = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self { http })
    }
}

type Sent = Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError>;

impl opentelemetry_http::HttpClient for ExportClient {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: http::Request<bytes::Bytes>,
    ) -> Pin<Box<dyn Future<Output = Sent> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)?;
            let response = self.http.execute(request).await?;
            let mut out = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                out = out.header(name, value);
            }
            let body = response.bytes().await?;
            Ok(out.body(body)?)
        })
    }
}
