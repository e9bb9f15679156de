//! The gateway's metrics, and the middleware that records every request.
//!
//! Labels stay bounded: `route` is the route template (`/api/streams/{name}`, never the
//! stream asked for; `unmatched` for unknown paths), `status` an HTTP status code, `reason` one
//! of a fixed set, `stream` one of the streams the gateway writes.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use bus_core::Metrics;
use bus_core::prometheus::{Counter, EncodeLabelSet, Family, Histogram};
use prometheus_client::metrics::histogram::exponential_buckets;
use tracing::Instrument;

use crate::app::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectedLabels {
    route: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: &'static str,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 0.5 ms … ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// `gateway_requests_total{route,status}`, `gateway_entries_total{stream}`,
/// `gateway_rejected_total{route,reason}`, `gateway_request_duration_seconds{route}`.
#[derive(Debug)]
pub struct GatewayMetrics {
    requests: Family<RequestLabels, Counter>,
    entries: Family<StreamLabels, Counter>,
    rejected: Family<RejectedLabels, Counter>,
    duration: HistogramFamily,
}

impl GatewayMetrics {
    /// Creates the metrics and registers them in `metrics`.
    pub fn register(metrics: &Metrics) -> Arc<Self> {
        let m = Arc::new(GatewayMetrics {
            requests: Family::default(),
            entries: Family::default(),
            rejected: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
        });
        metrics.register(
            "gateway_requests",
            "HTTP requests, by route template and status code",
            m.requests.clone(),
        );
        metrics.register(
            "gateway_entries",
            "Entries appended to a stream on behalf of a request",
            m.entries.clone(),
        );
        metrics.register(
            "gateway_rejected",
            "Requests refused, by route and reason (invalid, too_large, unauthorized, not_found)",
            m.rejected.clone(),
        );
        metrics.register(
            "gateway_request_duration_seconds",
            "Time to answer a request, by route template",
            m.duration.clone(),
        );
        m
    }

    /// Counts `n` entries appended to `stream`.
    pub fn entries(&self, stream: &'static str, n: usize) {
        self.entries
            .get_or_create(&StreamLabels { stream })
            .inc_by(n as u64);
    }

    fn record(&self, route: String, status: StatusCode, seconds: f64) {
        if let Some(reason) = rejection_reason(status) {
            self.rejected
                .get_or_create(&RejectedLabels {
                    route: route.clone(),
                    reason,
                })
                .inc();
        }
        self.duration
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .observe(seconds);
        self.requests
            .get_or_create(&RequestLabels {
                route,
                status: status.as_u16().to_string(),
            })
            .inc();
    }
}

/// The rejection reason of a refused request, from its status; `None` when the request was
/// not refused (served, or failed on the gateway's side).
fn rejection_reason(status: StatusCode) -> Option<&'static str> {
    match status {
        StatusCode::BAD_REQUEST
        | StatusCode::UNPROCESSABLE_ENTITY
        | StatusCode::METHOD_NOT_ALLOWED => Some("invalid"),
        StatusCode::PAYLOAD_TOO_LARGE => Some("too_large"),
        StatusCode::UNAUTHORIZED => Some("unauthorized"),
        StatusCode::NOT_FOUND => Some("not_found"),
        _ => None,
    }
}

/// Records every request's route, status and duration, and runs it in a span, so the entries
/// it appends carry its `traceparent` and a trace spans gateway → consumers.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let span = tracing::info_span!(
        "http.request",
        method = %request.method(),
        route = %route,
        status = tracing::field::Empty,
        otel.kind = "server",
    );
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    state
        .metrics
        .record(route, response.status(), started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_map_to_the_fixed_reasons() {
        assert_eq!(
            rejection_reason(StatusCode::UNPROCESSABLE_ENTITY),
            Some("invalid")
        );
        assert_eq!(rejection_reason(StatusCode::BAD_REQUEST), Some("invalid"));
        assert_eq!(
            rejection_reason(StatusCode::PAYLOAD_TOO_LARGE),
            Some("too_large")
        );
        assert_eq!(
            rejection_reason(StatusCode::UNAUTHORIZED),
            Some("unauthorized")
        );
        assert_eq!(rejection_reason(StatusCode::NOT_FOUND), Some("not_found"));
        assert_eq!(rejection_reason(StatusCode::ACCEPTED), None);
        assert_eq!(rejection_reason(StatusCode::SERVICE_UNAVAILABLE), None);
    }
}
