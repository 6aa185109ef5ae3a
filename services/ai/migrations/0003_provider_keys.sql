-- Tenants' own AI provider keys ("bring your own key"): provider name -> the
-- key sealed with the master key (switchboard/secretbox.py), never in the clear.
ALTER TABLE tenant_settings ADD COLUMN provider_keys jsonb NOT NULL DEFAULT '{}';
