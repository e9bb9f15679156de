//! The identifier rules: which payload fields identify a customer, and how each kind is
//! normalised so that the same customer written two ways is one identifier.
//!
//! - Keys read: `phone`, `email`, `customer_id`, `external_id`, `whatsapp_id`, `device_id` at the
//!   top of the payload, plus every key of a nested `identifiers` object (the key, trimmed and
//!   lower-cased, is the kind; `identifiers.phone` and `identifiers.email` follow the phone and
//!   email rules).
//! - A value that is absent, `null` or blank is no identifier and no error: forms send `""` for
//!   "not given".
//! - **phone**: spaces (any whitespace), dashes, dots and parentheses are removed, a leading `00`
//!   becomes `+`; the result must be an optional `+` and 7–15 digits.
//! - **email**: trimmed and lower-cased; exactly one `@`, a non-empty local part, a domain with a
//!   dot that is neither its first nor its last character, no whitespace, at most 256
//!   characters.
//! - **any other kind**: the trimmed text (a number as its decimal text), at most 256 characters.
//!   A kind (nested key) has at most 64 characters.
//! - A value breaking its rule (or a boolean, array or object) is rejected: it stays in the
//!   payload as it was, is not used for matching, and is reported in [`Extracted::rejected`].
//! - One value per kind and event: when a kind appears twice (top level and nested, or two nested
//!   keys that differ only in case), the first one read is used (top level first, then nested keys
//!   in sorted order) and a different second value is rejected.
//!
//! `normalized_payload` is the payload with every accepted identifier replaced by its normalised
//! text, wherever it was found.

use std::collections::BTreeMap;

use bus_core::serde_json::{Map, Value};

/// Payload keys read as identifiers, also the fixed `kind` labels of the rejection metric.
pub const KINDS: [&str; 6] = [
    "phone",
    "email",
    "customer_id",
    "external_id",
    "whatsapp_id",
    "device_id",
];

/// The payload key of the nested object whose every key is an identifier kind.
pub const NESTED: &str = "identifiers";

/// Longest accepted value, in characters, of an email or a kind other than phone.
pub const MAX_VALUE_LEN: usize = 256;

/// Longest accepted kind (a key of the nested `identifiers` object), in characters.
pub const MAX_KIND_LEN: usize = 64;

/// Fewest and most digits of a phone number (E.164 allows at most 15).
const PHONE_DIGITS: std::ops::RangeInclusive<usize> = 7..=15;

/// What [`extract`] found in one payload.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Extracted {
    /// Accepted identifiers: kind → normalised value.
    pub identifiers: BTreeMap<String, String>,
    /// The payload with the accepted identifiers replaced by their normalised values.
    pub normalized_payload: Map<String, Value>,
    /// Identifier fields that were present but unusable, with the reason.
    pub rejected: Vec<Rejected>,
}

/// An identifier field that was present but not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The kind it would have been.
    pub kind: String,
    /// Why it was not used.
    pub reason: String,
}

impl Rejected {
    /// The bounded metric label: the kind when it is one of [`KINDS`], else `other`.
    pub fn metric_kind(&self) -> &'static str {
        KINDS
            .iter()
            .find(|k| **k == self.kind)
            .copied()
            .unwrap_or("other")
    }
}

/// The verdict on one identifier value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Absent, `null` or blank: not an identifier, not an error.
    Absent,
    /// Usable, normalised.
    Valid(String),
    /// Present but unusable, with the reason.
    Invalid(String),
}

/// Extracts and normalises the identifiers of `payload` (see the module docs for the rules).
pub fn extract(payload: &Map<String, Value>) -> Extracted {
    let mut normalized_payload = payload.clone();
    let mut found = Found::default();
    for kind in KINDS {
        if let Some(value) = normalized_payload.get_mut(kind) {
            found.take(kind.to_owned(), value);
        }
    }
    match normalized_payload.get_mut(NESTED) {
        None | Some(Value::Null) => {}
        Some(Value::Object(nested)) => {
            let mut keys: Vec<String> = nested.keys().cloned().collect();
            keys.sort();
            for key in keys {
                let kind = key.trim().to_lowercase();
                if let Some(value) = nested.get_mut(&key) {
                    if normalize(&kind, value) == Verdict::Absent {
                        // Nothing given: whatever the key looks like, there is nothing to judge.
                    } else if kind.is_empty() {
                        found.reject(key.clone(), "an identifier kind must not be empty");
                    } else if kind.chars().count() > MAX_KIND_LEN {
                        let reason =
                            format!("an identifier kind has at most {MAX_KIND_LEN} characters");
                        found.reject(kind, reason);
                    } else {
                        found.take(kind, value);
                    }
                }
            }
        }
        Some(other) => found.reject(
            NESTED.to_owned(),
            format!(
                "`{NESTED}` must be an object, got {}",
                bus_core::json_kind(other)
            ),
        ),
    }
    Extracted {
        identifiers: found.identifiers,
        normalized_payload,
        rejected: found.rejected,
    }
}

