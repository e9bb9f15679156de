//! One handler per stream; each batch is one PostgreSQL transaction guarded by the inbox.

mod crawler_events;
mod tokens;
mod transactions;

pub use crawler_events::CrawlerEventsHandler;
pub use tokens::TokensHandler;
pub use transactions::TransactionsHandler;
