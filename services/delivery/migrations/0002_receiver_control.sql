-- An endpoint can be turned off (a receiver answered 410, or an operator did)
-- with the reason kept. A delivery keeps the message it carries, so a failed
-- one can be retried by hand long after the streams forgot it; a manual retry
-- starts a new cycle of attempts at `cycle_start`.
ALTER TABLE endpoints
    ADD COLUMN disabled_at timestamptz,
    ADD COLUMN disabled_reason text;

ALTER TABLE deliveries
    ADD COLUMN message jsonb,
    ADD COLUMN cycle_start integer NOT NULL DEFAULT 0;

CREATE INDEX deliveries_tenant_created ON deliveries (tenant_id, created_at DESC, id DESC);
CREATE INDEX deliveries_failed ON deliveries (tenant_id, endpoint_id) WHERE status = 'failed';
