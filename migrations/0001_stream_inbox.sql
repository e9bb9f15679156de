-- Entry IDs already applied, per stream and consumer group: the effectively-once guard.
CREATE TABLE IF NOT EXISTS stream_inbox (
    stream         text        NOT NULL,
    consumer_group text        NOT NULL,
    entry_id       text        NOT NULL,
    handled_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, consumer_group, entry_id)
);
CREATE INDEX IF NOT EXISTS stream_inbox_handled_at ON stream_inbox (handled_at);

-- Orders stream entry IDs ("<ms>-<seq>") numerically, for "last writer wins by entry id".
CREATE OR REPLACE FUNCTION stream_entry_key(id text) RETURNS numeric
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT split_part(id, '-', 1)::numeric * 18446744073709551616
              + coalesce(nullif(split_part(id, '-', 2), ''), '0')::numeric $$;
