-- Full endpoint management. `config` now holds only the destination's own
-- settings (method and headers for webhook, a bot token for slack...);
-- delivery options (retry, rate limit, in-flight cap, timeout) move to
-- `options`. An endpoint may only take some event types, may rotate its
-- secret with a grace period (both signatures sent meanwhile), may name a
-- failover endpoint used while its circuit is open, and is auto-disabled
-- after failing for a configured period (`failing_since` marks the streak).
-- Deleting keeps the row (deliveries and their log refer to it).
ALTER TABLE endpoints
    ADD COLUMN options jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN event_types text[] NOT NULL DEFAULT '{}',
    ADD COLUMN previous_secret text,
    ADD COLUMN previous_secret_expires_at timestamptz,
    ADD COLUMN failover_endpoint_id text REFERENCES endpoints (id),
    ADD COLUMN failing_since timestamptz,
    ADD COLUMN deleted_at timestamptz,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

UPDATE endpoints SET options = config, config = '{}';

-- Which endpoint an attempt actually went to, when not the delivery's own
-- (a failover); NULL means the delivery's endpoint.
ALTER TABLE attempts ADD COLUMN sent_to text;
