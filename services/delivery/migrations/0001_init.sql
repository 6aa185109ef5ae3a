-- Endpoints receive deliveries; a delivery is one event for one endpoint
-- (id "<event_id>:<endpoint_id>", so a redelivered message never makes a
-- second one); every attempt to send it is kept.
CREATE TABLE endpoints (
    id           text PRIMARY KEY,
    tenant_id    text NOT NULL,
    url          text NOT NULL,
    description  text NOT NULL DEFAULT '',
    destination  text NOT NULL,
    secret       text NOT NULL,
    config       jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX endpoints_tenant ON endpoints (tenant_id);

CREATE TABLE deliveries (
    id           text PRIMARY KEY,
    tenant_id    text NOT NULL,
    event_id     text NOT NULL,
    endpoint_id  text NOT NULL REFERENCES endpoints (id),
    route_id     text NOT NULL,
    event_type   text NOT NULL,
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts     integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX deliveries_tenant_event ON deliveries (tenant_id, event_id);

CREATE TABLE attempts (
    delivery_id       text NOT NULL REFERENCES deliveries (id),
    number            integer NOT NULL,
    started_at        timestamptz NOT NULL,
    outcome           text NOT NULL CHECK (outcome IN ('succeeded', 'retrying', 'failed')),
    status_code       integer,
    latency_ms        double precision NOT NULL,
    response_excerpt  text NOT NULL DEFAULT '',
    error             text,
    PRIMARY KEY (delivery_id, number)
);
