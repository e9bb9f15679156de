//! Replay of a JSON-lines file (`REPLAY_FILE`).
//!
//! Each non-empty line not starting with `#` is one entry, in either shape:
//! - `{"stream": "stream:tokens", "type": "TOKEN_CREATED", "data": {...}}`, or
//! - the seed's message shape `{"serviceId", "type", "data", "timestamp"}`, where the stream
//!   follows from `type` (`TOKEN_*` → `stream:tokens`, `TRANSACTION_*` →
//!   `stream:transactions`, `CRAWLER_*`/`HEARTBEAT` → `stream:crawler-events`).
//!
//! `serviceId` defaults to `SERVICE_ID`, `timestamp` to now; `data` may be an object or a
//! JSON string. Entries are written as they are, unvalidated (ingest validates and
//! dead-letters), so a file can replay bad data on purpose. Lines that are not such an
//! object are skipped, logged and counted.

use std::fs::File;
use std::io::{BufRead, BufReader, Lines};

use bus_core::Fields;
use bus_core::chrono::Utc;
use ingest::messages::{CRAWLER_EVENTS_STREAM, TOKENS_STREAM, TRANSACTIONS_STREAM, iso_timestamp};
use serde_json::Value;

use crate::synthetic::Item;

/// Reads a replay file line by line.
#[derive(Debug)]
pub struct Replay {
    path: String,
    lines: Lines<BufReader<File>>,
    line_no: usize,
    service_id: String,
}

/// A line that could not be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    /// 1-based line number.
    pub line: usize,
    /// Why.
    pub reason: String,
}

impl Replay {
    /// Opens `path`; fails at start-up when it cannot be read.
    pub fn open(path: &str, service_id: &str) -> anyhow::Result<Replay> {
        let file = File::open(path)
            .map_err(|e| anyhow::anyhow!("REPLAY_FILE: cannot open {path:?}: {e}"))?;
        Ok(Replay {
            path: path.to_owned(),
            lines: BufReader::new(file).lines(),
            line_no: 0,
            service_id: service_id.to_owned(),
        })
    }

    /// The next entry, a skipped line, or `None` at the end of the file.
    pub fn next_item(&mut self) -> Option<Result<Item, SkippedLine>> {
        loop {
            let line = match self.lines.next()? {
                Ok(line) => line,
                Err(e) => {
                    tracing::error!(path = %self.path, error = %e, "replay file unreadable; stopping replay");
                    return None;
                }
            };
            self.line_no += 1;
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            return Some(
                parse_line(trimmed, &self.service_id).map_err(|reason| SkippedLine {
                    line: self.line_no,
                    reason,
                }),
            );
        }
    }
}

/// One replay line as an entry.
pub fn parse_line(line: &str, default_service: &str) -> Result<Item, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("not a JSON object".into());
    };
    let text = |key: &str| obj.get(key).and_then(Value::as_str);
    let kind = text("type").ok_or("`type` missing or not a string")?;
    let stream = match text("stream") {
        Some(stream) => stream.to_owned(),
        None => stream_for(kind)
            .ok_or_else(|| format!("no `stream` and type {kind:?} does not imply one"))?
            .to_owned(),
    };
    let data = match obj.get("data") {
        Some(Value::String(s)) => s.clone(),
        Some(v @ Value::Object(_)) => v.to_string(),
        _ => return Err("`data` missing or neither an object nor a string".into()),
    };
    let now = iso_timestamp(Utc::now());
    let fields: Fields = [
        ("serviceId", text("serviceId").unwrap_or(default_service)),
        ("type", kind),
        ("data", &data),
        ("timestamp", text("timestamp").unwrap_or(&now)),
    ]
    .into_iter()
    .collect();
    Ok(Item::Raw { stream, fields })
}

/// The seed's stream for a message `type`.
pub fn stream_for(kind: &str) -> Option<&'static str> {
    if kind.starts_with("TOKEN_") {
        Some(TOKENS_STREAM)
    } else if kind.starts_with("TRANSACTION_") {
        Some(TRANSACTIONS_STREAM)
    } else if kind.starts_with("CRAWLER_") || kind == "HEARTBEAT" {
        Some(CRAWLER_EVENTS_STREAM)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn both_line_shapes_become_seed_entries() {
        let Item::Raw { stream, fields } = parse_line(
            r#"{"serviceId":"node-crawler","type":"TOKEN_CREATED","data":{"address":"0x1"},"timestamp":"2024-01-01T10:00:00Z"}"#,
            "crawler",
        )
        .unwrap() else {
            panic!("raw item expected")
        };
        assert_eq!(stream, "stream:tokens");
        assert_eq!(fields.get("serviceId"), Some("node-crawler"));
        assert_eq!(fields.get("data"), Some(r#"{"address":"0x1"}"#));
        assert_eq!(fields.get("timestamp"), Some("2024-01-01T10:00:00Z"));
        let Item::Raw { stream, fields } = parse_line(
            r#"{"stream":"stream:transactions","type":"TRANSACTION_CREATED","data":"{}"}"#,
            "crawler",
        )
        .unwrap() else {
            panic!("raw item expected")
        };
        assert_eq!(stream, "stream:transactions");
        assert_eq!(fields.get("serviceId"), Some("crawler"));
        assert!(parse_line("[1]", "c").is_err());
        assert!(parse_line(r#"{"type":"WHATEVER","data":{}}"#, "c").is_err());
    }
}
