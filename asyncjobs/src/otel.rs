//! OpenTelemetry traces (feature `otel`): asyncjobs makes `tracing` spans
//! named and attributed after the OpenTelemetry messaging semantic
//! conventions, and with this feature parents them through the task's W3C
//! `traceparent`, so one trace runs from the producer's span through the
//! enqueue (`publish <queue>`, kind producer), every try of the task
//! (`process <queue>`, kind consumer, a child of the enqueue, with the try
//! number, outcome and error), to remote handlers (the `traceparent`
//! header of request-reply calls, `TRACEPARENT` in an external command's
//! environment) and back. Scheduler firings are `schedule <name>` spans
//! around their enqueue.
//!
//! [`otlp_layer`] exports them over OTLP/HTTP to a collector
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME` and the SDK's
//! sampling variables such as `OTEL_TRACES_SAMPLER` apply); [`layer`] takes
//! any tracer provider (for example the SDK's in-memory exporter in tests).
//! Metrics stay Prometheus (Go's names): scrape `/metrics` with the
//! collector's Prometheus receiver to bring them into an OpenTelemetry
//! pipeline.
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//! let (otel, guard) = asyncjobs::otel::otlp_layer("email-worker", None).unwrap();
//! tracing_subscriber::registry().with(otel).init();
//! // ... run workers and producers; `guard` flushes spans when dropped
//! # drop(guard);
//! ```

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The instrumentation scope of asyncjobs' spans.
pub const SCOPE: &str = "asyncjobs";

/// Flushes and shuts down the tracer provider when dropped.
#[must_use = "spans are flushed when the guard is dropped"]
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl std::fmt::Debug for OtelGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtelGuard")
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

/// A `tracing` layer sending spans through `provider` (and the W3C trace
/// context propagator installed globally).
pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    tracing_opentelemetry::layer().with_tracer(provider.tracer(SCOPE))
}

/// A `tracing` layer exporting spans over OTLP/HTTP (protobuf) to
/// `endpoint`, or to `OTEL_EXPORTER_OTLP_ENDPOINT` (default
/// `http://localhost:4318`) when `None`; the service is `service_name`
/// unless `OTEL_SERVICE_NAME` says otherwise.
///
/// # Errors
/// The exporter could not be built (for example an invalid endpoint).
pub fn otlp_layer<S>(
    service_name: &str,
    endpoint: Option<&str>,
) -> Result<(impl tracing_subscriber::Layer<S>, OtelGuard), String>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use opentelemetry_otlp::WithExportConfig;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(e) = endpoint {
        let e = e.trim_end_matches('/');
        let traces = if e.ends_with("/v1/traces") {
            e.to_string()
        } else {
            format!("{e}/v1/traces")
        };
        exporter = exporter.with_endpoint(traces);
    }
    let exporter = exporter
        .build()
        .map_err(|e| format!("building the OTLP exporter: {e}"))?;
    let service = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| service_name.to_string());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    Ok((layer(&provider), OtelGuard { provider }))
}

/// Makes the trace context of `traceparent` the parent of `span`, and with
/// `link` also a span link (the messaging conventions link a consumer's
/// span to the producer's).
pub(crate) fn set_parent(span: &tracing::Span, traceparent: &str, link: bool) {
    use opentelemetry::trace::TraceContextExt as _;
    let carrier: HashMap<String, String> =
        HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if link {
        span.add_link(cx.span().span_context().clone());
    }
    let _ = span.set_parent(cx);
}

/// The W3C `traceparent` of `span`, when it is recorded by an
/// OpenTelemetry layer.
pub(crate) fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent")
}
