-- Every change to a source counts up its revision. The change feed (the KV
-- bucket SOURCES, services/ingest/source_feed.py) carries it with the source,
-- so an edge's copy never goes back to an older one when writes arrive out of
-- order, and reconciliation tells a stale copy by it.
ALTER TABLE sources
    ADD COLUMN revision bigint NOT NULL DEFAULT 1;
