//! The validation rules of seed 003 and their error codes.
//!
//! | code | field | problem |
//! |------|-------|---------|
//! | 100 | phone | missing |
//! | 101 | phone | shorter than 10 characters (or not text) |
//! | 200 | bank_account | missing |
//! | 201 | bank_account | shorter than 8 characters (or not text) |
//! | 300 | email | present but not `local@domain.tld` |
//! | 400 | name | present but shorter than 2 characters (or not text) |
//!
//! Values are trimmed first; lengths count Unicode characters (`Đỗ` is 2, `李` is 1). A value
//! is *missing* when absent, `null`, or empty after trimming. A number is read as its decimal
//! text (a phone sent as a JSON number is still checked by length). Email and name are
//! optional: the seed defines no "missing" code for them, so only a present value is checked.
//! Every broken rule is reported, in the table's order.

use bus_core::serde_json::{Map, Value};
use serde::Serialize;

use bus_core::json_kind as kind;

/// Minimum phone length, in characters.
pub const MIN_PHONE_CHARS: usize = 10;
/// Minimum bank account length, in characters.
pub const MIN_BANK_ACCOUNT_CHARS: usize = 8;
/// Minimum name length, in characters.
pub const MIN_NAME_CHARS: usize = 2;

/// One broken rule, as stored in `raw_items.errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The seed's error code.
    pub code: i32,
    /// The field it concerns.
    pub field: &'static str,
    /// What is wrong, in the seed's wording.
    pub message: String,
}

impl Problem {
    fn new(code: i32, field: &'static str, message: String) -> Self {
        Problem {
            code,
            field,
            message,
        }
    }
}

/// A field's value as the rules see it.
enum Text {
    Missing,
    Present(String),
    /// A boolean, array or object where text was expected.
    WrongType(&'static str),
}

fn text(data: &Map<String, Value>, key: &str) -> Text {
    match data.get(key) {
        None | Some(Value::Null) => Text::Missing,
        Some(Value::String(s)) if s.trim().is_empty() => Text::Missing,
        Some(Value::String(s)) => Text::Present(s.trim().to_owned()),
        Some(Value::Number(n)) => Text::Present(n.to_string()),
        Some(other) => Text::WrongType(kind(other)),
    }
}

/// Every rule `data` breaks, in code order; empty when the item is valid.
pub fn validate(data: &Map<String, Value>) -> Vec<Problem> {
    let mut problems = Vec::new();
    match text(data, "phone") {
        Text::Missing => problems.push(Problem::new(100, "phone", "Missing phone number".into())),
        Text::WrongType(got) => problems.push(Problem::new(
            101,
            "phone",
            format!("Invalid phone format: expected text, got {got}"),
        )),
        Text::Present(phone) => {
            let n = phone.chars().count();
            if n < MIN_PHONE_CHARS {
                problems.push(Problem::new(
                    101,
                    "phone",
                    format!("Phone number too short: {n} chars, minimum {MIN_PHONE_CHARS}"),
                ));
            }
        }
    }
    match text(data, "bank_account") {
        Text::Missing => problems.push(Problem::new(
            200,
            "bank_account",
            "Missing bank account".into(),
        )),
        Text::WrongType(got) => problems.push(Problem::new(
            201,
            "bank_account",
            format!("Invalid bank account: expected text, got {got}"),
        )),
        Text::Present(account) => {
            let n = account.chars().count();
            if n < MIN_BANK_ACCOUNT_CHARS {
                problems.push(Problem::new(
                    201,
                    "bank_account",
                    format!("Bank account too short: {n} chars, minimum {MIN_BANK_ACCOUNT_CHARS}"),
                ));
            }
        }
    }
    match text(data, "email") {
        Text::Missing => {}
        Text::WrongType(got) => problems.push(Problem::new(
            300,
            "email",
            format!("Invalid email format: expected text, got {got}"),
        )),
        Text::Present(email) => {
            if let Some(why) = email_problem(&email) {
                problems.push(Problem::new(
                    300,
                    "email",
                    format!("Invalid email format: {why}"),
                ));
            }
        }
    }
    match text(data, "name") {
        Text::Missing => {}
        Text::WrongType(got) => problems.push(Problem::new(
            400,
            "name",
            format!("Invalid name: expected text, got {got}"),
        )),
        Text::Present(name) => {
            let n = name.chars().count();
            if n < MIN_NAME_CHARS {
                problems.push(Problem::new(
                    400,
                    "name",
                    format!("Name too short: {n} chars, minimum {MIN_NAME_CHARS}"),
                ));
            }
        }
    }
    problems
}

/// Why `email` is not `local@domain.tld`, if it is not.
///
/// Deliberately simple, not RFC 5322: exactly one `@`, something before it, a domain of
/// non-empty dot-separated labels with at least one dot, and no whitespace anywhere. So
/// `a+b@sub.example.co` and `"quoted"@example.com` pass; `"a b"@x.com` and `"a@b"@x.com`
/// (legal but never seen in practice) are rejected.
pub fn email_problem(email: &str) -> Option<&'static str> {
    if email.chars().any(char::is_whitespace) {
        return Some("contains whitespace");
    }
    let mut parts = email.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Some("must contain exactly one @");
    };
    if local.is_empty() {
        return Some("nothing before @");
    }
    if domain.is_empty() {
        return Some("nothing after @");
    }
    if !domain.contains('.') {
        return Some("domain has no dot");
    }
    if domain.split('.').any(str::is_empty) {
        return Some("domain has an empty label");
    }
    None
}
