//! Crawler settings (environment variables are the upper-case field names).

use bus_core::{ProducerSettings, SettingsError};
use serde::{Deserialize, Serialize};

/// What the crawler produces, how fast, and as whom.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CrawlerSettings {
    /// `SERVICE_ID`: `serviceId` of every entry, and the command channel
    /// `channel:service:{SERVICE_ID}:commands`.
    pub service_id: String,
    /// `CRAWLER_ID`: `crawlerId` in crawler events.
    pub crawler_id: String,
    /// `CHAIN`: `chain` of the tokens produced.
    pub chain: String,
    /// `RATE`: entries per second from the source; 0 = as fast as Redis takes them.
    pub rate: f64,
    /// `COUNT`: stop producing after this many entries (tokens + transactions, or replayed
    /// lines) and stay up; 0 = no limit.
    pub count: u64,
    /// `TOKEN_RATIO`: share of synthetic entries that are tokens (the rest are transactions).
    pub token_ratio: f64,
    /// `UPDATE_RATIO`: share of synthetic tokens that are TOKEN_UPDATED of a known token.
    pub update_ratio: f64,
    /// `SEED`: seed of the synthetic generator (same seed, same data).
    pub seed: u64,
    /// `AUTOSTART`: produce from start-up; when false, wait for START_CRAWLING.
    pub autostart: bool,
    /// `HEARTBEAT_INTERVAL_MS`: period of HEARTBEAT events; 0 = none.
    pub heartbeat_interval_ms: u64,
    /// `REPLAY_FILE`: replay this JSON-lines file instead of generating data (see README).
    pub replay_file: Option<String>,
    /// `PRODUCER__*`: stream trimming and pipelining (`PRODUCER__MAXLEN` 10000 as the seed).
    pub producer: ProducerSettings,
}

impl Default for CrawlerSettings {
    fn default() -> Self {
        CrawlerSettings {
            service_id: "crawler".into(),
            crawler_id: "crawler-1".into(),
            chain: "ethereum".into(),
            rate: 10.0,
            count: 0,
            token_ratio: 0.2,
            update_ratio: 0.1,
            seed: 1,
            autostart: true,
            heartbeat_interval_ms: 5_000,
            replay_file: None,
            producer: ProducerSettings::default(),
        }
    }
}

impl CrawlerSettings {
    /// Checks ranges, naming the variable of the first bad value.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let id_ok = !self.service_id.is_empty()
            && self
                .service_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !id_ok {
            return Err(SettingsError::invalid(
                "SERVICE_ID",
                "must match [A-Za-z0-9_-]+",
            ));
        }
        if self.crawler_id.trim().is_empty() {
            return Err(SettingsError::invalid("CRAWLER_ID", "must not be empty"));
        }
        if !(self.rate.is_finite() && self.rate >= 0.0) {
            return Err(SettingsError::invalid("RATE", "must be a number >= 0"));
        }
        for (var, ratio) in [
            ("TOKEN_RATIO", self.token_ratio),
            ("UPDATE_RATIO", self.update_ratio),
        ] {
            if !(0.0..=1.0).contains(&ratio) {
                return Err(SettingsError::invalid(var, "must be between 0 and 1"));
            }
        }
        if self.producer.pipeline == 0 {
            return Err(SettingsError::invalid(
                "PRODUCER__PIPELINE",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
