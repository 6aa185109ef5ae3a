-- Listing and searching events (GET /v1/events), newest first, a page at a
-- time after a (received_at, id) cursor.
--
-- An event's status is its routing outcome, which the router decided when it
-- stored the event: 'dropped' (a drop route matched), 'routed' (at least one
-- delivery was planned) or 'unrouted' (no route took it). Its category is the
-- AI category of the explained decision (NULL when it was not classified).
-- Both are derived from the stored decision, so they can never disagree with it.
ALTER TABLE events
    ADD COLUMN status text NOT NULL GENERATED ALWAYS AS (
        CASE WHEN routing->>'dropped_by' IS NOT NULL THEN 'dropped'
             WHEN COALESCE(routing->'deliveries', '[]'::jsonb) <> '[]'::jsonb THEN 'routed'
             ELSE 'unrouted' END) STORED,
    ADD COLUMN category text GENERATED ALWAYS AS (routing->'ai'->>'category') STORED;

-- The keyset order itself (id breaks ties between events received in the same
-- microsecond); replays and retention walk it too, forwards.
DROP INDEX events_tenant_received;
CREATE INDEX events_tenant_received ON events (tenant_id, received_at DESC, id DESC);
-- The filters that narrow a tenant's events most. A type glob is applied while
-- walking one of these: it cannot use an index in general.
CREATE INDEX events_tenant_source_received ON events (tenant_id, source_id, received_at DESC, id DESC);
CREATE INDEX events_tenant_status_received ON events (tenant_id, status, received_at DESC, id DESC);
CREATE INDEX events_tenant_category_received ON events (tenant_id, category, received_at DESC, id DESC)
    WHERE category IS NOT NULL;
