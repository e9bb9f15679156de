//! The seed-000 wire formats, in one place for the producer (crawler), the consumer (ingest)
//! and the control plane (command-broadcaster).
//!
//! Streams carry flat fields `serviceId`, `type`, `data` (a JSON string) and `timestamp`
//! (ISO 8601), exactly as the seed's Node producer writes them. [`Envelope`] is that shape,
//! generic over the payload of each stream; decoding names the offending field
//! (`data.decimals`) so a bad entry is dead-lettered with a reason a person can act on.
//! Unknown envelope fields are kept ([`Envelope::extra`]); unknown `data` keys are ignored
//! (crawler events keep them for the event log).

mod json;
mod payloads;

use std::fmt::Debug;

use bus_core::chrono::{DateTime, SecondsFormat, Utc};
use bus_core::{DecodeError, Fields, StreamMessage, required, required_json};
use serde::{Deserialize, Serialize};

pub use json::JsonObject;
pub use payloads::{
    CrawlerEventData, CrawlerEventKind, TokenData, TokenKind, TransactionData, TransactionKind,
};

/// Token data from crawlers.
pub const TOKENS_STREAM: &str = "stream:tokens";
/// Transaction data from crawlers.
pub const TRANSACTIONS_STREAM: &str = "stream:transactions";
/// Crawler status, errors and heartbeats.
pub const CRAWLER_EVENTS_STREAM: &str = "stream:crawler-events";
/// The server's consumer group on all three streams.
pub const SERVER_GROUP: &str = "server-group";
/// Broadcast once per newly stored token.
pub const TOKEN_CREATED_CHANNEL: &str = "channel:token:created";

/// The command channel of one service: `channel:service:{serviceId}:commands`.
pub fn commands_channel(service_id: &str) -> String {
    format!("channel:service:{service_id}:commands")
}

/// An entry of `stream:tokens`.
pub type TokenMessage = Envelope<TokenData>;
/// An entry of `stream:transactions`.
pub type TransactionMessage = Envelope<TransactionData>;
/// An entry of `stream:crawler-events`.
pub type CrawlerEventMessage = Envelope<CrawlerEventData>;

/// The closed set of `type` values one stream accepts.
pub trait Kind: Copy + Eq + Debug + Send + Sync + 'static {
    /// Every accepted value.
    const ALL: &'static [Self];
    /// The wire name (`TOKEN_CREATED`).
    fn as_str(self) -> &'static str;
    /// The kind named `name`, if this stream accepts it.
    fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == name)
    }
}

/// The `data` document of one stream.
pub trait Payload: Debug + Clone + Send + Sync + 'static {
    /// The `type` values this payload travels with.
    type Kind: Kind;
    /// Reads and validates the payload; errors name the field as `data.<key>`.
    fn from_json(data: &JsonObject<'_>) -> Result<Self, DecodeError>;
    /// The payload as the seed's JSON document (camelCase keys).
    fn to_json(&self) -> serde_json::Value;
    /// [`to_json`](Self::to_json) as text. Payloads written at volume override it to
    /// serialise without building the document first.
    fn json_text(&self) -> String {
        self.to_json().to_string()
    }
    /// Reads the `data` field of an entry. Payloads read at volume override it with a
    /// direct parse of the common shape that falls back to this for anything else, so
    /// results and error messages stay those of [`from_json`](Self::from_json).
    fn decode_data(fields: &Fields) -> Result<Self, DecodeError> {
        decode_data_document(fields)
    }
}

/// The `data` field parsed as a JSON document, then read by [`Payload::from_json`].
pub fn decode_data_document<P: Payload>(fields: &Fields) -> Result<P, DecodeError> {
    let value: serde_json::Value = required_json(fields, "data")?;
    P::from_json(&JsonObject::root("data", &value)?)
}