/// Identifiers and rejections collected while walking one payload.
#[derive(Default)]
struct Found {
    identifiers: BTreeMap<String, String>,
    rejected: Vec<Rejected>,
}

impl Found {
    /// Judges `value` as a `kind` and, when accepted, replaces it in place by its normal form.
    fn take(&mut self, kind: String, value: &mut Value) {
        match normalize(&kind, value) {
            Verdict::Absent => {}
            Verdict::Invalid(reason) => self.reject(kind, reason),
            Verdict::Valid(normal) => {
                match self.identifiers.get(&kind) {
                    Some(first) if *first != normal => {
                        let reason = format!("a second {kind} in one event (the first is used)");
                        self.reject(kind, reason);
                        return;
                    }
                    Some(_) => {}
                    None => {
                        self.identifiers.insert(kind, normal.clone());
                    }
                }
                *value = Value::String(normal);
            }
        }
    }

    fn reject(&mut self, kind: String, reason: impl Into<String>) {
        self.rejected.push(Rejected {
            kind,
            reason: reason.into(),
        });
    }
}

/// Judges one value as an identifier of `kind`.
pub fn normalize(kind: &str, value: &Value) -> Verdict {
    let text = match value {
        Value::Null => return Verdict::Absent,
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        other => {
            return Verdict::Invalid(format!("expected text, got {}", bus_core::json_kind(other)));
        }
    };
    if text.is_empty() {
        return Verdict::Absent;
    }
    let normal = match kind {
        "phone" => normalize_phone(&text),
        "email" => normalize_email(&text),
        _ => normalize_other(&text),
    };
    match normal {
        Ok(normal) => Verdict::Valid(normal),
        Err(reason) => Verdict::Invalid(reason),
    }
}

/// `+84 (91) 234-56.78` → `+84912345678`; `0049 30 1234567` → `+49301234567`.
pub fn normalize_phone(raw: &str) -> Result<String, String> {
    let compact: String = raw
        .chars()
        .filter(|c| !(c.is_whitespace() || matches!(c, '-' | '.' | '(' | ')')))
        .collect();
    let phone = match compact.strip_prefix("00") {
        Some(rest) => format!("+{rest}"),
        None => compact,
    };
    let digits = phone.strip_prefix('+').unwrap_or(&phone);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("phone {raw:?} has characters other than digits"));
    }
    if !PHONE_DIGITS.contains(&digits.len()) {
        return Err(format!(
            "phone {raw:?} has {} digits, expected {} to {}",
            digits.len(),
            PHONE_DIGITS.start(),
            PHONE_DIGITS.end()
        ));
    }
    Ok(phone)
}

/// ` Ana@Example.COM ` → `ana@example.com`.
pub fn normalize_email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_lowercase();
    check_len(&email).map_err(|why| format!("email has {why}"))?;
    let bad = |why: &str| Err(format!("email {raw:?} {why}"));
    if email.chars().any(char::is_whitespace) {
        return bad("contains whitespace");
    }
    let mut parts = email.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return bad("must contain exactly one @");
    };
    if local.is_empty() {
        return bad("has nothing before the @");
    }
    let dotted = domain
        .find('.')
        .is_some_and(|_| !domain.starts_with('.') && !domain.ends_with('.'));
    if !dotted {
        return bad("needs a domain with a dot, such as example.com");
    }
    Ok(email)
}

/// Any other kind: the trimmed text, at most [`MAX_VALUE_LEN`] characters.
pub fn normalize_other(raw: &str) -> Result<String, String> {
    let text = raw.trim();
    check_len(text)?;
    Ok(text.to_owned())
}

