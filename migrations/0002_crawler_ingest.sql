-- Seed 000: what the ingest service writes from stream:tokens, stream:transactions and
-- stream:crawler-events. Every row records the stream entry id that last wrote it
-- (last_entry_id), which is also what "last writer wins" compares (stream_entry_key, 0001).

-- Tokens are unique per chain: the same contract address on two chains is two tokens.
-- Addresses are stored as sent, except 0x-hex which the ingest service lower-cases
-- (EVM addresses are case-insensitive; checksum casing must not create a second row).
CREATE TABLE IF NOT EXISTS tokens (
    chain            text          NOT NULL,
    address          text          NOT NULL,
    token_id         text,                        -- the producer's own id ("token-123")
    name             text          NOT NULL,
    symbol           text          NOT NULL,
    decimals         smallint      NOT NULL CHECK (decimals BETWEEN 0 AND 255),
    total_supply     numeric(78,0) NOT NULL CHECK (total_supply >= 0),
    service_id       text          NOT NULL,
    source_timestamp timestamptz   NOT NULL,      -- the entry's `timestamp`
    created_at       timestamptz   NOT NULL DEFAULT now(),
    updated_at       timestamptz   NOT NULL DEFAULT now(),
    last_entry_id    text          NOT NULL,
    PRIMARY KEY (chain, address)
);
CREATE INDEX IF NOT EXISTS tokens_symbol ON tokens (symbol);

-- Transactions are immutable: inserted once per hash, later entries change nothing.
CREATE TABLE IF NOT EXISTS transactions (
    hash             text          PRIMARY KEY,
    tx_id            text,                        -- the producer's own id ("tx-123")
    from_address     text          NOT NULL,
    to_address       text,                        -- NULL for contract creation
    value            numeric(78,0) NOT NULL CHECK (value >= 0),
    block_hash       text,                        -- NULL while pending
    service_id       text          NOT NULL,
    source_timestamp timestamptz   NOT NULL,
    created_at       timestamptz   NOT NULL DEFAULT now(),
    last_entry_id    text          NOT NULL
);
CREATE INDEX IF NOT EXISTS transactions_from_address ON transactions (from_address);
CREATE INDEX IF NOT EXISTS transactions_to_address ON transactions (to_address);
CREATE INDEX IF NOT EXISTS transactions_block_hash ON transactions (block_hash);

-- The current state of each crawler, folded from its events.
CREATE TABLE IF NOT EXISTS crawlers (
    crawler_id      text        PRIMARY KEY,
    service_id      text        NOT NULL,
    status          text        NOT NULL,
    last_event_type text        NOT NULL,
    last_event_at   timestamptz NOT NULL,
    last_heartbeat  timestamptz,                  -- newest HEARTBEAT or CRAWLER_ONLINE
    last_error      text,                         -- newest CRAWLER_ERROR
    last_error_at   timestamptz,
    last_entry_id   text        NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Every crawler event as received (one row per stream entry).
CREATE TABLE IF NOT EXISTS crawler_events (
    id          bigserial   PRIMARY KEY,
    entry_id    text        NOT NULL UNIQUE,
    crawler_id  text        NOT NULL,
    service_id  text        NOT NULL,
    type        text        NOT NULL,
    data        jsonb       NOT NULL,
    timestamp   timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS crawler_events_crawler ON crawler_events (crawler_id, timestamp);
