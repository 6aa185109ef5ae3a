-- The tenant's category for events that fit none of its categories (small talk,
-- acknowledgements, bot chatter); '' means the default: "other", else the last category.
ALTER TABLE tenant_settings ADD COLUMN fallback_category text NOT NULL DEFAULT '';
