-- Alert rules (services/analytics/alerts.py, docs/alerts.md): the state of
-- each alert, one row per (tenant, rule, subject), so an alert fires once when
-- its condition starts and resolves once when it clears, across restarts and
-- across analytics processes. The row is also the outbox of its event:
-- `emitted` is false until the event of its current state is published
-- (a round that fails to publish leaves it false and the next round
-- publishes it again, with the same Nats-Msg-Id).
CREATE TABLE alerts (
    tenant_id    text NOT NULL,
    rule         text NOT NULL,                  -- the event type, e.g. switchboard.alert.failure_rate
    subject      text NOT NULL,                  -- the endpoint id; '' for the whole tenant
    state        text NOT NULL CHECK (state IN ('firing', 'resolved')),
    started_at   timestamptz NOT NULL,           -- when the current (or last) firing began
    resolved_at  timestamptz,                    -- when it cleared; NULL while firing
    value        double precision,               -- what was measured at the last transition
    threshold    double precision,               -- NULL for a rule without one (endpoint_disabled)
    details      jsonb NOT NULL DEFAULT '{}',
    emitted      boolean NOT NULL DEFAULT false,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, rule, subject)
);
CREATE INDEX alerts_firing ON alerts (rule) WHERE state = 'firing';
CREATE INDEX alerts_unemitted ON alerts (updated_at) WHERE NOT emitted;