/// One stream entry in the seed's shape.
#[derive(Debug, Clone)]
pub struct Envelope<P: Payload> {
    /// `serviceId`: the producing service.
    pub service_id: String,
    /// `type`.
    pub kind: P::Kind,
    /// `data`, decoded.
    pub data: P,
    /// `timestamp`, written as ISO 8601 with milliseconds (`2024-01-01T10:00:00.000Z`).
    pub timestamp: DateTime<Utc>,
    /// Any other fields (`traceparent`, `tenant`, …), kept and re-encoded unchanged.
    pub extra: Fields,
}

const ENVELOPE_FIELDS: [&str; 4] = ["serviceId", "type", "data", "timestamp"];

impl<P: Payload> Envelope<P> {
    /// A message stamped now.
    pub fn new(service_id: impl Into<String>, kind: P::Kind, data: P) -> Self {
        Envelope {
            service_id: service_id.into(),
            kind,
            data,
            timestamp: Utc::now(),
            extra: Fields::new(),
        }
    }
}

impl<P: Payload> StreamMessage for Envelope<P> {
    fn decode(fields: &Fields) -> Result<Self, DecodeError> {
        let service_id = required(fields, "serviceId")?.to_owned();
        let raw_kind = required(fields, "type")?;
        let kind = P::Kind::parse(raw_kind).ok_or_else(|| {
            let accepted: Vec<&str> = P::Kind::ALL.iter().map(|k| k.as_str()).collect();
            DecodeError::invalid(
                "type",
                format!(
                    "unknown type {raw_kind:?} on this stream (accepted: {})",
                    accepted.join(", ")
                ),
            )
        })?;
        let timestamp = parse_timestamp(required(fields, "timestamp")?)?;
        let data = P::decode_data(fields)?;
        let extra = fields
            .iter()
            .filter(|(k, _)| !ENVELOPE_FIELDS.contains(k))
            .collect();
        Ok(Envelope {
            service_id,
            kind,
            data,
            timestamp,
            extra,
        })
    }

    fn encode(&self) -> Fields {
        let mut fields: Fields = [
            ("serviceId", self.service_id.clone()),
            ("type", self.kind.as_str().to_owned()),
            ("data", self.data.json_text()),
            ("timestamp", iso_timestamp(self.timestamp)),
        ]
        .into_iter()
        .collect();
        for (k, v) in self.extra.iter() {
            fields.set(k, v);
        }
        fields
    }
}

/// Parses an ISO 8601 / RFC 3339 timestamp (`2024-01-01T10:00:00Z`, with or without
/// fractional seconds, any offset).
pub fn parse_timestamp(raw: &str) -> Result<DateTime<Utc>, DecodeError> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            DecodeError::invalid(
                "timestamp",
                format!("{raw:?} is not an ISO 8601 date-time: {e}"),
            )
        })
}

/// The timestamp format of JavaScript's `Date.toISOString()`, which the seed's producers use.
pub fn iso_timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `channel:token:created`: `{timestamp, data: {address, name, symbol}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreatedNotification {
    /// When the token was stored, ISO 8601.
    pub timestamp: String,
    /// The new token.
    pub data: TokenCreatedData,
}

/// The `data` of a [`TokenCreatedNotification`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreatedData {
    /// Token contract address.
    pub address: String,
    /// Token name.
    pub name: String,
    /// Token symbol.
    pub symbol: String,
}

/// A command on `channel:service:{serviceId}:commands`: `{command, data, timestamp}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// `START_CRAWLING`, `PAUSE`, `STOP`, `CRAWL_TOKEN`, …
    pub command: String,
    /// Arguments (`{tokenAddress}`); `null` when there are none.
    #[serde(default)]
    pub data: serde_json::Value,
    /// When it was sent, ISO 8601.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

impl Command {
    /// A command stamped now.
    pub fn new(command: impl Into<String>, data: serde_json::Value) -> Self {
        Command {
            command: command.into(),
            data,
            timestamp: Some(iso_timestamp(Utc::now())),
        }
    }
}

#[cfg(test)]
mod tests;
