-- The tenant's priority scale: its level names, most urgent first ('{}': the built-in urgent, high, normal,
-- low), and which of its levels each built-in level becomes ('{}': the default fold for that many levels).
ALTER TABLE tenant_settings ADD COLUMN priority_levels text[] NOT NULL DEFAULT '{}';
ALTER TABLE tenant_settings ADD COLUMN priority_mapping jsonb NOT NULL DEFAULT '{}';
