//! Deterministic synthetic tokens and transactions that look like EVM data.

use std::collections::VecDeque;

use ingest::messages::{
    Envelope, TokenData, TokenKind, TokenMessage, TransactionData, TransactionKind,
    TransactionMessage,
};

use crate::rng::SplitMix64;

/// One entry to produce.
#[derive(Debug, Clone)]
pub enum Item {
    /// For `stream:tokens`.
    Token(TokenMessage),
    /// For `stream:transactions`.
    Transaction(TransactionMessage),
    /// Fields for any stream, as read from a replay file.
    Raw {
        /// Target stream.
        stream: String,
        /// The entry's fields.
        fields: bus_core::Fields,
    },
}

const SYLLABLES: &[&str] = &[
    "bit", "coin", "eth", "sol", "doge", "chain", "link", "uni", "aave", "mak", "poly", "star",
    "moon", "nova", "terra", "luna", "pix", "zen", "flux", "orb", "vex", "kai", "ro", "quant",
];
const DECIMALS: &[u8] = &[0, 6, 8, 9, 12, 18, 18, 18, 18];
/// Tokens remembered for TOKEN_UPDATED (bounded, oldest forgotten first).
const REMEMBERED: usize = 1_024;
/// Transactions per synthetic block.
const TXS_PER_BLOCK: u64 = 20;

/// The seeded generator behind the crawler's synthetic mode.
#[derive(Debug)]
pub struct Generator {
    rng: SplitMix64,
    service_id: String,
    chain: String,
    token_ratio: f64,
    update_ratio: f64,
    known: VecDeque<TokenData>,
    tokens: u64,
    transactions: u64,
    block_hash: String,
}

impl Generator {
    /// A generator; `token_ratio` of the items are tokens, of which `update_ratio` update a
    /// token created earlier.
    pub fn new(
        seed: u64,
        service_id: &str,
        chain: &str,
        token_ratio: f64,
        update_ratio: f64,
    ) -> Self {
        let mut rng = SplitMix64::new(seed);
        let block_hash = rng.hex(32);
        Generator {
            rng,
            service_id: service_id.to_owned(),
            chain: chain.to_owned(),
            token_ratio,
            update_ratio,
            known: VecDeque::new(),
            tokens: 0,
            transactions: 0,
            block_hash,
        }
    }

    /// The next item.
    pub fn next_item(&mut self) -> Item {
        if self.rng.chance(self.token_ratio) {
            Item::Token(self.next_token())
        } else {
            Item::Transaction(self.next_transaction())
        }
    }

    fn next_token(&mut self) -> TokenMessage {
        if !self.known.is_empty() && self.rng.chance(self.update_ratio) {
            let i = self.rng.below(self.known.len() as u64) as usize;
            if let Some(known) = self.known.get(i) {
                let mut data = known.clone();
                data.total_supply = supply(&mut self.rng, data.decimals);
                return Envelope::new(&self.service_id, TokenKind::Updated, data);
            }
        }
        self.tokens += 1;
        let address = self.rng.hex(20);
        let mut data = token_for(&address, &self.chain);
        data.id = Some(format!("token-{}", self.tokens));
        if self.known.len() >= REMEMBERED {
            self.known.pop_front();
        }
        self.known.push_back(data.clone());
        Envelope::new(&self.service_id, TokenKind::Created, data)
    }

    fn next_transaction(&mut self) -> TransactionMessage {
        self.transactions += 1;
        if self.transactions.is_multiple_of(TXS_PER_BLOCK) {
            self.block_hash = self.rng.hex(32);
        }
        let rng = &mut self.rng;
        let to = if rng.chance(0.02) {
            None // contract creation
        } else {
            Some(rng.hex(20))
        };
        let value = (u128::from(rng.next_u64()) * u128::from(rng.below(1_000_000))).to_string();
        let data = TransactionData {
            id: Some(format!("tx-{}", self.transactions)),
            hash: rng.hex(32),
            from: rng.hex(20),
            to,
            value,
            block_hash: Some(self.block_hash.clone()),
        };
        Envelope::new(&self.service_id, TransactionKind::Created, data)
    }
}

/// Token data derived from its address only, so `CRAWL_TOKEN` of one address always
/// reports the same token.
pub fn token_for(address: &str, chain: &str) -> TokenData {
    let address = address.to_ascii_lowercase();
    let mut rng = SplitMix64::from_text(&address);
    let parts = 2 + rng.below(2);
    let syllables: Vec<&str> = (0..parts).map(|_| *rng.pick(SYLLABLES)).collect();
    let word: String = syllables.concat();
    let name = format!("{}{}", word[..1].to_ascii_uppercase(), &word[1..]);
    let symbol: String = syllables
        .iter()
        .flat_map(|s| s.chars().take(2))
        .collect::<String>()
        .to_ascii_uppercase();
    let decimals = *rng.pick(DECIMALS);
    TokenData {
        id: None,
        address,
        name,
        symbol,
        decimals,
        total_supply: supply(&mut rng, decimals),
        chain: chain.to_owned(),
    }
}

/// A whole-token supply between 1 and 10^12, in base units (so often beyond 64 bits).
fn supply(rng: &mut SplitMix64, decimals: u8) -> String {
    let whole = 1 + rng.below(1_000_000_000_000);
    format!("{whole}{}", "0".repeat(usize::from(decimals)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic_and_mixes_tokens_and_transactions() {
        let items = |seed| {
            let mut g = Generator::new(seed, "crawler", "ethereum", 0.3, 0.2);
            (0..200).map(|_| g.next_item()).collect::<Vec<_>>()
        };
        let key = |i: &Item| match i {
            Item::Token(t) => t.data.address.clone(),
            Item::Transaction(t) => t.data.hash.clone(),
            Item::Raw { .. } => String::new(),
        };
        let (a, b) = (items(5), items(5));
        assert_eq!(
            a.iter().map(key).collect::<Vec<_>>(),
            b.iter().map(key).collect::<Vec<_>>()
        );
        let tokens = a.iter().filter(|i| matches!(i, Item::Token(_))).count();
        assert!((30..90).contains(&tokens), "{tokens}");
    }

    #[test]
    fn a_token_is_derived_from_its_address() {
        let a = token_for("0xAB00000000000000000000000000000000000001", "ethereum");
        let b = token_for("0xAB00000000000000000000000000000000000001", "ethereum");
        assert_eq!(a, b);
        assert_eq!(a.address, "0xab00000000000000000000000000000000000001");
        assert!(!a.symbol.is_empty() && a.symbol.len() <= 6);
    }
}
