-- Who (key id) did what to which resource and when: every mutating call.
-- Entries never hold secrets.
CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    tenant_id  text NOT NULL,
    actor      text NOT NULL,
    action     text NOT NULL,
    resource   text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id DESC);
