//! Deterministic test data in the seed's shape.

use bus_core::Fields;
use ingest::messages::{
    Envelope, TokenData, TokenKind, TokenMessage, TransactionData, TransactionKind,
    TransactionMessage,
};

pub fn address(n: u64) -> String {
    format!("0x{n:040x}")
}

pub fn token(n: u64) -> TokenData {
    TokenData {
        id: Some(format!("token-{n}")),
        address: address(n),
        name: format!("Token {n}"),
        symbol: format!("T{n}"),
        decimals: (n % 19) as u8,
        // Beyond u128: NUMERIC(78,0) must keep every digit.
        total_supply: format!("{}{:030}", n + 1, n),
        chain: "ethereum".into(),
    }
}

pub fn token_message(kind: TokenKind, data: TokenData) -> TokenMessage {
    Envelope::new("crawler", kind, data)
}

pub fn transaction(n: u64) -> TransactionMessage {
    Envelope::new(
        "crawler",
        TransactionKind::Created,
        TransactionData {
            id: Some(format!("tx-{n}")),
            hash: format!("0x{n:064x}"),
            from: address(1_000 + n),
            to: Some(address(2_000 + n)),
            value: format!("{}{:021}", n + 1, n),
            block_hash: Some(format!("0x{:064x}", n / 10 + 7)),
        },
    )
}

/// Raw seed-shaped fields for `stream:tokens` with `data` given verbatim.
pub fn raw_token_fields(kind: &str, data: &str) -> Fields {
    [
        ("serviceId", "crawler"),
        ("type", kind),
        ("data", data),
        ("timestamp", "2024-01-01T10:00:00Z"),
    ]
    .into_iter()
    .collect()
}
