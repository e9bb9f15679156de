//! Parsing of stream command replies (RESP2 and RESP3 shapes) into entries.

use std::collections::HashMap;

use redis::Value;

use crate::entry::{EntryId, Fields, RawEntry};
use crate::error::BusError;

fn protocol(what: &str) -> BusError {
    BusError::Protocol(what.to_owned())
}

pub(crate) fn text(v: &Value) -> Result<String, BusError> {
    match v {
        Value::BulkString(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::VerbatimString { text, .. } => Ok(text.clone()),
        Value::Int(i) => Ok(i.to_string()),
        _ => Err(protocol("expected a string")),
    }
}

pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(_) | Value::SimpleString(_) => text(v).ok()?.parse().ok(),
        _ => None,
    }
}

fn items(v: Value) -> Result<Vec<Value>, BusError> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        _ => Err(protocol("expected an array")),
    }
}

/// A flat `[k, v, k, v…]` array or a RESP3 map as a string-keyed map.
pub(crate) fn kv_map(v: Value) -> Result<HashMap<String, Value>, BusError> {
    let mut map = HashMap::new();
    match v {
        Value::Map(pairs) => {
            for (k, v) in pairs {
                map.insert(text(&k)?, v);
            }
        }
        other => {
            let mut it = items(other)?.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                map.insert(text(&k)?, v);
            }
        }
    }
    Ok(map)
}

/// Like [`text`], but takes the value, so valid UTF-8 becomes the `String` without a copy
/// (this runs for every field of every entry read).
fn into_text(v: Value) -> Result<String, BusError> {
    match v {
        Value::BulkString(b) => Ok(String::from_utf8(b)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())),
        Value::SimpleString(s) => Ok(s),
        Value::VerbatimString { text, .. } => Ok(text),
        other => text(&other),
    }
}

fn entry(v: Value) -> Result<RawEntry, BusError> {
    let mut parts = items(v)?.into_iter();
    let id = parts.next().ok_or_else(|| protocol("entry without id"))?;
    let id: EntryId = match &id {
        Value::BulkString(b) => std::str::from_utf8(b)
            .map_err(|_| protocol("entry id is not UTF-8"))?
            .parse(),
        other => text(other)?.parse(),
    }
    .map_err(|e: crate::entry::InvalidEntryId| BusError::Protocol(e.to_string()))?;
    let fields = match parts.next() {
        None | Some(Value::Nil) => None,
        Some(values) => {
            let mut fields = Fields::new();
            let mut it = items(values)?.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                fields.push(into_text(k)?, into_text(v)?);
            }
            Some(fields)
        }
    };
    Ok(RawEntry { id, fields })
}

/// Entries of an `XRANGE` reply or of one stream in an `XREAD[GROUP]` reply.
pub(crate) fn entries(v: Value) -> Result<Vec<RawEntry>, BusError> {
    items(v)?.into_iter().map(entry).collect()
}

/// The entries of the single stream named in an `XREADGROUP` reply (empty on timeout).
pub(crate) fn xread_single(v: Value) -> Result<Vec<RawEntry>, BusError> {
    let streams = match v {
        Value::Map(pairs) => pairs.into_iter().map(|(_, e)| e).collect(),
        other => items(other)?
            .into_iter()
            .map(|s| items(s).map(|mut kv| kv.pop().unwrap_or(Value::Nil)))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let mut out = Vec::new();
    for s in streams {
        out.extend(entries(s)?);
    }
    Ok(out)
}

/// An `XAUTOCLAIM` reply: next cursor, claimed entries, IDs whose data was deleted.
pub(crate) struct AutoClaim {
    pub next: String,
    pub claimed: Vec<RawEntry>,
    pub deleted: usize,
}

pub(crate) fn xautoclaim(v: Value) -> Result<AutoClaim, BusError> {
    let mut parts = items(v)?.into_iter();
    let next = text(&parts.next().ok_or_else(|| protocol("xautoclaim cursor"))?)?;
    let claimed = entries(parts.next().unwrap_or(Value::Nil))?;
    let deleted = items(parts.next().unwrap_or(Value::Nil))?.len();
    Ok(AutoClaim {
        next,
        claimed,
        deleted,
    })
}

/// Delivery counts from an extended `XPENDING` reply, by entry ID.
pub(crate) fn xpending_counts(v: Value) -> Result<HashMap<EntryId, u64>, BusError> {
    let mut counts = HashMap::new();
    for row in items(v)? {
        let row = items(row)?;
        if let (Some(id), Some(count)) = (row.first(), row.get(3))
            && let (Ok(id), Some(count)) = (text(id)?.parse::<EntryId>(), int(count))
        {
            counts.insert(id, count.max(0) as u64);
        }
    }
    Ok(counts)
}

/// The rows of an `XINFO GROUPS` / `XINFO CONSUMERS` reply as maps.
pub(crate) fn info_rows(v: Value) -> Result<Vec<HashMap<String, Value>>, BusError> {
    items(v)?.into_iter().map(kv_map).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn xreadgroup_replies_keep_field_order_and_trimmed_entries() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("b"), bulk("2"), bulk("a"), bulk("1")]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let entries = xread_single(reply).unwrap();
        assert_eq!(entries.len(), 2);
        let first: Vec<_> = entries[0].fields.as_ref().unwrap().iter().collect();
        assert_eq!(first, vec![("b", "2"), ("a", "1")]);
        assert!(entries[1].fields.is_none());
        assert!(xread_single(Value::Nil).unwrap().is_empty());
    }
}
