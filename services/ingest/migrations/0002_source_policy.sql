-- Per-source policy applied before verification: which client addresses may
-- send (empty: any), and an inbound rate limit (NULL: the deployment default).
ALTER TABLE sources
    ADD COLUMN allowed_ips text[] NOT NULL DEFAULT '{}',
    ADD COLUMN rate_per_s double precision,
    ADD COLUMN rate_burst integer;
