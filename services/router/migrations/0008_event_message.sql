-- The EVENTS message (its stream sequence) that stored each event. A later
-- message with the same event id is either that message again (its router
-- stopped before queueing the deliveries: queue them) or another copy (a
-- provider's retry the edge's dedup missed: routed already), however often
-- either has been delivered.
ALTER TABLE events ADD COLUMN stream_seq bigint;

-- Retention keeps an event while a reply drafted for it waits for review.
CREATE INDEX replies_held_event ON replies (event_id) WHERE status = 'held';
