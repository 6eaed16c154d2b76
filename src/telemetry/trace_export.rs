//! Distributed tracing: spans exported over OTLP/HTTP (protobuf) when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and W3C
//! trace context (`traceparent`) carried from the client and across forwarded writes.
//!
//! The OpenTelemetry SDK reads the other standard variables itself: `OTEL_SERVICE_NAME`
//! and `OTEL_RESOURCE_ATTRIBUTES` (resource), `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG` (sampling), `OTEL_BSP_*` (batching),
//! `OTEL_EXPORTER_OTLP_HEADERS` and `_TIMEOUT` (export). `OTEL_SDK_DISABLED=true` turns
//! export off. Without an endpoint nothing is exported and no OpenTelemetry layer runs.

use std::collections::HashMap;

use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// A running span exporter; dropping it flushes the spans still queued.
pub struct TraceExport {
    provider: SdkTracerProvider,
}

impl TraceExport {
    /// An exporter configured from the environment, or `None` when no OTLP endpoint is
    /// set or `OTEL_SDK_DISABLED=true`. `node_id` becomes `service.instance.id`.
    pub fn from_env(node_id: u64) -> Result<Option<TraceExport>, String> {
        let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
        let disabled =
            std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
        if disabled
            || !(set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        {
            return Ok(None);
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| format!("OTLP exporter: {e}"))?;
        let mut resource = Resource::builder()
            .with_attribute(KeyValue::new("service.instance.id", node_id.to_string()));
        if !set("OTEL_SERVICE_NAME") {
            resource = resource.with_service_name("licensed");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        Ok(Some(TraceExport { provider }))
    }

    /// The tracer the `tracing` layer feeds.
    pub fn tracer(&self) -> opentelemetry_sdk::trace::SdkTracer {
        self.provider.tracer("licensed")
    }
}

impl Drop for TraceExport {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("licensed: flushing spans: {error}");
        }
    }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// Makes the client's trace (its `traceparent` header, if any) the parent of `span`.
pub fn continue_client_trace(span: &tracing::Span, headers: &HeaderMap) {
    if headers.contains_key(TRACEPARENT) {
        let parent = TraceContextPropagator::new().extract(&Headers(headers));
        let _ = span.set_parent(parent);
    }
}

/// The `traceparent` of `span`, for a request it makes to another node; `None` when the
/// span belongs to no sampled trace (tracing export off, or not sampled).
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes the trace named by `traceparent` (from another node) the parent of `span`.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([(TRACEPARENT.to_string(), traceparent.to_string())]);
    let parent: Context = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(parent);
}
