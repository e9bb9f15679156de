//! The crawler's own metrics (entries produced are `bus_entries_produced_total{stream}`).

use std::sync::Arc;

use bus_core::Metrics;
use bus_core::prometheus::{Counter, EncodeLabelSet, Family, Gauge};

use crate::control::CrawlState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    command: &'static str,
    outcome: &'static str,
}

/// `crawler_state{state}`, `crawler_commands_total{command,outcome}`,
/// `crawler_replay_skipped_total`.
#[derive(Debug, Default)]
pub struct CrawlerMetrics {
    state: Family<StateLabels, Gauge>,
    commands: Family<CommandLabels, Counter>,
    skipped: Counter,
}

impl CrawlerMetrics {
    /// Creates the metrics and registers them in `metrics`.
    pub fn register(metrics: &Metrics) -> Arc<Self> {
        let m = Arc::new(CrawlerMetrics::default());
        metrics.register(
            "crawler_state",
            "1 for the crawler's current state (running, paused, stopped, done)",
            m.state.clone(),
        );
        metrics.register(
            "crawler_commands",
            "Commands received, by command and outcome (ok, invalid)",
            m.commands.clone(),
        );
        metrics.register(
            "crawler_replay_skipped",
            "Replay-file lines skipped because they are not an entry",
            m.skipped.clone(),
        );
        m
    }

    /// Marks `current` as the state.
    pub fn set_state(&self, current: CrawlState) {
        for state in CrawlState::ALL {
            let value = i64::from(state == current);
            self.state
                .get_or_create(&StateLabels {
                    state: state.label(),
                })
                .set(value);
        }
    }

    /// Counts a command (`command` is one of the known names or `unknown`).
    pub fn command(&self, command: &'static str, outcome: &'static str) {
        self.commands
            .get_or_create(&CommandLabels { command, outcome })
            .inc();
    }

    /// Counts a skipped replay line.
    pub fn replay_skipped(&self) {
        self.skipped.inc();
    }
}
