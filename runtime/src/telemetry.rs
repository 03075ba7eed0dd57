//! OpenTelemetry traces, opt-in by the standard variables: with `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, this server's spans go to that OTLP
//! receiver over HTTP (`OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf`, the default, or
//! `http/json`), batched on the SDK's own thread; `OTEL_SERVICE_NAME` names the service
//! (`oscar-wasm` otherwise) and `OTEL_SDK_DISABLED=true` turns it off. A request's span
//! continues the trace of its W3C `traceparent` ([`continue_trace`]).
//!
//! What is exported: each request's span (`request`, with its id, method and path) and,
//! under it, `admission`, `instantiate`, `guest` and `delivery`; a job's span (`job`) in the
//! trace of the request that accepted it, with the same children; nothing of other crates
//! (wasmtime-wasi makes a span of every WASI call). Image services' Kubernetes Jobs get the
//! context as `TRACEPARENT` ([`current_traceparent`]).

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::registry::LookupSpan;

/// Whether spans are exported: when not, there is no trace context to read or carry, and
/// the request and job paths skip building one.
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// The exporter, flushed and stopped when dropped (at the end of `serve`).
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("oscar-wasm: OpenTelemetry: the last spans were not sent: {e}");
        }
    }
}

/// The tracing layer that sends spans to the OTLP receiver.
pub type TraceLayer<S> =
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>;

/// The tracing layer that exports spans, and its guard, when the environment asks for it.
pub fn from_env<S>() -> Result<Option<(TraceLayer<S>, Telemetry)>, String>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim() == "true");
    if disabled
        || !(set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("OpenTelemetry: the OTLP exporter: {e}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if !set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name("oscar-wasm");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("oscar-wasm");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(Some((layer, Telemetry { provider })))
}

/// Makes `span` a child of the trace a request's `traceparent` names, if any (nothing when
/// traces are not exported).
pub fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if !exporting() || headers.get("traceparent").is_none() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    // Refused only for a span no layer records (traces off): nothing to continue then.
    let _ = span.set_parent(parent);
}

/// The current span's trace context as a `traceparent`, to be continued later (a job's
/// worker); `None` when traces are not exported.
pub fn current_traceparent() -> Option<String> {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if !exporting() {
        return None;
    }
    let context = tracing::Span::current().context();
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of a saved `traceparent` ([`current_traceparent`]).
pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let Some(traceparent) = traceparent.filter(|_| exporting()) else {
        return;
    };
    let carrier =
        std::collections::HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
}

/// A request's headers as the propagator reads them.
struct Headers<'a>(&'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