/// Values are index keys: bounded so that one never exceeds what an index entry can hold.
fn check_len(text: &str) -> Result<(), String> {
    let len = text.chars().count();
    if len > MAX_VALUE_LEN {
        return Err(format!(
            "{len} characters, at most {MAX_VALUE_LEN} are accepted"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus_core::serde_json::json;

    fn payload(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test payloads are objects"),
        }
    }

    #[test]
    fn phones_lose_their_separators_and_a_leading_00_becomes_a_plus() {
        assert_eq!(
            normalize_phone("+84 (91) 234-56.78").unwrap(),
            "+84912345678"
        );
        assert_eq!(normalize_phone("0049 30 1234567").unwrap(), "+49301234567");
        assert_eq!(normalize_phone("091\t234\u{a0}5678").unwrap(), "0912345678");
        assert_eq!(normalize_phone("1234567").unwrap(), "1234567");
        assert_eq!(
            normalize_phone("+123456789012345").unwrap(),
            "+123456789012345"
        );
    }

    #[test]
    fn phones_with_too_few_or_too_many_digits_or_letters_are_rejected() {
        for bad in [
            "123456",
            "+1234567890123456",
            "0912 ABC 678",
            "+",
            "00",
            "++1234567",
            "12+34567",
        ] {
            assert!(normalize_phone(bad).is_err(), "{bad} should be rejected");
        }
        let reason = normalize_phone("12-34").unwrap_err();
        assert!(reason.contains("4 digits, expected 7 to 15"), "{reason}");
    }

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            normalize_email("  Ana.Maria+x@Example.COM ").unwrap(),
            "ana.maria+x@example.com"
        );
        assert_eq!(normalize_email("a@b.co").unwrap(), "a@b.co");
    }

    #[test]
    fn emails_without_one_at_a_local_part_or_a_dotted_domain_are_rejected() {
        for bad in [
            "ana",
            "a@b@c.com",
            "@example.com",
            "ana@localhost",
            "ana@.com",
            "ana@example.",
            "an a@example.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn other_kinds_are_trimmed_text_of_at_most_256_characters() {
        assert_eq!(
            normalize("customer_id", &json!("  C-42 ")),
            Verdict::Valid("C-42".into())
        );
        assert_eq!(
            normalize("customer_id", &json!(42)),
            Verdict::Valid("42".into())
        );
        assert_eq!(
            normalize("device_id", &json!("é".repeat(256))),
            Verdict::Valid("é".repeat(256))
        );
        assert!(matches!(
            normalize("device_id", &json!("x".repeat(257))),
            Verdict::Invalid(_)
        ));
        assert!(
            matches!(normalize("external_id", &json!(true)), Verdict::Invalid(r) if r.contains("a boolean"))
        );
    }

    #[test]
    fn null_and_blank_values_are_absent_not_rejected() {
        for value in [json!(null), json!(""), json!("   ")] {
            assert_eq!(normalize("email", &value), Verdict::Absent);
        }
        let found = extract(&payload(json!({"email": "", "phone": null})));
        assert!(found.identifiers.is_empty() && found.rejected.is_empty());
    }

    #[test]
    fn extraction_reads_the_known_keys_and_the_nested_identifiers_object() {
        let raw = payload(json!({
            "phone": "0912 345 678",
            "email": "Ana@Example.com",
            "customer_id": 42,
            "total": 99.99,
            "identifiers": {"Loyalty_Card": " L-7 ", "whatsapp_id": "wa-1"},
        }));
        let found = extract(&raw);
        let expected: BTreeMap<String, String> = [
            ("customer_id", "42"),
            ("email", "ana@example.com"),
            ("loyalty_card", "L-7"),
            ("phone", "0912345678"),
            ("whatsapp_id", "wa-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(found.identifiers, expected);
        assert!(found.rejected.is_empty());
        assert_eq!(
            Value::Object(found.normalized_payload),
            json!({
                "phone": "0912345678",
                "email": "ana@example.com",
                "customer_id": "42",
                "total": 99.99,
                "identifiers": {"Loyalty_Card": "L-7", "whatsapp_id": "wa-1"},
            })
        );
    }

    #[test]
    fn rejected_identifiers_stay_in_the_payload_unchanged_and_are_reported() {
        let raw = payload(json!({"phone": "12", "email": "nope", "identifiers": {"loyalty": [1]}}));
        let found = extract(&raw);
        assert!(found.identifiers.is_empty());
        assert_eq!(found.normalized_payload, raw);
        let kinds: Vec<&str> = found.rejected.iter().map(Rejected::metric_kind).collect();
        assert_eq!(kinds, ["phone", "email", "other"]);
    }

    #[test]
    fn overlong_emails_and_kinds_are_rejected() {
        let long_email = format!("{}@example.com", "a".repeat(250));
        assert!(
            normalize_email(&long_email)
                .unwrap_err()
                .contains("at most 256")
        );
        let kind = "k".repeat(65);
        let found = extract(&payload(json!({"identifiers": {kind.clone(): "v"}})));
        assert!(found.identifiers.is_empty());
        assert_eq!(found.rejected[0].kind, kind);
        let fits = "k".repeat(64);
        let found = extract(&payload(json!({"identifiers": {fits.clone(): "v"}})));
        assert_eq!(found.identifiers[&fits], "v");
    }

    #[test]
    fn a_nested_identifiers_value_that_is_not_an_object_is_rejected_as_other() {
        let found = extract(&payload(json!({"identifiers": "x"})));
        assert_eq!(found.rejected.len(), 1);
        assert_eq!(found.rejected[0].metric_kind(), "other");
        assert!(found.rejected[0].reason.contains("must be an object"));
    }

    #[test]
    fn the_top_level_value_wins_over_a_different_nested_value_of_the_same_kind() {
        let raw = payload(json!({"email": "a@x.com", "identifiers": {"email": "B@Y.com"}}));
        let found = extract(&raw);
        assert_eq!(found.identifiers["email"], "a@x.com");
        assert_eq!(found.rejected.len(), 1);
        assert!(found.rejected[0].reason.contains("second email"));
        let same = payload(json!({"email": "a@x.com", "identifiers": {"email": " A@X.com"}}));
        let found = extract(&same);
        assert!(found.rejected.is_empty());
        assert_eq!(found.normalized_payload["identifiers"]["email"], "a@x.com");
    }
}
