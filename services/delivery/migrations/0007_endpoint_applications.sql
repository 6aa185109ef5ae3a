-- An endpoint may belong to an application: one customer of the tenant, who
-- manages its own endpoints in the consumer portal (docs/portal.md).
ALTER TABLE delivery.endpoints ADD COLUMN application_id text;

CREATE INDEX endpoints_application ON delivery.endpoints (tenant_id, application_id)
    WHERE application_id IS NOT NULL AND deleted_at IS NULL;
