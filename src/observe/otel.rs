//! OpenTelemetry span export (OTLP/HTTP JSON), off unless `tracing.otlp_endpoint` is set.
//!
//! One server span per request, with the ids gatehouse already propagates (the trace id
//! of `traceparent`, this hop's span id), so the exported span is the parent of the
//! upstream's. Spans are ended on the request path and exported in batches by the SDK's
//! own background thread: a slow or absent collector never delays a request (the batch
//! queue is bounded and drops when full).

use crate::config::model::TracingConfig;
use crate::request::trace::TraceContext;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span};
use opentelemetry_sdk::Resource;
use std::time::{Instant, SystemTime};

pub struct SpanExport {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

/// What the finished request tells its span.
pub struct SpanEnd<'a> {
    pub route: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub upstream: Option<String>,
    pub request_id: &'a str,
}

impl<'a> SpanEnd<'a> {
    pub fn of(session: &'a pingora::proxy::Session, ctx: &'a crate::request::RequestCtx) -> Self {
        let req = session.req_header();
        SpanEnd {
            route: ctx.route().map_or(super::metrics::NO_ROUTE, |r| r.name.as_str()),
            method: super::metrics::method_label(&req.method),
            path: req.uri.path(),
            status: session.response_written().map_or(0, |r| r.status.as_u16()),
            upstream: ctx.attempt.as_ref().map(|a| a.target.target().config.spec.clone()),
            request_id: crate::filters::request_id::as_str(&ctx.request_id),
        }
    }
}

impl SpanExport {
    pub fn new(config: &TracingConfig) -> Result<Self, String> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(config.otlp_endpoint.clone())
            .build()
            .map_err(|e| format!("tracing.otlp_endpoint: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("gatehouse");
        Ok(SpanExport { provider, tracer })
    }

    /// The server span of a request that started at `started`.
    pub fn start(&self, trace: &TraceContext, started: Instant) -> Span {
        let trace_id = TraceId::from_hex(trace.trace_id()).unwrap_or(TraceId::INVALID);
        let flags = if trace.flags() == "00" {
            TraceFlags::default()
        } else {
            TraceFlags::SAMPLED
        };
        let parent = match trace.parent_id().and_then(|p| SpanId::from_hex(p).ok()) {
            Some(parent) => Context::new().with_remote_span_context(SpanContext::new(
                trace_id,
                parent,
                flags,
                true,
                TraceState::default(),
            )),
            None => Context::new(),
        };
        let start_time = SystemTime::now() - started.elapsed();
        self.tracer
            .span_builder("gatehouse")
            .with_kind(SpanKind::Server)
            .with_trace_id(trace_id)
            .with_span_id(SpanId::from_hex(trace.span_id()).unwrap_or(SpanId::INVALID))
            .with_start_time(start_time)
            .start_with_context(&self.tracer, &parent)
    }

    /// Flushes what is queued (at shutdown).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            log::warn!("tracing: final export failed: {e}");
        }
    }
}

/// Names the span after its route, records the outcome, and ends it.
pub fn finish(mut span: Span, end: SpanEnd) {
    span.update_name(format!("{} {}", end.method, end.route));
    span.set_attributes([
        KeyValue::new("http.request.method", end.method.to_string()),
        KeyValue::new("url.path", end.path.to_string()),
        KeyValue::new("http.route", end.route.to_string()),
        KeyValue::new("http.response.status_code", i64::from(end.status)),
        KeyValue::new("gatehouse.request_id", end.request_id.to_string()),
    ]);
    if let Some(upstream) = end.upstream {
        span.set_attribute(KeyValue::new("server.address", upstream));
    }
    if end.status >= 500 || end.status == 0 {
        span.set_status(Status::error(format!("status {}", end.status)));
    }
    span.end();
}
