-- Routes grow payload filters, AI conditions, an action (deliver, reply,
-- drop), an order and an optional transform template. Templates are
-- versioned: a change is a new version and deliveries record the version
-- used. Every event keeps the explained routing decision made for it.
ALTER TABLE routes
    ADD COLUMN action       text NOT NULL DEFAULT 'deliver' CHECK (action IN ('deliver', 'reply', 'drop')),
    ADD COLUMN position     integer NOT NULL DEFAULT 0,
    ADD COLUMN filters      jsonb,
    ADD COLUMN ai           jsonb,
    ADD COLUMN template_id  text,
    ADD COLUMN updated_at   timestamptz NOT NULL DEFAULT now(),
    ALTER COLUMN endpoint_ids SET DEFAULT '{}';

DROP INDEX routes_tenant;
CREATE INDEX routes_tenant ON routes (tenant_id, position) WHERE enabled;

CREATE TABLE templates (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL,
    name        text NOT NULL,
    version     integer NOT NULL DEFAULT 1,
    output      text NOT NULL CHECK (output IN ('json', 'text')),
    source      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX templates_tenant ON templates (tenant_id);

CREATE TABLE template_versions (
    template_id  text NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    version      integer NOT NULL,
    output       text NOT NULL,
    source       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (template_id, version)
);

ALTER TABLE events
    ADD COLUMN routing jsonb,
    ADD COLUMN source_type text NOT NULL DEFAULT '';
