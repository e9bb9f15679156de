//! Stream entries as they travel: an ordered, lossless map of flat string fields plus the
//! entry ID Redis gave them.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// A Redis stream entry ID (`<milliseconds>-<sequence>`), ordered the way Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId {
    /// Milliseconds since the Unix epoch at which Redis created the entry.
    pub ms: u64,
    /// Sequence number within that millisecond.
    pub seq: u64,
}

impl EntryId {
    /// The smallest possible ID (`0-0`).
    pub const ZERO: EntryId = EntryId { ms: 0, seq: 0 };

    /// The next ID after this one, used to resume a range exclusive of `self`.
    pub fn successor(self) -> EntryId {
        match self.seq.checked_add(1) {
            Some(seq) => EntryId { ms: self.ms, seq },
            None => EntryId {
                ms: self.ms + 1,
                seq: 0,
            },
        }
    }

    /// How long ago Redis created this entry, in seconds (0 for IDs from the future).
    pub fn age_seconds(self) -> f64 {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        now_ms.saturating_sub(self.ms) as f64 / 1000.0
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// The text was not a `<ms>-<seq>` stream ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid stream entry id {0:?}")]
pub struct InvalidEntryId(pub String);

impl FromStr for EntryId {
    type Err = InvalidEntryId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidEntryId(s.to_owned());
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        Ok(EntryId {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// The flat field/value pairs of one stream entry, in the order the producer wrote them.
///
/// Unknown fields are kept, so a message can be re-published or dead-lettered unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// No fields.
    pub fn new() -> Self {
        Fields(Vec::new())
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` to `value`, replacing an existing value in place.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// Appends a pair without looking for an existing one (decoding keeps duplicates as sent).
    pub fn push(&mut self, name: String, value: String) {
        self.0.push((name, value));
    }

    /// Iterates over the pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Fields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Fields(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// One entry read from a stream. `fields` is `None` when the entry is still in a pending list
/// but its data was trimmed away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// The entry's ID.
    pub id: EntryId,
    /// Its fields, or `None` when the data no longer exists.
    pub fields: Option<Fields>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_parse_print_and_order_numerically() {
        let a: EntryId = "9-5".parse().unwrap();
        let b: EntryId = "10-0".parse().unwrap();
        assert!(a < b);
        assert_eq!(a.to_string(), "9-5");
        assert_eq!(a.successor().to_string(), "9-6");
        assert!("abc".parse::<EntryId>().is_err());
        assert_eq!("17".parse::<EntryId>().unwrap(), EntryId { ms: 17, seq: 0 });
    }

    #[test]
    fn fields_keep_order_and_replace_in_place() {
        let mut f: Fields = [("a", "1"), ("b", "2")].into_iter().collect();
        f.set("a", "3");
        f.set("c", "4");
        let pairs: Vec<_> = f.iter().collect();
        assert_eq!(pairs, vec![("a", "3"), ("b", "2"), ("c", "4")]);
    }
}
