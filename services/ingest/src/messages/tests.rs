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

#[test]
fn payload_json_text_is_the_text_of_the_json_document() {
    let token = TokenData {
        id: Some("token-1".into()),
        address: "0xab".into(),
        name: "Quote \" and \\ back".into(),
        symbol: "Q".into(),
        decimals: 18,
        total_supply: "1000".into(),
        chain: "ethereum".into(),
    };
    let without_id = TokenData {
        id: None,
        ..token.clone()
    };
    let controls = TokenData {
        name: "line\nbreak\u{1} é / ok".into(),
        ..token.clone()
    };
    for t in [token, without_id, controls] {
        assert_eq!(t.json_text(), t.to_json().to_string());
    }
    let tx = TransactionData {
        id: None,
        hash: "0x01".into(),
        from: "0x02".into(),
        to: None,
        value: "5".into(),
        block_hash: None,
    };
    let full = TransactionData {
        id: Some("tx-1".into()),
        to: Some("0x03".into()),
        block_hash: Some("0x04".into()),
        ..tx.clone()
    };
    for t in [tx, full] {
        assert_eq!(t.json_text(), t.to_json().to_string());
    }
}

#[test]
fn the_direct_data_parse_agrees_with_the_document_reader() {
    fn agree<P: Payload + PartialEq>(documents: &[String]) {
        for json in documents {
            let fields: Fields = [("data", json.as_str())].into_iter().collect();
            let document = decode_data_document::<P>(&fields);
            assert_eq!(P::decode_data(&fields), document, "{json}");
        }
    }
    let tokens = [
        BTC.to_owned(),
        BTC.replace("\"decimals\":18", "\"decimals\":\"18\""),
        BTC.replace("\"decimals\":18", "\"decimals\":18.0"),
        BTC.replace("\"totalSupply\":\"21000000\"", "\"totalSupply\":21000000"),
        BTC.replace("\"totalSupply\":\"21000000\"", "\"totalSupply\":\" 0021 \""),
        BTC.replace("\"name\":\"Bitcoin\"", "\"name\":\"  \""),
        BTC.replace("\"name\":\"Bitcoin\"", "\"name\":null"),
        BTC.replace("\"id\":\"token-123\"", "\"id\":null"),
        BTC.replace("\"id\":\"token-123\"", "\"id\":7"),
        BTC.replace("\"symbol\":\"BTC\"", "\"symbol\":\"B\\tT\\u0043\""),
        BTC.replace("\"chain\":\"ethereum\"", "\"chain\":\"a\",\"chain\":\"b\""),
        "[1]".to_owned(),
        "{not json".to_owned(),
    ];
    agree::<TokenData>(&tokens);
    let tx =
        r#"{"id":"tx-1","hash":"0xAB","from":"0xCD","to":null,"value":"10","blockHash":" 0xEF "}"#;
    let transactions = [
        tx.to_owned(),
        tx.replace("\"to\":null,", ""),
        tx.replace("\"to\":null", "\"to\":\"\""),
        tx.replace("\"value\":\"10\"", "\"value\":10"),
        tx.replace("\"value\":\"10\"", "\"value\":\"-1\""),
        tx.replace("\"hash\":\"0xAB\",", ""),
    ];
    agree::<TransactionData>(&transactions);
    assert_eq!(
        TokenData::decode_data(&Fields::new()),
        Err(DecodeError::missing("data"))
    );
}
