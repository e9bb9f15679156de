#![allow(clippy::unwrap_used)]

use super::*;

fn token_fields(data: &str) -> Fields {
    [
        ("serviceId", "crawler"),
        ("type", "TOKEN_CREATED"),
        ("data", data),
        ("timestamp", "2024-01-01T10:00:00Z"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
    ]
    .into_iter()
    .collect()
}

const BTC: &str = r#"{"id":"token-123","address":"0xABC0000000000000000000000000000000000001","name":"Bitcoin","symbol":"BTC","decimals":18,"totalSupply":"21000000","chain":"ethereum","logo":"x.png"}"#;

#[test]
fn a_seed_token_entry_decodes_and_keeps_unknown_fields() {
    let msg = TokenMessage::decode(&token_fields(BTC)).unwrap();
    assert_eq!(msg.kind, TokenKind::Created);
    assert_eq!(msg.service_id, "crawler");
    assert_eq!(
        msg.data.address,
        "0xabc0000000000000000000000000000000000001"
    );
    assert_eq!(msg.data.decimals, 18);
    assert_eq!(msg.data.total_supply, "21000000");
    assert_eq!(msg.data.id.as_deref(), Some("token-123"));
    assert!(msg.extra.get("traceparent").is_some());
    assert_eq!(iso_timestamp(msg.timestamp), "2024-01-01T10:00:00.000Z");
}

#[test]
fn encoding_round_trips_in_the_seed_shape() {
    let msg = TokenMessage::decode(&token_fields(BTC)).unwrap();
    let fields = msg.encode();
    let names: Vec<&str> = fields.iter().map(|(k, _)| k).collect();
    assert_eq!(names[..4], ["serviceId", "type", "data", "timestamp"]);
    let again = TokenMessage::decode(&fields).unwrap();
    assert_eq!(again.data, msg.data);
}

#[test]
fn decode_errors_name_the_nested_field() {
    let cases = [
        (
            BTC.replace("\"decimals\":18", "\"decimals\":300"),
            "data.decimals",
        ),
        (
            BTC.replace("\"totalSupply\":\"21000000\"", "\"totalSupply\":\"-5\""),
            "data.totalSupply",
        ),
        (BTC.replace("\"name\":\"Bitcoin\",", ""), "data.name"),
        ("{not json".to_owned(), "data"),
        ("[1,2]".to_owned(), "data"),
    ];
    for (data, field) in cases {
        let err = TokenMessage::decode(&token_fields(&data)).unwrap_err();
        assert_eq!(err.field(), Some(field), "{data}: {err}");
    }
}

#[test]
fn huge_supplies_are_kept_exactly_and_oversized_ones_rejected() {
    let big = "1".repeat(78);
    let data = BTC.replace("21000000", &format!("000{big}"));
    let msg = TokenMessage::decode(&token_fields(&data)).unwrap();
    assert_eq!(msg.data.total_supply, big);
    let data = BTC.replace("21000000", &"9".repeat(79));
    assert!(TokenMessage::decode(&token_fields(&data)).is_err());
}

#[test]
fn an_unknown_type_is_a_decode_error_naming_the_accepted_ones() {
    let mut fields = token_fields(BTC);
    fields.set("type", "TRANSACTION_CREATED");
    let err = TokenMessage::decode(&fields).unwrap_err();
    assert_eq!(err.field(), Some("type"));
    assert!(err.to_string().contains("TOKEN_UPDATED"), "{err}");
}

#[test]
fn crawler_events_keep_extra_data_keys() {
    let fields: Fields = [
        ("serviceId", "crawler"),
        ("type", "CRAWLER_ERROR"),
        (
            "data",
            r#"{"crawlerId":"crawler-1","status":"error","error":"boom","rpc":"x"}"#,
        ),
        ("timestamp", "2024-01-01T10:00:00.123+02:00"),
    ]
    .into_iter()
    .collect();
    let msg = CrawlerEventMessage::decode(&fields).unwrap();
    assert_eq!(msg.kind, CrawlerEventKind::Error);
    assert_eq!(msg.data.error.as_deref(), Some("boom"));
    assert_eq!(msg.data.to_json()["rpc"], "x");
}

#[test]
fn commands_parse_with_or_without_data() {
    let cmd: Command = serde_json::from_str(r#"{"command":"PAUSE"}"#).unwrap();
    assert_eq!(cmd.data, serde_json::Value::Null);
    assert_eq!(
        commands_channel("crawler"),
        "channel:service:crawler:commands"
    );
}
