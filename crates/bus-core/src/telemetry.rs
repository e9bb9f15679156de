//! Logs and traces: a `tracing` subscriber (text or JSON, `RUST_LOG` filter), OTLP export when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and W3C `traceparent` carried in entry fields.

use std::collections::HashMap;
use std::io::IsTerminal;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::entry::{EntryId, Fields};
use crate::settings::LogFormat;

/// The field that carries the W3C trace context through a stream entry.
pub const TRACEPARENT: &str = "traceparent";

/// Flushes and stops trace export when dropped. Keep it alive for the life of `main`.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("trace exporter shutdown failed: {e}");
        }
    }
}

/// Installs the global subscriber. Default filter `info`, overridden by `RUST_LOG`.
pub fn init(service: &'static str, format: LogFormat) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match format {
        // Colour only on a terminal (and never with NO_COLOR): log files and
        // `docker compose logs` should not carry escape codes.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().boxed(),
    };
    let (otel, provider) = match otlp_provider(service) {
        Some(provider) => (
            Some(tracing_opentelemetry::layer().with_tracer(provider.tracer(service))),
            Some(provider),
        ),
        None => (None, None),
    };
    let _ = Registry::default()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    TelemetryGuard { provider }
}

fn otlp_provider(service: &'static str) -> Option<SdkTracerProvider> {
    // Empty counts as unset: compose files commonly pass the variable through blank.
    std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|endpoint| !endpoint.trim().is_empty())?;
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("OTEL_EXPORTER_OTLP_ENDPOINT is set but the exporter failed: {e}");
            return None;
        }
    };
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build(),
    )
}

/// The current span's W3C `traceparent`, when tracing is exporting spans.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// Adds `traceparent` to outgoing fields unless they already carry one.
pub fn inject(fields: &mut Fields) {
    if fields.get(TRACEPARENT).is_none()
        && let Some(tp) = current_traceparent()
    {
        fields.set(TRACEPARENT, tp);
    }
}

/// A span for one consumed entry, made a child of the producer's span when the entry
/// carries `traceparent`. Debug level: free when not enabled.
pub fn entry_span(stream: &str, id: EntryId, fields: &Fields) -> tracing::Span {
    let span = tracing::debug_span!("stream.entry", stream, entry_id = %id, otel.kind = "consumer");
    if !span.is_disabled()
        && let Some(tp) = fields.get(TRACEPARENT)
    {
        let carrier = HashMap::from([(TRACEPARENT.to_owned(), tp.to_owned())]);
        let parent = TraceContextPropagator::new().extract(&carrier);
        let _ = span.set_parent(parent);
    }
    span
}
