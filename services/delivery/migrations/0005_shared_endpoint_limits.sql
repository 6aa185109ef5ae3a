-- An endpoint's rate limit holds across every delivery process: one token
-- bucket per rate-limited endpoint, refilled by the time elapsed on the
-- database's clock and taken from in one statement (DeliveryStore.lease_tokens).
-- A process takes a few tokens at once (a lease) and spends them itself.
-- Only endpoints with a `rate_limit` option have a row; their rate and burst
-- come with each statement, from the endpoint's options.
CREATE TABLE endpoint_rate_buckets (
    endpoint_id text PRIMARY KEY REFERENCES endpoints (id) ON DELETE CASCADE,
    -- Tokens left as of updated_at (fractional: the refill is continuous).
    tokens double precision NOT NULL,
    updated_at timestamptz NOT NULL,
    -- How many tokens the last statement handed out: what its RETURNING reads,
    -- the row keeping no other trace of the refill it computed.
    last_lease integer NOT NULL DEFAULT 0
);
