-- The commerce event pipeline of seed 001: customer profiles and their identifiers, the event
-- audit trail, profile merges and the manual review queue, per-profile features, predictions.

CREATE TABLE profiles (
    profile_id  uuid        PRIMARY KEY,
    brand_id    text        NOT NULL,
    -- Set when the profile was merged into another; merges keep this one hop deep (a profile
    -- merged into a profile that is itself merged later is re-pointed to the final survivor).
    merged_into uuid        REFERENCES profiles (profile_id),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK (merged_into IS DISTINCT FROM profile_id)
);
CREATE INDEX profiles_brand ON profiles (brand_id, created_at);
CREATE INDEX profiles_merged_into ON profiles (merged_into) WHERE merged_into IS NOT NULL;

-- Each identifier of a brand belongs to exactly one profile: an event carrying identifiers of
-- two profiles is the evidence that they are one customer (a merge request).
CREATE TABLE profile_identifiers (
    brand_id      text        NOT NULL,
    kind          text        NOT NULL,   -- phone, email, customer_id, …
    value         text        NOT NULL,   -- normalised (phone E.164-like digits, email lower-case)
    profile_id    uuid        NOT NULL REFERENCES profiles (profile_id),
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (brand_id, kind, value)
);
CREATE INDEX profile_identifiers_profile ON profile_identifiers (profile_id);

-- The audit trail: every event once, with what normalisation decided, so a replayed
-- `events.raw` entry republishes the same downstream entries without changing anything.
CREATE TABLE events (
    event_id              text        PRIMARY KEY,
    brand_id              text        NOT NULL,
    event_type            text        NOT NULL,
    profile_id            uuid        REFERENCES profiles (profile_id),  -- NULL: no identifiers
    identifiers           jsonb       NOT NULL DEFAULT '{}',
    payload               jsonb       NOT NULL,
    normalized_payload    jsonb       NOT NULL,
    occurred_at           timestamptz NOT NULL,
    stream_id             text        NOT NULL,   -- the `events.raw` entry it came from
    merge_profile_ids     uuid[],                 -- the merge request it raised, if any
    merge_requires_review boolean,
    received_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_profile ON events (profile_id, occurred_at);
CREATE INDEX events_brand_time ON events (brand_id, occurred_at);

-- Audit of applied merges: one row per merge request, in the merge's own transaction.
CREATE TABLE profile_merges (
    merge_id             bigserial   PRIMARY KEY,
    request_key          text        NOT NULL UNIQUE,  -- `request_id`, else the stream entry id
    brand_id             text        NOT NULL,
    surviving_profile_id uuid        NOT NULL REFERENCES profiles (profile_id),
    merged_profile_ids   uuid[]      NOT NULL,
    reason               text        NOT NULL,
    identifiers_moved    integer     NOT NULL,
    events_moved         integer     NOT NULL,
    fencing_token        bigint      NOT NULL,
    merged_by            text        NOT NULL,          -- the consumer that applied it
    merged_at            timestamptz NOT NULL DEFAULT now()
);

-- Merges that a person must decide (profiles with conflicting identifiers of one kind).
CREATE TABLE manual_review_queue (
    review_id   bigserial   PRIMARY KEY,
    request_key text        NOT NULL UNIQUE,
    brand_id    text        NOT NULL,
    profile_ids uuid[]      NOT NULL,
    reason      text        NOT NULL,
    conflicts   jsonb       NOT NULL DEFAULT '{}',   -- kind → the differing values
    status      text        NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'approved', 'rejected')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz
);
CREATE INDEX manual_review_pending ON manual_review_queue (created_at) WHERE status = 'pending';

-- Fencing for single-active services: the highest lease token that has written. A writer
-- whose token is lower lost its lease to a newer holder, and its transaction is refused.
CREATE TABLE lease_fences (
    name       text        PRIMARY KEY,
    token      bigint      NOT NULL,
    holder     text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Per-profile features, kept current by the feature builder.
CREATE TABLE profile_features (
    profile_id     uuid          PRIMARY KEY REFERENCES profiles (profile_id),
    brand_id       text          NOT NULL,
    event_count    integer       NOT NULL DEFAULT 0,
    order_count    integer       NOT NULL DEFAULT 0,
    total_spent    numeric(14,2) NOT NULL DEFAULT 0,
    first_seen_at  timestamptz   NOT NULL,
    last_seen_at   timestamptz   NOT NULL,
    last_order_at  timestamptz,
    events_by_type jsonb         NOT NULL DEFAULT '{}',   -- event_type → count
    updated_at     timestamptz   NOT NULL DEFAULT now()
);

-- Events already counted in profile_features: a redelivered or replayed event (same
-- `event_id`, any stream entry) is counted once.
CREATE TABLE feature_events (
    event_id   text        PRIMARY KEY,
    profile_id uuid        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feature_events_profile ON feature_events (profile_id);

-- The latest prediction of each type per profile.
CREATE TABLE predictions (
    profile_id      uuid             NOT NULL REFERENCES profiles (profile_id),
    prediction_type text             NOT NULL CHECK (prediction_type IN ('churn', 'ltv', 'segment')),
    brand_id        text             NOT NULL,
    score           double precision,            -- churn probability, or lifetime value
    label           text,                        -- segment name
    details         jsonb            NOT NULL DEFAULT '{}',  -- inputs and intermediate values
    model_version   text             NOT NULL,
    request_key     text,                        -- the request that produced it
    predicted_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (profile_id, prediction_type)
);
