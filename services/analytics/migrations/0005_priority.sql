-- The AI priority beside the AI category: reports carry the priority the router
-- was given, one of the tenant's own levels (its 2 to 5, or the built-in urgent,
-- high, normal, low). Attempts keep it ('' when the event was not classified,
-- as for category), and rollups gain the dimension 'priority' (hour and day
-- buckets), keyed by the tenant's level. Rows from before count under ''.
ALTER TABLE attempts ADD COLUMN priority text NOT NULL DEFAULT '';

ALTER TABLE rollups
    DROP CONSTRAINT rollups_dim_check,
    ADD CONSTRAINT rollups_dim_check
        CHECK (dim IN ('all', 'endpoint', 'event_type', 'source', 'category', 'priority'));
