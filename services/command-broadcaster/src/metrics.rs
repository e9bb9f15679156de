//! The broadcaster's own metrics.

use std::sync::Arc;

use bus_core::Metrics;
use bus_core::prometheus::{Counter, EncodeLabelSet, Family, Gauge};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// `broadcaster_commands_total{outcome}`, `broadcaster_ws_clients`,
/// `broadcaster_ws_messages_total{outcome}`.
#[derive(Debug, Default)]
pub struct BroadcasterMetrics {
    commands: Family<OutcomeLabels, Counter>,
    /// WebSocket clients connected now.
    pub ws_clients: Gauge,
    ws_messages: Family<OutcomeLabels, Counter>,
}

impl BroadcasterMetrics {
    /// Creates the metrics and registers them in `metrics`.
    pub fn register(metrics: &Metrics) -> Arc<Self> {
        let m = Arc::new(BroadcasterMetrics::default());
        metrics.register(
            "broadcaster_commands",
            "Command requests, by outcome (published, invalid, unauthorized, failed)",
            m.commands.clone(),
        );
        metrics.register(
            "broadcaster_ws_clients",
            "WebSocket clients connected",
            m.ws_clients.clone(),
        );
        metrics.register(
            "broadcaster_ws_messages",
            "Notifications relayed to WebSocket clients, by outcome (sent, dropped)",
            m.ws_messages.clone(),
        );
        m
    }

    /// Counts a command request.
    pub fn command(&self, outcome: &'static str) {
        self.commands
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Counts relayed messages.
    pub fn ws_messages(&self, outcome: &'static str, n: u64) {
        self.ws_messages
            .get_or_create(&OutcomeLabels { outcome })
            .inc_by(n);
    }
}
