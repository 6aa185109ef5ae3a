-- Analytics counts what happened (docs/analytics.md): every event that reached
-- the router (the router's routing outcomes), and every delivery not settled,
-- attempted or not (the router names the deliveries it queued; the delivery
-- service tells when it holds one without an attempt, or skips it).

-- What became of the events received in each bucket; `events` counts them all.
ALTER TABLE rollups
    ADD COLUMN routed   bigint NOT NULL DEFAULT 0,
    ADD COLUMN unrouted bigint NOT NULL DEFAULT 0,
    ADD COLUMN dropped  bigint NOT NULL DEFAULT 0;

-- Every delivery analytics has heard of, from whichever report came first:
-- queued by the router, held, or attempted. `state` is where it is now:
-- 'queued' (not attempted yet, nothing holds it), 'retrying' (its next
-- attempt is due), a hold reason ('circuit_open', 'rate_limited',
-- 'in_flight_cap'), or settled: 'succeeded', 'failed', 'skipped' (never to be
-- attempted: its endpoint filters the event type out, or is gone).
-- last_number / last_outcome / last_at stay those of its latest attempt
-- (0 / NULL / NULL before the first).
ALTER TABLE deliveries
    ALTER COLUMN last_outcome DROP NOT NULL,
    ALTER COLUMN last_at DROP NOT NULL,
    ADD COLUMN state    text,
    ADD COLUMN state_at timestamptz;
UPDATE deliveries SET state = last_outcome, state_at = last_at;
ALTER TABLE deliveries
    ALTER COLUMN state SET NOT NULL,
    ALTER COLUMN state_at SET NOT NULL;
-- Pending deliveries by tenant and first sight: the overview's `pending`.
CREATE INDEX deliveries_unsettled ON deliveries (tenant_id, first_at)
    WHERE state NOT IN ('succeeded', 'failed', 'skipped');
