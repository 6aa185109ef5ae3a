-- The reply loop guard. Events keep who wrote them (reply routes answer only
-- customers); a reply route may hold its drafts for a person's approval; and
-- every AI-drafted reply is kept: its conversation's budget is counted from
-- here, a redelivered event reuses its draft instead of asking again, and a
-- held draft waits here for approval.
ALTER TABLE events ADD COLUMN author text;

ALTER TABLE routes ADD COLUMN review boolean NOT NULL DEFAULT false;

CREATE TABLE replies (
    id                text PRIMARY KEY,         -- derived from the event: one draft per event
    tenant_id         text NOT NULL,
    event_id          text NOT NULL,
    conversation_key  text NOT NULL,
    route_id          text NOT NULL,            -- the first reply route that matched
    endpoint_ids      text[] NOT NULL,          -- where it goes (or went)
    status            text NOT NULL
                      CHECK (status IN ('drafting', 'sent', 'held', 'approved', 'rejected', 'failed')),
    text              text,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    decided_at        timestamptz,
    decided_by        text                      -- the API key that approved or rejected it
);

CREATE INDEX replies_conversation ON replies (tenant_id, conversation_key, created_at DESC);
CREATE INDEX replies_tenant ON replies (tenant_id, created_at DESC, id DESC);
CREATE INDEX replies_held ON replies (tenant_id, created_at DESC) WHERE status = 'held';
