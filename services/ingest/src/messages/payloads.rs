//! The `data` documents and `type` values of the three seed-000 streams.

use bus_core::DecodeError;
use serde_json::{Map, Value, json};

use super::{JsonObject, Kind, Payload};

/// `type` on `stream:tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// `TOKEN_CREATED`
    Created,
    /// `TOKEN_UPDATED`
    Updated,
}

impl Kind for TokenKind {
    const ALL: &'static [Self] = &[TokenKind::Created, TokenKind::Updated];
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Created => "TOKEN_CREATED",
            TokenKind::Updated => "TOKEN_UPDATED",
        }
    }
}

/// `type` on `stream:transactions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionKind {
    /// `TRANSACTION_CREATED`
    Created,
}

impl Kind for TransactionKind {
    const ALL: &'static [Self] = &[TransactionKind::Created];
    fn as_str(self) -> &'static str {
        "TRANSACTION_CREATED"
    }
}

/// `type` on `stream:crawler-events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrawlerEventKind {
    /// `CRAWLER_ONLINE`
    Online,
    /// `CRAWLER_OFFLINE`
    Offline,
    /// `HEARTBEAT`
    Heartbeat,
    /// `CRAWLER_ERROR`
    Error,
}

impl Kind for CrawlerEventKind {
    const ALL: &'static [Self] = &[
        CrawlerEventKind::Online,
        CrawlerEventKind::Offline,
        CrawlerEventKind::Heartbeat,
        CrawlerEventKind::Error,
    ];
    fn as_str(self) -> &'static str {
        match self {
            CrawlerEventKind::Online => "CRAWLER_ONLINE",
            CrawlerEventKind::Offline => "CRAWLER_OFFLINE",
            CrawlerEventKind::Heartbeat => "HEARTBEAT",
            CrawlerEventKind::Error => "CRAWLER_ERROR",
        }
    }
}

/// `data` of `stream:tokens`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenData {
    /// `id`: the producer's own id (`token-123`); optional.
    pub id: Option<String>,
    /// `address`: the contract address (`0x…` lower-cased).
    pub address: String,
    /// `name`.
    pub name: String,
    /// `symbol`.
    pub symbol: String,
    /// `decimals`: 0..=255.
    pub decimals: u8,
    /// `totalSupply`: an unsigned integer of any size, as canonical decimal digits.
    pub total_supply: String,
    /// `chain` (`ethereum`).
    pub chain: String,
}

impl Payload for TokenData {
    type Kind = TokenKind;

    fn from_json(data: &JsonObject<'_>) -> Result<Self, DecodeError> {
        Ok(TokenData {
            id: data.opt_string("id")?,
            address: data.hex_id("address")?,
            name: data.string("name")?,
            symbol: data.string("symbol")?,
            decimals: data.small_uint("decimals")?,
            total_supply: data.decimal("totalSupply")?,
            chain: data.string("chain")?,
        })
    }

    fn to_json(&self) -> Value {
        let mut doc = json!({
            "address": self.address,
            "name": self.name,
            "symbol": self.symbol,
            "decimals": self.decimals,
            "totalSupply": self.total_supply,
            "chain": self.chain,
        });
        with_id(&mut doc, self.id.as_deref());
        doc
    }
}

/// `data` of `stream:transactions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionData {
    /// `id`: the producer's own id (`tx-123`); optional.
    pub id: Option<String>,
    /// `hash`: the transaction hash, the business key.
    pub hash: String,
    /// `from`.
    pub from: String,
    /// `to`: absent or `null` for contract creations.
    pub to: Option<String>,
    /// `value`: an unsigned integer of any size, as canonical decimal digits.
    pub value: String,
    /// `blockHash`: absent or `null` while pending.
    pub block_hash: Option<String>,
}

impl Payload for TransactionData {
    type Kind = TransactionKind;

    fn from_json(data: &JsonObject<'_>) -> Result<Self, DecodeError> {
        Ok(TransactionData {
            id: data.opt_string("id")?,
            hash: data.hex_id("hash")?,
            from: data.hex_id("from")?,
            to: data.opt_hex_id("to")?,
            value: data.decimal("value")?,
            block_hash: data.opt_hex_id("blockHash")?,
        })
    }

    fn to_json(&self) -> Value {
        let mut doc = json!({
            "hash": self.hash,
            "from": self.from,
            "to": self.to,
            "value": self.value,
            "blockHash": self.block_hash,
        });
        with_id(&mut doc, self.id.as_deref());
        doc
    }
}

/// `data` of `stream:crawler-events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrawlerEventData {
    /// `crawlerId`.
    pub crawler_id: String,
    /// `status` (`active`, `paused`, `stopped`, `error`, …).
    pub status: String,
    /// `error`, for `CRAWLER_ERROR`.
    pub error: Option<String>,
    /// Any other keys (metrics a crawler reports), kept for the event log.
    pub extra: Map<String, Value>,
}

impl Payload for CrawlerEventData {
    type Kind = CrawlerEventKind;

    fn from_json(data: &JsonObject<'_>) -> Result<Self, DecodeError> {
        let extra = data
            .map()
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "crawlerId" | "status" | "error"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(CrawlerEventData {
            crawler_id: data.string("crawlerId")?,
            status: data.string("status")?,
            error: data.opt_string("error")?,
            extra,
        })
    }

    fn to_json(&self) -> Value {
        let mut doc = self.extra.clone();
        doc.insert("crawlerId".into(), json!(self.crawler_id));
        doc.insert("status".into(), json!(self.status));
        if let Some(error) = &self.error {
            doc.insert("error".into(), json!(error));
        }
        Value::Object(doc)
    }
}

fn with_id(doc: &mut Value, id: Option<&str>) {
    if let (Value::Object(map), Some(id)) = (doc, id) {
        map.insert("id".into(), json!(id));
    }
}
