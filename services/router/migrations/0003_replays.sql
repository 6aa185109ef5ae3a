-- Replays re-deliver the stored events of a time range (optionally of one
-- source and some event types) to one endpoint or through the current
-- routes. A replay runs in the background under a lease, so another router
-- process takes it over if this one dies; its cursor (the last event done)
-- makes the resumed run skip what was already published.
CREATE TABLE replays (
    id                   text PRIMARY KEY,
    tenant_id            text NOT NULL,
    since                timestamptz NOT NULL,
    until                timestamptz NOT NULL,
    source_id            text,
    event_types          text[] NOT NULL DEFAULT '{}',
    endpoint_id          text,                 -- NULL: through the current routes
    status               text NOT NULL DEFAULT 'queued'
                         CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    total                integer NOT NULL,
    done                 integer NOT NULL DEFAULT 0,
    deliveries           integer NOT NULL DEFAULT 0,
    cursor_received_at   timestamptz,
    cursor_id            text,
    lease_until          timestamptz,
    error                text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    finished_at          timestamptz
);

CREATE INDEX replays_tenant ON replays (tenant_id, created_at DESC);
CREATE INDEX replays_active ON replays (created_at) WHERE status IN ('queued', 'running');
