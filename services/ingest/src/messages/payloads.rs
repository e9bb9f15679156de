//! The `data` documents and `type` values of the three seed-000 streams.

use bus_core::{DecodeError, Fields};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::json::{ObjectWriter, canonical_decimal, normalize_hex_id};
use super::{JsonObject, Kind, Payload, decode_data_document};

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

    fn decode_data(fields: &Fields) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct Doc<'a> {
            id: Option<&'a str>,
            address: &'a str,
            name: &'a str,
            symbol: &'a str,
            decimals: u8,
            #[serde(rename = "totalSupply")]
            total_supply: &'a str,
            chain: &'a str,
        }
        decode_common_shape(fields, |doc: Doc| {
            Some(TokenData {
                id: optional(doc.id)?,
                address: normalize_hex_id(filled(doc.address)?),
                name: filled(doc.name)?,
                symbol: filled(doc.symbol)?,
                decimals: doc.decimals,
                total_supply: canonical_decimal(doc.total_supply.trim()).ok()?,
                chain: filled(doc.chain)?,
            })
        })
    }

    fn json_text(&self) -> String {
        // The keys in to_json's order (serde_json sorts them), so the text is the same.
        let mut doc = ObjectWriter::with_capacity(192);
        doc.string("address", &self.address)
            .string("chain", &self.chain)
            .number("decimals", u64::from(self.decimals))
            .optional("id", self.id.as_deref())
            .string("name", &self.name)
            .string("symbol", &self.symbol)
            .string("totalSupply", &self.total_supply);
        doc.finish()
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

    fn decode_data(fields: &Fields) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct Doc<'a> {
            id: Option<&'a str>,
            hash: &'a str,
            from: &'a str,
            to: Option<&'a str>,
            value: &'a str,
            #[serde(rename = "blockHash")]
            block_hash: Option<&'a str>,
        }
        decode_common_shape(fields, |doc: Doc| {
            Some(TransactionData {
                id: optional(doc.id)?,
                hash: normalize_hex_id(filled(doc.hash)?),
                from: normalize_hex_id(filled(doc.from)?),
                to: optional(doc.to)?.map(normalize_hex_id),
                value: canonical_decimal(doc.value.trim()).ok()?,
                block_hash: optional(doc.block_hash)?.map(normalize_hex_id),
            })
        })
    }

    fn json_text(&self) -> String {
        // The keys in to_json's order (serde_json sorts them), so the text is the same.
        let mut doc = ObjectWriter::with_capacity(256);
        doc.nullable("blockHash", self.block_hash.as_deref())
            .string("from", &self.from)
            .string("hash", &self.hash)
            .optional("id", self.id.as_deref())
            .nullable("to", self.to.as_deref())
            .string("value", &self.value);
        doc.finish()
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

// The fast decoders accept only what the document reader accepts with the same result: a
// `None` (a blank string, a number where text is expected, an escaped string that cannot be
// borrowed, …) sends the entry down the document path, which decides and names the field.

/// Deserialises `data` straight into `Doc` (borrowing its strings) and builds the payload
/// from it; anything `build` or serde turns down is read by [`decode_data_document`].
fn decode_common_shape<'a, Doc: Deserialize<'a>, P: Payload>(
    fields: &'a Fields,
    build: impl FnOnce(Doc) -> Option<P>,
) -> Result<P, DecodeError> {
    let direct = fields
        .get("data")
        .and_then(|text| serde_json::from_str(text).ok())
        .and_then(build);
    direct.map_or_else(|| decode_data_document(fields), Ok)
}

/// A required string as `JsonObject::string` takes it: not blank.
fn filled(text: &str) -> Option<String> {
    (!text.trim().is_empty()).then(|| text.to_owned())
}

/// An optional string as `JsonObject::opt_string` takes it: `None` when blank (so the slow
/// path reports it), `Some(None)` when absent or null.
fn optional(text: Option<&str>) -> Option<Option<String>> {
    match text {
        None => Some(None),
        Some(text) => filled(text).map(Some),
    }
}

fn with_id(doc: &mut Value, id: Option<&str>) {
    if let (Value::Object(map), Some(id)) = (doc, id) {
        map.insert("id".into(), json!(id));
    }
}
