-- Analytics reads rollups, never raw attempts: each batch of attempt reports
-- is inserted (idempotent on delivery_id, number) and, in the same
-- transaction, only the rows actually inserted are added to the rollups below. See
-- docs/analytics.md.

-- What the attempt reports now carry. '' stands for "none" (no source, no AI
-- category): rollup keys are never NULL.
ALTER TABLE attempts
    ADD COLUMN source_id text NOT NULL DEFAULT '',
    ADD COLUMN category  text NOT NULL DEFAULT '',
    ADD COLUMN error     text;

-- Nothing queries attempts by tenant any more; the index only cost inserts.
-- Attempts arrive in time order, so pruning by age needs only a BRIN index.
DROP INDEX attempts_tenant_at;
CREATE INDEX attempts_at ON attempts USING brin (at);

-- One row per event analytics has seen an attempt for, so "events received"
-- counts each event once, in the minute of its first attempt. (Analytics does
-- not read EVENTS: events no route delivered are not seen here.)
CREATE TABLE events (
    event_id   text PRIMARY KEY,
    tenant_id  text NOT NULL,
    first_at   timestamptz NOT NULL
);
CREATE INDEX events_first_at ON events USING brin (first_at);

-- Each delivery's latest attempt: a delivery is pending while its latest
-- attempt is "retrying". Only a higher attempt number moves it.
CREATE TABLE deliveries (
    delivery_id   text PRIMARY KEY,
    tenant_id     text NOT NULL,
    endpoint_id   text NOT NULL,
    first_at      timestamptz NOT NULL,
    last_number   integer NOT NULL,
    last_outcome  text NOT NULL,
    last_at       timestamptz NOT NULL
);
CREATE INDEX deliveries_pending ON deliveries (tenant_id, last_at) WHERE last_outcome = 'retrying';
CREATE INDEX deliveries_first_at ON deliveries USING brin (first_at);

-- Additive counters per tenant and time bucket, for the whole tenant
-- (dim 'all', key '': minute, hour and day buckets) and per endpoint, event
-- type, source and AI category (hour and day buckets). Buckets are UTC.
CREATE TABLE rollups (
    tenant_id        text NOT NULL,
    dim              text NOT NULL CHECK (dim IN ('all', 'endpoint', 'event_type', 'source', 'category')),
    grain            text NOT NULL CHECK (grain IN ('minute', 'hour', 'day')),
    key              text NOT NULL,
    bucket           timestamptz NOT NULL,
    events           bigint NOT NULL,  -- events whose first attempt fell here
    deliveries       bigint NOT NULL,  -- deliveries whose first attempt fell here
    attempts         bigint NOT NULL,
    succeeded        bigint NOT NULL,  -- succeeding attempts (one per delivery)
    failed           bigint NOT NULL,  -- failed attempts, retried or final
    dead             bigint NOT NULL,  -- final failed attempts (dead letters)
    latency_sum_ms   double precision NOT NULL,
    -- Attempts per latency slot: fixed bounds, ten per decade from 1 ms to
    -- 100 s (services/analytics/histogram.py), 52 slots.
    latency_hist     bigint[] NOT NULL,
    last_failure_at  timestamptz,
    last_error       text,
    PRIMARY KEY (tenant_id, dim, grain, key, bucket)
);
-- Breakdowns read one dimension's rows of a range, whatever their key.
CREATE INDEX rollups_by_bucket ON rollups (tenant_id, dim, grain, bucket);
-- Pruning by age.
CREATE INDEX rollups_age ON rollups (grain, bucket);

-- Element-wise sum of two histograms (either may be NULL).
CREATE FUNCTION add_histograms(a bigint[], b bigint[]) RETURNS bigint[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (SELECT array_agg(coalesce(x, 0) + coalesce(y, 0) ORDER BY i)
            FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i));

-- The histogram of many rows.
CREATE AGGREGATE sum_histograms(bigint[]) (SFUNC = add_histograms, STYPE = bigint[], PARALLEL = SAFE);
