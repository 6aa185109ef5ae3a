-- People's corrections of the AI labels (LabelEvent): one per event, a new one
-- replaces it. Kept beside the AI's labels of the time, with the provider and
-- model that gave them, so accuracy can be reported per provider; they go with
-- their event (retention). The corrected events are the tenant's few-shot
-- examples for model providers and the extra training rows of its local model.
CREATE TABLE event_labels (
    event_id       text PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
    tenant_id      text NOT NULL,
    category       text NOT NULL,
    priority       text,                   -- NULL: neither given nor classified
    sentiment      text,
    ai_category    text,                   -- the AI's labels at the time; NULL: not classified
    ai_priority    text,
    ai_sentiment   text,
    ai_provider    text,
    ai_model       text,
    received_at    timestamptz NOT NULL,   -- the event's: the accuracy report's window
    labelled_by    text NOT NULL,          -- the API key
    labelled_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX event_labels_tenant ON event_labels (tenant_id, labelled_at DESC, event_id DESC);
CREATE INDEX event_labels_received ON event_labels (tenant_id, received_at);
