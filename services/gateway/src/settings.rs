//! The gateway's settings (environment variables are the upper-case field names; sections are
//! joined with `__`, e.g. `PRODUCER__MAXLEN`, `RETENTION__EVENTS_RAW`).

use std::fmt;

use bus_core::{ProducerSettings, SettingsError};
use commerce::{Retention, names};
use serde::{Deserialize, Serialize};

/// The streams the inspection API may read unless `STREAMS` says otherwise.
const DEFAULT_STREAMS: [&str; 6] = [
    names::EVENTS_RAW,
    names::EVENTS_NORMALIZED,
    names::MERGE_REQUESTS,
    names::PREDICTION_REQUESTS,
    names::PREDICTIONS_COMPLETED,
    crate::RAW_ITEMS,
];

/// Where the gateway listens, what it accepts and what it may show.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewaySettings {
    /// `HTTP_ADDR`: the API and the ops routes (`/metrics`, `/healthz`, `/readyz`) on one
    /// listener. The ops routes are also served on `OPS_ADDR`.
    pub http_addr: String,
    /// `API_TOKEN`: when set, every `/api/*` route except the API description
    /// (`/api/openapi.json`, `/api/docs`) requires `Authorization: Bearer <API_TOKEN>`.
    pub api_token: Option<ApiToken>,
    /// `MAX_BODY_BYTES`: largest accepted request body; a larger one gets 413.
    pub max_body_bytes: usize,
    /// `MAX_BATCH`: most events or items in one request; more gets 413.
    pub max_batch: usize,
    /// `MAX_READ_COUNT`: most entries one stream read or pending listing returns.
    pub max_read_count: usize,
    /// `STREAMS`: comma-separated streams the inspection API may read (each one's `:dlq` too).
    pub streams: String,
    /// `PRODUCER__…`: how the gateway appends and trims (`PRODUCER__PIPELINE` is raised to
    /// `MAX_BATCH` so one request is one round trip).
    pub producer: ProducerSettings,
    /// `RETENTION__…`: entries kept per commerce stream (seed 001's values).
    pub retention: Retention,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            http_addr: "0.0.0.0:3000".into(),
            api_token: None,
            max_body_bytes: 1024 * 1024,
            max_batch: 500,
            max_read_count: 1000,
            streams: DEFAULT_STREAMS.join(","),
            producer: ProducerSettings::default(),
            retention: Retention::default(),
        }
    }
}

impl GatewaySettings {
    /// The readable streams, trimmed, without empties or repeats, in the configured order.
    pub fn stream_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for name in self.streams.split(',').map(str::trim) {
            if !name.is_empty() && !out.iter().any(|n| n == name) {
                out.push(name.to_owned());
            }
        }
        out
    }

    /// The producer settings the gateway uses: a whole batch fits one pipelined round trip.
    pub fn effective_producer(&self) -> ProducerSettings {
        ProducerSettings {
            pipeline: self.producer.pipeline.max(self.max_batch),
            ..self.producer.clone()
        }
    }

    /// Checks values, naming the variable of the first bad one.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self
            .api_token
            .as_ref()
            .is_some_and(|t| t.0.trim().is_empty())
        {
            return Err(SettingsError::invalid(
                "API_TOKEN",
                "must not be empty when set",
            ));
        }
        let positive = [
            ("MAX_BODY_BYTES", self.max_body_bytes),
            ("MAX_BATCH", self.max_batch),
            ("MAX_READ_COUNT", self.max_read_count),
        ];
        if let Some((var, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(SettingsError::invalid(var, "must be at least 1"));
        }
        let streams = self.stream_names();
        if streams.is_empty() {
            return Err(SettingsError::invalid(
                "STREAMS",
                "must name at least one stream",
            ));
        }
        if let Some(bad) = streams.iter().find(|s| s.contains(['*', '?', '[', ' '])) {
            return Err(SettingsError::invalid(
                "STREAMS",
                format!("{bad:?}: stream names, not patterns"),
            ));
        }
        Ok(())
    }
}

/// The bearer token: never shown in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiToken(String);

impl ApiToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        ApiToken(token.into())
    }

    /// The token, for comparing with a request's.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_streams_are_the_commerce_streams_and_raw_items() {
        let names = GatewaySettings::default().stream_names();
        assert_eq!(
            names,
            [
                "events.raw",
                "events.normalized",
                "profiles.merge_requests",
                "predictions.requests",
                "predictions.completed",
                "raw_items"
            ]
        );
    }

    #[test]
    fn stream_lists_are_trimmed_and_deduplicated() {
        let settings = GatewaySettings {
            streams: " a , ,b,a ".into(),
            ..Default::default()
        };
        assert_eq!(settings.stream_names(), ["a", "b"]);
    }

    #[test]
    fn validation_names_the_variable() {
        let cases = [
            (
                GatewaySettings {
                    max_batch: 0,
                    ..Default::default()
                },
                "MAX_BATCH",
            ),
            (
                GatewaySettings {
                    api_token: Some(ApiToken::new(" ")),
                    ..Default::default()
                },
                "API_TOKEN",
            ),
            (
                GatewaySettings {
                    streams: ",".into(),
                    ..Default::default()
                },
                "STREAMS",
            ),
            (
                GatewaySettings {
                    streams: "events.*".into(),
                    ..Default::default()
                },
                "STREAMS",
            ),
        ];
        for (settings, var) in cases {
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains(var), "{err}");
        }
        assert!(GatewaySettings::default().validate().is_ok());
    }

    #[test]
    fn a_batch_is_one_pipelined_round_trip() {
        let settings = GatewaySettings {
            max_batch: 800,
            ..Default::default()
        };
        assert_eq!(settings.effective_producer().pipeline, 800);
    }

    #[test]
    fn the_token_is_not_printed() {
        let settings = GatewaySettings {
            api_token: Some(ApiToken::new("s3cret")),
            ..Default::default()
        };
        assert!(!format!("{settings:?}").contains("s3cret"));
    }
}
