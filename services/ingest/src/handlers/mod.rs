//! One handler per stream; each batch is one PostgreSQL transaction that a redelivery cannot
//! change (business keys for tokens and transactions, the inbox for crawler events).

mod crawler_events;
mod tokens;
mod transactions;

pub use crawler_events::CrawlerEventsHandler;
pub use tokens::TokensHandler;
pub use transactions::TransactionsHandler;
