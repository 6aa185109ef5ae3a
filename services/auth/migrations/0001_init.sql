-- Tenants and their API keys. A key is stored only as a keyed hash; the
-- visible prefix lets an operator recognise a leaked key.
CREATE TABLE tenants (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id            text PRIMARY KEY,           -- the key id embedded in the key
    tenant_id     text NOT NULL REFERENCES tenants (id),
    name          text NOT NULL,
    prefix        text NOT NULL,              -- e.g. sb_live_<id>, never the secret
    key_hash      bytea NOT NULL,             -- HMAC-SHA256(pepper, key)
    scopes        text[] NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    expires_at    timestamptz,
    revoked_at    timestamptz
);

CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
