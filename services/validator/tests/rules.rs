//! The seed 003 rule table, code by code, at the boundary lengths.
#![allow(clippy::unwrap_used)]

use bus_core::serde_json::{Map, Value, json};
use validator::rules::{Problem, email_problem, validate};

/// A valid item with `changes` applied (`null` removes nothing: it sets the value to null).
fn item(changes: Value) -> Map<String, Value> {
    let mut data = json!({
        "phone": "0123456789",
        "bank_account": "12345678",
        "email": "user@example.com",
        "name": "Nguyen Van A",
        "source": "web_crawler",
    });
    for (k, v) in changes.as_object().unwrap() {
        data[k] = v.clone();
    }
    data.as_object().unwrap().clone()
}

fn without(field: &str) -> Map<String, Value> {
    let mut data = item(json!({}));
    data.remove(field);
    data
}

fn codes(data: &Map<String, Value>) -> Vec<i32> {
    validate(data).iter().map(|p| p.code).collect()
}

#[test]
fn a_complete_item_breaks_no_rule() {
    assert_eq!(validate(&item(json!({}))), Vec::<Problem>::new());
}

#[test]
fn a_missing_phone_is_code_100_whether_absent_null_or_empty() {
    assert_eq!(codes(&without("phone")), [100]);
    assert_eq!(codes(&item(json!({"phone": null}))), [100]);
    assert_eq!(codes(&item(json!({"phone": ""}))), [100]);
    assert_eq!(codes(&item(json!({"phone": "   "}))), [100]);
    assert_eq!(
        validate(&without("phone"))[0].message,
        "Missing phone number"
    );
}

#[test]
fn a_phone_of_nine_chars_is_code_101_and_ten_chars_pass() {
    assert_eq!(codes(&item(json!({"phone": "012345678"}))), [101]);
    assert_eq!(
        codes(&item(json!({"phone": "0123456789"}))),
        Vec::<i32>::new()
    );
    assert_eq!(codes(&item(json!({"phone": " 012345678 "}))), [101]);
}

#[test]
fn a_short_phone_is_reported_in_the_seed_wording() {
    let problems = validate(&item(json!({"phone": "012"})));
    assert_eq!(
        problems,
        [Problem {
            code: 101,
            field: "phone",
            message: "Phone number too short: 3 chars, minimum 10".into(),
        }]
    );
}

#[test]
fn a_phone_sent_as_a_number_is_checked_by_its_digits_and_a_boolean_is_101() {
    assert_eq!(
        codes(&item(json!({"phone": 1234567890u64}))),
        Vec::<i32>::new()
    );
    assert_eq!(codes(&item(json!({"phone": 123}))), [101]);
    assert_eq!(codes(&item(json!({"phone": true}))), [101]);
}

#[test]
fn a_missing_bank_account_is_code_200() {
    assert_eq!(codes(&without("bank_account")), [200]);
    assert_eq!(codes(&item(json!({"bank_account": null}))), [200]);
    assert_eq!(codes(&item(json!({"bank_account": ""}))), [200]);
}

#[test]
fn a_bank_account_of_seven_chars_is_code_201_and_eight_chars_pass() {
    assert_eq!(codes(&item(json!({"bank_account": "1234567"}))), [201]);
    assert_eq!(
        codes(&item(json!({"bank_account": "12345678"}))),
        Vec::<i32>::new()
    );
    let problems = validate(&item(json!({"bank_account": "12345"})));
    assert_eq!(
        problems[0].message,
        "Bank account too short: 5 chars, minimum 8"
    );
}

#[test]
fn an_invalid_email_is_code_300() {
    for bad in [
        "plainaddress",
        "@example.com",
        "user@",
        "user@localhost",
        "a@b@example.com",
        "user name@example.com",
        "user@example..com",
        "user@.example.com",
        "user@example.com.",
        "\"a b\"@example.com",
    ] {
        assert_eq!(codes(&item(json!({ "email": bad }))), [300], "{bad}");
    }
    assert_eq!(codes(&item(json!({"email": 42}))), [300]);
}

#[test]
fn odd_but_valid_emails_pass() {
    for good in [
        "a+b@sub.example.co",
        "\"quoted\"@example.com",
        "first.last@example.com",
        "x@y.z",
        "UPPER@EXAMPLE.COM",
        "  padded@example.com  ",
        "người.dùng@ví-dụ.vn",
    ] {
        assert_eq!(
            codes(&item(json!({ "email": good }))),
            Vec::<i32>::new(),
            "{good}"
        );
    }
    assert_eq!(email_problem("a+b@sub.example.co"), None);
}

#[test]
fn an_absent_or_empty_email_is_not_an_error() {
    assert_eq!(codes(&without("email")), Vec::<i32>::new());
    assert_eq!(codes(&item(json!({"email": null}))), Vec::<i32>::new());
    assert_eq!(codes(&item(json!({"email": ""}))), Vec::<i32>::new());
}

#[test]
fn a_one_char_name_is_code_400_and_two_chars_pass() {
    assert_eq!(codes(&item(json!({"name": "A"}))), [400]);
    assert_eq!(codes(&item(json!({"name": "An"}))), Vec::<i32>::new());
    assert_eq!(codes(&item(json!({"name": " A "}))), [400]);
    assert_eq!(
        validate(&item(json!({"name": "A"})))[0].message,
        "Name too short: 1 chars, minimum 2"
    );
}

#[test]
fn name_lengths_count_unicode_characters_not_bytes() {
    assert_eq!(codes(&item(json!({"name": "Đỗ"}))), Vec::<i32>::new());
    assert_eq!(codes(&item(json!({"name": "李"}))), [400]);
    assert_eq!(codes(&item(json!({"name": "李明"}))), Vec::<i32>::new());
}

#[test]
fn phone_and_account_lengths_count_characters_too() {
    // Ten characters, more than ten bytes.
    assert_eq!(
        codes(&item(json!({"phone": "０１２３４５６７８９"}))),
        Vec::<i32>::new()
    );
    assert_eq!(codes(&item(json!({"bank_account": "ĐĐĐĐĐĐĐ"}))), [201]);
}

#[test]
fn an_absent_or_empty_name_is_not_an_error() {
    assert_eq!(codes(&without("name")), Vec::<i32>::new());
    assert_eq!(codes(&item(json!({"name": ""}))), Vec::<i32>::new());
    assert_eq!(codes(&item(json!({"name": ["x"]}))), [400]);
}

#[test]
fn an_item_with_several_problems_reports_all_of_them_in_code_order() {
    let data = item(json!({
        "phone": "123",
        "bank_account": null,
        "email": "nope",
        "name": "李",
    }));
    let problems = validate(&data);
    let summary: Vec<(i32, &str)> = problems.iter().map(|p| (p.code, p.field)).collect();
    assert_eq!(
        summary,
        [
            (101, "phone"),
            (200, "bank_account"),
            (300, "email"),
            (400, "name")
        ]
    );
    assert_eq!(codes(&Map::new()), [100, 200]);
}
