-- Tenants' own local models (POST /v1/ai/retrain): the local provider's weights
-- retrained on the built-in corpus plus the tenant's corrections. The row is also
-- the claim on a training under way (training_since), so one tenant trains once
-- at a time whatever AI processes run; the weights answering stay until a new
-- training succeeds.
CREATE TABLE tenant_models (
    tenant_id       text PRIMARY KEY,
    version         integer NOT NULL DEFAULT 0,   -- 0: never trained (the shipped model answers)
    weights         text,                         -- model.json text of the tenant's model
    labels          text[] NOT NULL DEFAULT '{}',
    corrections     integer NOT NULL DEFAULT 0,   -- what the current weights learnt from
    trained_at      timestamptz,
    training_since  timestamptz,                  -- set while a training runs
    last_error      text,                         -- the last training's failure ('' or NULL: none)
    updated_at      timestamptz NOT NULL DEFAULT now()
);
