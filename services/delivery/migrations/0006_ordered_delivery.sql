-- Ordered delivery per key (docs/ordering.md). A delivery to an endpoint with
-- `ordering: "per_key"` is parked here, with its message, as it comes off the
-- DELIVERIES stream; its stream message is then acknowledged. Each key's
-- deliveries go one at a time, earliest accepted first: the head of a key is
-- claimed (with a lease) by one delivery process, attempted, and removed once
-- settled, or given a time to be tried again.
CREATE TABLE ordered_queue (
    delivery_id   text PRIMARY KEY,
    endpoint_id   text NOT NULL,
    ordering_key  text NOT NULL,
    -- When the edge received the event (its clock, epoch seconds): the order within a key.
    received_at   double precision NOT NULL,
    -- Attempted at least once: it stays first in its key, before deliveries parked later.
    started       boolean NOT NULL DEFAULT false,
    message       jsonb NOT NULL,
    parked_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ordered_queue_order ON ordered_queue (endpoint_id, ordering_key, started DESC, received_at, delivery_id);

-- One row per key with something parked (kept, idle, once empty): what is in
-- flight and when the head may next go. Claims, parks and settles lock this
-- row, so each key's changes are serialized across processes.
CREATE TABLE ordered_keys (
    endpoint_id    text NOT NULL,
    ordering_key   text NOT NULL,
    tenant_id      text NOT NULL,
    -- 'infinity' while nothing is parked.
    ready_at       timestamptz NOT NULL DEFAULT now(),
    in_flight      text,
    claimed_until  timestamptz,
    PRIMARY KEY (endpoint_id, ordering_key)
);

CREATE INDEX ordered_keys_ready ON ordered_keys (ready_at) WHERE ready_at <> 'infinity';
