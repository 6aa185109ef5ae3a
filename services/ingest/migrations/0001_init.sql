-- Sources: where a tenant's webhooks come in (POST /in/{id}) and how the
-- source plugin named by `type` verifies them.
CREATE TABLE sources (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL,
    name        text NOT NULL,
    type        text NOT NULL,
    config      jsonb NOT NULL DEFAULT '{}',
    secret      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX sources_tenant ON sources (tenant_id);
