-- Every accepted event, stored once (the id is the JetStream message id, so a
-- redelivered message inserts nothing), and the routes that fan events out to
-- endpoints.
CREATE TABLE events (
    id                 text PRIMARY KEY,
    tenant_id          text NOT NULL,
    source_id          text NOT NULL,
    type               text NOT NULL,
    provider_event_id  text,
    received_at        timestamptz NOT NULL,
    headers            jsonb NOT NULL,
    payload            jsonb NOT NULL,
    body               text,                -- as received, delivered as is (NULL: encode payload)
    stored_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX events_tenant_received ON events (tenant_id, received_at DESC);

CREATE TABLE routes (
    id            text PRIMARY KEY,
    tenant_id     text NOT NULL,
    name          text NOT NULL,
    source_id     text,                       -- NULL: every source
    event_types   text[] NOT NULL DEFAULT '{}', -- glob patterns; empty: every type
    endpoint_ids  text[] NOT NULL,
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX routes_tenant ON routes (tenant_id) WHERE enabled;
