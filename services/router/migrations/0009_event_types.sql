-- Each tenant's catalogue of event types (services/router/event_catalogue.py):
-- what a type means, its payload's JSON Schema and an example (kept as the
-- JSON text the router was given: jsonb would reorder a schema's keys), whether
-- POST /v1/events validates against it, and the retry schedule its
-- deliveries carry. The name is the type as events carry it.
CREATE TABLE event_types (
    tenant_id    text NOT NULL,
    name         text NOT NULL,
    description  text NOT NULL DEFAULT '',
    schema       text,
    example      text,
    deprecated   boolean NOT NULL DEFAULT false,
    validate     boolean NOT NULL DEFAULT false CHECK (NOT validate OR schema IS NOT NULL),
    retry        jsonb,
    revision     integer NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);
