//! command-broadcaster settings (environment variables are the upper-case field names).

use bus_core::SettingsError;
use serde::{Deserialize, Serialize};

/// Where the API listens and what it relays.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BroadcasterSettings {
    /// `HTTP_ADDR`: the API, the WebSocket and the ops routes (`/metrics`, `/healthz`,
    /// `/readyz`) on one listener. The ops routes are also served on `OPS_ADDR`.
    pub http_addr: String,
    /// `API_TOKEN`: when set, `/api/*` requires `Authorization: Bearer <API_TOKEN>`.
    pub api_token: Option<String>,
    /// `WS_CHANNELS`: comma-separated notification channels `/ws` may relay.
    pub ws_channels: String,
    /// `WS_BUFFER`: messages buffered per WebSocket client before the oldest are dropped.
    pub ws_buffer: usize,
}

impl Default for BroadcasterSettings {
    fn default() -> Self {
        BroadcasterSettings {
            http_addr: "0.0.0.0:8080".into(),
            api_token: None,
            ws_channels: "channel:token:created,channel:predictions:completed".into(),
            ws_buffer: 256,
        }
    }
}

impl BroadcasterSettings {
    /// The relayed channels, trimmed, without empties.
    pub fn channels(&self) -> Vec<String> {
        self.ws_channels
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Checks values, naming the variable of the first bad one.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self
            .api_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(SettingsError::invalid(
                "API_TOKEN",
                "must not be empty when set",
            ));
        }
        if self.ws_buffer == 0 {
            return Err(SettingsError::invalid("WS_BUFFER", "must be at least 1"));
        }
        if let Some(bad) = self.channels().iter().find(|c| c.contains(['*', '?', '['])) {
            return Err(SettingsError::invalid(
                "WS_CHANNELS",
                format!("{bad:?}: channel names, not patterns"),
            ));
        }
        Ok(())
    }
}
