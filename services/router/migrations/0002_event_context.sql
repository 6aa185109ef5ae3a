-- When the provider says the event happened, and which conversation it
-- belongs to (conversational sources: Intercom, Slack, Twilio).
ALTER TABLE events
    ADD COLUMN occurred_at timestamptz,
    ADD COLUMN conversation_key text;
