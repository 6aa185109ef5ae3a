-- One row per delivery attempt, fed by the ATTEMPTS stream (idempotent on
-- (delivery_id, number)); aggregates are computed from it.
CREATE TABLE attempts (
    delivery_id  text NOT NULL,
    number       integer NOT NULL,
    tenant_id    text NOT NULL,
    endpoint_id  text NOT NULL,
    event_type   text NOT NULL,
    outcome      text NOT NULL,
    status_code  integer,
    latency_ms   double precision NOT NULL,
    at           timestamptz NOT NULL,
    PRIMARY KEY (delivery_id, number)
);

CREATE INDEX attempts_tenant_at ON attempts (tenant_id, at DESC);
