-- Per-tenant AI settings (the provider chain, categories), tenant overrides
-- of the prompt templates (versioned: a new override is a new version),
-- usage with estimated cost and outcome, and the recent turns of
-- conversations that replies are drafted from.
CREATE TABLE tenant_settings (
    tenant_id    text PRIMARY KEY,
    providers    text[] NOT NULL DEFAULT '{}',   -- the fallback chain; empty: the deployment's
    categories   text[] NOT NULL DEFAULT '{}',   -- empty: the default set
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE prompts (
    tenant_id    text NOT NULL,
    task         text NOT NULL CHECK (task IN ('classify', 'extract', 'reply')),
    version      integer NOT NULL,
    system       text NOT NULL,
    template     text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, task, version)
);

ALTER TABLE usage
    ADD COLUMN cost_usd double precision NOT NULL DEFAULT 0,
    ADD COLUMN cached bigint NOT NULL DEFAULT 0,
    ADD COLUMN failures bigint NOT NULL DEFAULT 0;

CREATE TABLE conversation_turns (
    id                bigserial PRIMARY KEY,
    tenant_id         text NOT NULL,
    conversation_key  text NOT NULL,
    role              text NOT NULL CHECK (role IN ('customer', 'agent')),
    text              text NOT NULL,
    at                timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX conversation_turns_key ON conversation_turns (tenant_id, conversation_key, at DESC);
