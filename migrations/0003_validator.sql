-- Seed 003: the validator's items, per-consumer statistics, per-minute metrics and the
-- monitoring views that `busctl monitor` (and dashboards) read.

-- One row per stream entry the validator settled. (stream, entry_id) is the business key, so a
-- redelivered entry can never produce a second row.
CREATE TABLE IF NOT EXISTS raw_items (
    id                bigserial        PRIMARY KEY,
    stream            text             NOT NULL,
    entry_id          text             NOT NULL,
    consumer_group    text,
    consumer          text,
    status            text             NOT NULL DEFAULT 'pending'
                                       CHECK (status IN ('pending', 'done', 'error')),
    -- Every rule the item broke, in rule order (phone, bank_account, email, name).
    error_codes       int[]            NOT NULL DEFAULT '{}',
    -- The same problems in words: [{"code": 101, "field": "phone", "message": "..."}].
    errors            jsonb            NOT NULL DEFAULT '[]',
    -- Deliveries before the one that settled the entry.
    retry_count       int              NOT NULL DEFAULT 0,
    -- Milliseconds from the entry's arrival in the stream (its ID time) to its row being written.
    processing_ms     double precision,
    source            text,
    producer          text,
    batch_id          text,
    -- The producer's `timestamp` field, verbatim.
    message_timestamp text,
    data              jsonb,
    created_at        timestamptz      NOT NULL DEFAULT now(),
    processed_at      timestamptz,
    UNIQUE (stream, entry_id)
);
CREATE INDEX IF NOT EXISTS raw_items_status_processed ON raw_items (status, processed_at);
CREATE INDEX IF NOT EXISTS raw_items_processed_at ON raw_items (processed_at);
CREATE INDEX IF NOT EXISTS raw_items_batch_id ON raw_items (batch_id) WHERE batch_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS raw_items_error_codes ON raw_items USING gin (error_codes);

-- Running totals per consumer, added to once per batch (only for entries newly handled).
CREATE TABLE IF NOT EXISTS stream_consumer_stats (
    stream              text             NOT NULL,
    consumer_group      text             NOT NULL,
    consumer            text             NOT NULL,
    processed           bigint           NOT NULL DEFAULT 0,
    done                bigint           NOT NULL DEFAULT 0,
    errors              bigint           NOT NULL DEFAULT 0,
    total_processing_ms double precision NOT NULL DEFAULT 0,
    last_active         timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, consumer_group, consumer)
);

-- Items per minute, stream and status, with their average processing time.
CREATE TABLE IF NOT EXISTS stream_processing_metrics (
    bucket              timestamptz      NOT NULL,
    stream              text             NOT NULL,
    status              text             NOT NULL,
    count               bigint           NOT NULL DEFAULT 0,
    total_processing_ms double precision NOT NULL DEFAULT 0,
    avg_processing_ms   double precision GENERATED ALWAYS AS
                            (CASE WHEN count > 0 THEN total_processing_ms / count END) STORED,
    PRIMARY KEY (bucket, stream, status)
);

-- Totals by status.
CREATE OR REPLACE VIEW raw_items_status_summary AS
SELECT status,
       count(*)                        AS items,
       avg(processing_ms)              AS avg_processing_ms,
       max(processed_at)               AS last_processed_at
FROM raw_items
GROUP BY status;

-- Activity per hour and status.
CREATE OR REPLACE VIEW raw_items_hourly_activity AS
SELECT date_trunc('hour', processed_at) AS hour,
       status,
       count(*)                         AS items,
       avg(processing_ms)               AS avg_processing_ms
FROM raw_items
WHERE processed_at IS NOT NULL
GROUP BY 1, 2;

-- Error codes per hour, most frequent first, with one example message each.
CREATE OR REPLACE VIEW raw_items_top_errors AS
SELECT date_trunc('hour', r.processed_at) AS hour,
       (e ->> 'code')::int                AS code,
       e ->> 'field'                      AS field,
       count(*)                           AS occurrences,
       min(e ->> 'message')               AS example_message
FROM raw_items r
CROSS JOIN LATERAL jsonb_array_elements(r.errors) AS e
WHERE r.status = 'error' AND r.processed_at IS NOT NULL
GROUP BY 1, 2, 3;

-- Consumers with their error rate (percent) and average processing time.
CREATE OR REPLACE VIEW stream_consumer_performance AS
SELECT stream,
       consumer_group,
       consumer,
       processed,
       done,
       errors,
       CASE WHEN processed > 0 THEN round(100.0 * errors / processed, 2) ELSE 0 END AS error_rate_pct,
       CASE WHEN processed > 0 THEN total_processing_ms / processed END            AS avg_processing_ms,
       last_active
FROM stream_consumer_stats;
